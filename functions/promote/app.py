"""Promote: the live alias wholly to the candidate; then the drift baseline is asked of the monitor
function (asynchronous invoke, built after this returns: modelgate.monitor.baseline)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext
from modelgate.lambda_event import event_model

# Every call asks for the drift baseline (pipeline.outcome imports the request inside promote, for
# the other end steps' sake): loaded at init with the rest of what each call runs. The monitor builds it.
from modelgate.monitor import baseline_request  # noqa: F401
from modelgate.observability import logger
from modelgate.pipeline import outcome
from modelgate.pipeline.deps import default_deps
from modelgate.settings import PromoteSettings


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return outcome.promote(default_deps(PromoteSettings), event).dump()
