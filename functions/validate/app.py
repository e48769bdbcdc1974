"""Validate: the manifest (schema, pinned model id), its prompt files and their sha256."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import ReleaseContext

# Every call checks the prompts as templates (pipeline.candidate imports this inside that check,
# for the lock and publish steps' sake): loaded at init with the rest of what each call runs.
from modelgate.inference import checked_template  # noqa: F401
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import candidate
from modelgate.pipeline.deps import default_deps
from modelgate.settings import ValidateSettings


@logger.inject_lambda_context(correlation_id_path="release_id")
@event_model(ReleaseContext)
def lambda_handler(event: ReleaseContext, context: LambdaContext) -> dict:
    return candidate.validate(default_deps(ValidateSettings), event).dump()
