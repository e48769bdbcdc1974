"""PlanEvaluation: pin the dataset's version, check every line, cut it into shards."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate import pipeline
from modelgate.models import ReleaseContext
from modelgate.observability import logger


@logger.inject_lambda_context(correlation_id_path="release_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    ctx = ReleaseContext.model_validate(event)
    return pipeline.plan_evaluation(pipeline.default_deps(), ctx).model_dump(mode="json")
