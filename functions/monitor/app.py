"""Monitor: the scheduled checks of a live service (EventBridge Scheduler, one schedule per
service and check, template.yaml) and re-evaluations a monitoring action asks for. After
each check the service's CloudWatch dashboard is written again (monitor/dashboard.py).

Event (the schedule's input, or ``actions.act``'s ``reevaluate``)::

    {"task": "reevaluate", "service": "support-bot"}
    {"task": "lifecycle", "service": "support-bot"}
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from modelgate.monitor import dashboard, lifecycle, reevaluation
from modelgate.observability import logger
from modelgate.pipeline.deps import default_deps
from modelgate.settings import MonitorSettings


class MonitorTask(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["reevaluate", "lifecycle"]
    service: str = Field(pattern=r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")  # a service name (manifest.py)
    requested_by: str = Field(default="schedule", max_length=64)
    reason: str | None = Field(default=None, max_length=2_000)


@logger.inject_lambda_context(correlation_id_path="service")
@event_parser(model=MonitorTask)
def lambda_handler(event: MonitorTask, context: LambdaContext) -> dict[str, Any]:
    deps = default_deps(MonitorSettings)
    if event.task == "reevaluate":
        entry = reevaluation.reevaluate_live(deps, event.service, requested_by=event.requested_by)
    else:
        entry = lifecycle.watch(deps, event.service)
    logger.info("monitoring check done", task=event.task, managed_service=event.service, summary=entry["summary"])
    try:  # the dashboard's annotations and events follow the ledger; a failure here loses no check
        entry["dashboard"] = dashboard.publish_dashboard(deps, event.service)
    except Exception:  # noqa: BLE001 - logged with its traceback; the check's result stands
        logger.exception("the service's dashboard was not updated", managed_service=event.service)
    return entry
