"""StartBake: arm the bake (keep its token); an alarm already firing fails it at once.

Invoked with waitForTaskToken: the event is {"release": <context>, "task_token": "..."}.
The token is stored, never logged.
"""

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelgate.contract import CallbackEvent
from modelgate.lambda_event import event_model
from modelgate.observability import logger
from modelgate.pipeline import canary
from modelgate.pipeline.deps import default_deps


@logger.inject_lambda_context(correlation_id_path="release.release_id")
@event_model(CallbackEvent)
def lambda_handler(event: CallbackEvent, context: LambdaContext) -> dict:
    return canary.start_bake(default_deps(), event.release, event.task_token)
