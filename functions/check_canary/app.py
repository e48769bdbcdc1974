"""CheckCanary: the bake's end - alarms once more and enough canary traffic to judge."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import canary
from modelgate.pipeline.deps import default_deps


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return canary.check_canary(default_deps(), event).dump()
