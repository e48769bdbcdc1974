"""OnAlarm: a canary alarm went to ALARM (EventBridge "CloudWatch Alarm State Change").

Fails the baking release's waiting task at once, so rollback starts without polling.
"""

from typing import Literal

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from modelgate.observability import logger
from modelgate.pipeline import canary
from modelgate.pipeline.deps import default_deps


class AlarmState(BaseModel):
    value: Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
    reason: str = ""


class AlarmDetail(BaseModel):
    alarmName: str
    state: AlarmState


class AlarmStateChangeEvent(EventBridgeModel):
    detail: AlarmDetail


@logger.inject_lambda_context
@event_parser(model=AlarmStateChangeEvent)
def lambda_handler(event: AlarmStateChangeEvent, context: LambdaContext) -> dict:
    if event.detail.state.value != "ALARM":
        return {"alarm": event.detail.alarmName, "action": "ignored", "why": event.detail.state.value}
    result = canary.on_alarm(default_deps(), event.detail.alarmName, event.detail.state.reason)
    logger.info("alarm handled", extra=result)
    return result
