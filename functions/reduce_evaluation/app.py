"""ReduceEvaluation: merge the shards' per-case results into one report and its statistics.

The event is the release context with the Map's results at "eval_shards"
([{"index", "key", "version", "cases"}, ...]).
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext

# What every call runs that pipeline.evaluation imports inside reduce_evaluation (so that PlanEvaluation,
# sharing the module, skips it): the results' models and their statistics, loaded here at init.
from modelgate.evaluation import comparison, judges  # noqa: F401
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import evaluation
from modelgate.pipeline.deps import default_deps


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return evaluation.reduce_evaluation(default_deps(), event).dump()
