"""Intake: S3 "Object Created" (EventBridge) for a release manifest -> one pipeline execution.

The execution is named after the release id (S3 key + object version), so a duplicate or
retried event can never start a second release.
"""

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate import pipeline
from modelgate.observability import logger


@logger.inject_lambda_context
@event_parser(model=S3EventNotificationEventBridgeModel)
def lambda_handler(event: S3EventNotificationEventBridgeModel, context: LambdaContext) -> dict:
    obj = event.detail.object
    result = pipeline.start_release(
        pipeline.default_deps(), event.detail.bucket.name, obj.key, obj.version_id
    )
    logger.info("release intake", extra=result)
    return result
