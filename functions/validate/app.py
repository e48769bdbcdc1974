"""Validate: the manifest (schema, pinned model id), its prompt files and their sha256."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import candidate
from modelgate.pipeline.deps import default_deps
from modelgate.policy import ServiceConfig
from modelgate.settings import ValidateSettings
from modelgate.upload_metadata import UploadMetadata

candidate.load_validate_checks()  # what validate() imports inside it, loaded at init
# Every call validates the service's registration and builds the upload's metadata, models the
# other handlers that import them never validate (defer_build): built here, at init.
ServiceConfig.model_rebuild()
UploadMetadata.model_rebuild()


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return candidate.validate(default_deps(ValidateSettings), event).dump()
