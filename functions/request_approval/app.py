"""RequestApproval: keep the approval task token in the ledger and ask approvers over SNS.

Invoked with waitForTaskToken: the event is {"release": <context>, "task_token": "..."}.
The token is stored, never logged.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate import pipeline
from modelgate.observability import logger
from modelgate.task_events import CallbackEvent


@logger.inject_lambda_context(correlation_id_path="release.release_id")
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    request = CallbackEvent.model_validate(event)
    return pipeline.request_approval(pipeline.default_deps(), request.release, request.task_token)
