"""Rollback: the live alias back to the version that was live, with the reason in the ledger.

The event is {"release": <context>, "error": {"Error": ..., "Cause": ...}} from the ASL's Catch.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate import pipeline
from modelgate.observability import logger
from modelgate.task_events import OutcomeEvent


@logger.inject_lambda_context(correlation_id_path="release.release_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    request = OutcomeEvent.model_validate(event)
    return pipeline.rollback(pipeline.default_deps(), request.release, request.error)
