"""EvaluateShard: one shard of the dataset against the candidate and the live version.

The event is {"release": <context>, "shard": {"index", "start", "end"}} (the Map's item);
per-case results go to S3, the state carries only where they are.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ShardEvent

# What every call runs that pipeline.evaluation imports inside evaluate_shard (so that the other handlers
# sharing the module skip it): loaded here, at init, not on this function's first call.
from modelgate.evaluation import dataset, model_scorers, runner  # noqa: F401
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import evaluation
from modelgate.pipeline.deps import default_deps


@logger.inject_lambda_context(correlation_id_path="release.release_id")
@event_model(ShardEvent)
def lambda_handler(event: ShardEvent, context: LambdaContext) -> dict:
    return evaluation.evaluate_shard(default_deps(), event.release, event.shard).model_dump(mode="json")
