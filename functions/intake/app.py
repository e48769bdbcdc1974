"""Intake: S3 "Object Created" (EventBridge) for a release manifest -> one pipeline execution.

The execution is named after the release id (S3 key + object version), so a duplicate or
retried event can never start a second release.

The event's model is declared here, on Powertools' ``EventBridgeModel``, rather than taken
from ``aws_lambda_powertools.utilities.parser.models.S3EventNotificationEventBridgeModel``:
that one lives in the module of every S3 event model (the S3 notification records, the
Object Lambda events, sixteen models built at import), most of this function's cold start
beyond boto3 and pydantic (issue #7). The fields and their names are the "Object Created"
event's, as the Amazon S3 User Guide gives them ("EventBridge event message structure",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html); required are the ones
Powertools' model requires.
"""

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models.event_bridge import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from modelgate.observability import logger
from modelgate.pipeline import intake
from modelgate.pipeline.deps import default_deps
from modelgate.settings import IntakeSettings


class S3Bucket(BaseModel):
    name: str


class S3Object(BaseModel):
    key: str
    size: float | None = Field(default=None, ge=0)
    etag: str = ""
    version_id: str | None = Field(default=None, alias="version-id")
    sequencer: str | None = None


class ObjectCreatedDetail(BaseModel):
    version: str
    bucket: S3Bucket
    object: S3Object
    request_id: str = Field(alias="request-id")
    requester: str
    source_ip_address: str | None = Field(default=None, alias="source-ip-address")
    reason: str | None = None


class ObjectCreatedEvent(EventBridgeModel):
    detail: ObjectCreatedDetail


@logger.inject_lambda_context
@event_parser(model=ObjectCreatedEvent)
def lambda_handler(event: ObjectCreatedEvent, context: LambdaContext) -> dict:
    obj = event.detail.object
    result = intake.start_release(default_deps(IntakeSettings), event.detail.bucket.name, obj.key, obj.version_id)
    logger.info("release intake", extra=result)
    return result
