"""ReduceEvaluation: merge the shards' per-case results into one report and its statistics.

The event is {"release": <context>, "shards": [{"index", "key", "version", "cases"}, ...]}.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate import pipeline
from modelgate.observability import logger
from modelgate.task_events import ReduceEvent


@logger.inject_lambda_context(correlation_id_path="release.release_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    request = ReduceEvent.model_validate(event)
    return pipeline.reduce_evaluation(pipeline.default_deps(), request.release, request.shards).model_dump(mode="json")
