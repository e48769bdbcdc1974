"""SendSynthetic: too little canary traffic and the policy says synthetic - evaluation
inputs through the live alias, so the judge gets its minimum sample."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import canary
from modelgate.pipeline.deps import default_deps


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    # The sender stops at a budget taken from the time this invocation has left.
    return canary.send_synthetic(default_deps(), event, context.get_remaining_time_in_millis).dump()
