"""Monitor: the scheduled checks of a live service (EventBridge Scheduler, one schedule per
service and check, template.yaml), re-evaluations a monitoring action asks for, and the drift
baseline of each promoted release. After each check and baseline the service's CloudWatch
dashboard is written again (monitor/dashboard.py).

Event (the schedule's input, ``actions.act``'s ``reevaluate``, or Promote's request)::

    {"task": "reevaluate", "service": "support-bot"}
    {"task": "lifecycle", "service": "support-bot"}
    {"task": "act", "trigger": "drift", "service": "support-bot", "reason": "...", "evidence": {...}}
    {"task": "baseline", "service": "support-bot", "requested_by": "promote",
     "baseline": {"release_id": "...", "version": "3", "report_key": "reports/.../evaluation.json",
                  "report_version": "...", "canary_started_at": "...", "promoted_at": "..."}}

``act`` is the drift check asking for the policy's ``on_drift`` actions (the drift check's role
may invoke this function, and holds no grant of its own to alert or roll back). ``baseline``
is Promote asking, asynchronously, for the promoted version's drift baseline (Promote's role
may invoke this function and holds no grant to read captured traffic or write baselines):
``monitor.baseline.build_for_release``.

Each task's module is imported when that task runs: an invocation does one task, and the
re-evaluation's report models are most of what the others would load for nothing (issue #7,
cold start).
"""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelgate.lambda_event import event_model
from modelgate.monitor import dashboard
from modelgate.monitor.baseline_request import BaselineRequest
from modelgate.observability import logger
from modelgate.pipeline.deps import default_deps
from modelgate.policy import ServiceConfig
from modelgate.settings import MonitorSettings

# Every task ends by writing the service's dashboard from its registration (registry.get_service),
# a model built on first use (defer_build) by the handlers that seldom read it: built here, at init.
ServiceConfig.model_rebuild()


class MonitorTask(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["reevaluate", "lifecycle", "act", "baseline"]
    service: str = Field(pattern=r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")  # a service name (manifest.py)
    requested_by: str = Field(default="schedule", max_length=64)
    reason: str | None = Field(default=None, max_length=2_000)
    trigger: Literal["drift"] | None = None  # with task act: what found live wanting
    evidence: dict[str, Any] = Field(default_factory=dict)
    baseline: BaselineRequest | None = None  # with task baseline: which release, from what

    @model_validator(mode="after")
    def _baseline_request(self) -> MonitorTask:
        if (self.task == "baseline") != (self.baseline is not None):
            raise ValueError("a baseline request (release_id, version, report_key, promoted_at) goes with task "
                             "baseline, and only with it")
        return self


@logger.inject_lambda_context(correlation_id_path="service")
@event_model(MonitorTask)
def lambda_handler(event: MonitorTask, context: LambdaContext) -> dict[str, Any]:
    deps = default_deps(MonitorSettings)
    if event.task == "act":
        from modelgate.monitor import actions

        if event.trigger is None or not event.reason:
            raise ValueError("task act needs a trigger and a reason")
        results = actions.act(deps, event.trigger, event.service, event.reason, event.evidence)
        logger.info("monitoring actions done", managed_service=event.service, trigger=event.trigger, results=results)
        return {"service": event.service, "trigger": event.trigger, "actions": results}
    if event.task == "baseline":
        from modelgate.monitor.baseline import build_for_release  # the drift profile's models: this task's

        assert event.baseline is not None  # the model's validator
        entry = build_for_release(deps, event.service, event.baseline)
        logger.info("baseline task done", managed_service=event.service, status=entry["status"],
                    release_id=event.baseline.release_id)
    else:
        if event.task == "reevaluate":
            from modelgate.monitor import reevaluation

            entry = reevaluation.reevaluate_live(deps, event.service, requested_by=event.requested_by)
        else:
            from modelgate.monitor import lifecycle

            entry = lifecycle.watch(deps, event.service)
        logger.info("monitoring check done", task=event.task, managed_service=event.service, summary=entry["summary"])
    try:  # the dashboard's annotations and events follow the ledger; a failure here loses no check
        entry["dashboard"] = dashboard.publish_dashboard(deps, event.service)
    except Exception:  # noqa: BLE001 - logged with its traceback; the check's result stands
        logger.exception("the service's dashboard was not updated", managed_service=event.service)
    return entry
