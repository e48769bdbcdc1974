"""RequestApproval: keep the approval task token in the ledger and ask approvers over SNS.

Invoked with waitForTaskToken: the event is {"release": <context>, "task_token": "..."}.
The token is stored, never logged.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import CallbackEvent
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import approval
from modelgate.pipeline.deps import default_deps
from modelgate.settings import ApprovalRequestSettings


@logger.inject_lambda_context(correlation_id_path="release.release_id")
@event_model(CallbackEvent)
def lambda_handler(event: CallbackEvent, context: LambdaContext) -> dict:
    return approval.request_approval(default_deps(ApprovalRequestSettings), event.release, event.task_token)
