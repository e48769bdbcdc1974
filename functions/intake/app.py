"""Intake: S3 "Object Created" (EventBridge) for a release manifest -> one pipeline execution.

The execution is named after the release id (S3 key + object version), so a duplicate or
retried event can never start a second release.
"""

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import (
    S3EventNotificationEventBridgeModel,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.observability import logger
from modelgate.pipeline import intake
from modelgate.pipeline.deps import default_deps
from modelgate.settings import IntakeSettings


@logger.inject_lambda_context
@event_parser(model=S3EventNotificationEventBridgeModel)
def lambda_handler(event: S3EventNotificationEventBridgeModel, context: LambdaContext) -> dict:
    obj = event.detail.object
    result = intake.start_release(default_deps(IntakeSettings), event.detail.bucket.name, obj.key, obj.version_id)
    logger.info("release intake", extra=result)
    return result
