"""EvaluateShard: one shard of the dataset against the candidate and the live version.

The event is {"release": <context>, "shard": {"index", "start", "end"}} (the Map's item);
per-case results go to S3, the state carries only where they are.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate import pipeline
from modelgate.observability import logger
from modelgate.task_events import ShardEvent


@logger.inject_lambda_context(correlation_id_path="release.release_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    request = ShardEvent.model_validate(event)
    return pipeline.evaluate_shard(pipeline.default_deps(), request.release, request.shard.model_dump())
