"""Rollback: the live alias back to the version that was live, with the reason in the ledger.

The event is the release context with the caught error at "error" ({"Error": ..., "Cause": ...}).
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import outcome
from modelgate.pipeline.deps import default_deps


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    deps = default_deps()
    execution = outcome.pipeline_execution_arn(context.invoked_function_arn, deps.settings.stack_name, event.release_id)
    return outcome.rollback(deps, event, execution).dump()
