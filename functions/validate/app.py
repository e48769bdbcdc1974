"""Validate: the manifest (schema, pinned model id), its prompt files and their sha256."""

from aws_lambda_powertools.utilities.typing import LambdaContext

# What every call runs that pipeline.candidate imports inside validate() (for the lock and
# publish steps' sake, which share the module): loaded here, at init, not on the first call.
# The prompts checked as templates, the registration, the upload's author and metadata, the
# registry group and the upstream stage checks.
from modelgate.approval import identity  # noqa: F401
from modelgate.contract import ReleaseContext
from modelgate.inference import checked_template  # noqa: F401
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import candidate
from modelgate.pipeline.deps import default_deps
from modelgate.policy import ServiceConfig
from modelgate.registry import get_service  # noqa: F401
from modelgate.settings import ValidateSettings
from modelgate.upload_metadata import UploadMetadata

candidate.load_validate_checks()
# Every call validates the service's registration and builds the upload's metadata, models the
# other handlers that import them never validate (defer_build): built here, at init.
ServiceConfig.model_rebuild()
UploadMetadata.model_rebuild()


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return candidate.validate(default_deps(ValidateSettings), event).dump()
