"""PlanEvaluation: pin the dataset's version, check every line, cut it into shards."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext

# What every call runs that pipeline.evaluation imports inside plan_evaluation (so that the other handlers
# sharing the module skip it): loaded here, at init, not on this function's first call.
from modelgate.evaluation import batch, dataset  # noqa: F401
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import evaluation
from modelgate.pipeline.deps import default_deps


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return evaluation.plan_evaluation(default_deps(), event).dump()
