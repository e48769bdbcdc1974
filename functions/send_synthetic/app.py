"""SendSynthetic: too little canary traffic and the policy says synthetic - evaluation
inputs through the live alias, so the judge gets its minimum sample."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate import pipeline
from modelgate.models import ReleaseContext
from modelgate.observability import logger


@logger.inject_lambda_context(correlation_id_path="release_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    ctx = ReleaseContext.model_validate(event)
    return pipeline.send_synthetic(pipeline.default_deps(), ctx).model_dump(mode="json")
