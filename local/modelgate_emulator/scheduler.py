"""EventBridge Scheduler for the embedded AWS: schedules run on the runtime's nominal clock.

moto 5.2.1 stores schedules (``moto/scheduler``) and never runs them. :class:`ScheduleRunner`
runs every ENABLED schedule of the account and region on the runtime's clock, as AWS does
("Schedule types in EventBridge Scheduler", EventBridge Scheduler User Guide,
https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html):

- ``rate(value unit)`` (unit ``minute(s)``, ``hour(s)``, ``day(s)``): from its ``StartDate``, or
  at once when it has none ("If you do not provide a StartDate for a rate-based schedule, your
  schedule starts invoking its target immediately"), then every period, until ``EndDate``;
- ``at(yyyy-mm-ddThh:mm:ss)``: once, at that moment (UTC here);
- ``cron(...)``: stored, not run locally (logged once per schedule): the project's schedules are
  rate-based.

A Lambda target is invoked asynchronously with the target's ``Input`` as the event, as the
templated Lambda Invoke target does; the schedule's execution role must allow
``lambda:InvokeFunction`` on the target ("Set up the execution role", EventBridge Scheduler
User Guide, https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html#setting-up-execution-role),
checked with the embedded AWS's IAM when it enforces. A refused or failed delivery is logged
and counted in :attr:`ScheduleRunner.deliveries`; Scheduler's retries and dead-letter queue are
not modelled (a delivery is one attempt). Other target types are logged as not delivered.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

InvokeAsync = Callable[[str, bytes], None]

_RATE = re.compile(r"^rate\((?P<value>[1-9][0-9]*) (?P<unit>minute|minutes|hour|hours|day|days)\)$")
_AT = re.compile(r"^at\((?P<moment>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_CRON = re.compile(r"^cron\(.+\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}
# How long the runner waits at most before looking for new or changed schedules (nominal seconds).
RESCAN_SECONDS = 60.0


def parse_expression(expression: str) -> tuple[str, float | None]:
    """``("rate", seconds)``, ``("at", epoch seconds)`` or ``("cron", None)``; ValueError naming
    the expression when it is none of them (what CreateSchedule refuses)."""
    if match := _RATE.match(expression):
        value, unit = int(match["value"]), match["unit"].rstrip("s")
        if value == 1 and match["unit"].endswith("s") or value > 1 and not match["unit"].endswith("s"):
            raise ValueError(f"schedule expression {expression!r}: use '{unit}' for 1 and '{unit}s' above")
        return "rate", float(value * _UNIT_SECONDS[unit])
    if match := _AT.match(expression):
        return "at", datetime.fromisoformat(match["moment"]).replace(tzinfo=UTC).timestamp()
    if _CRON.match(expression):
        return "cron", None
    raise ValueError(
        f"schedule expression {expression!r} is not rate(value unit), at(yyyy-mm-ddThh:mm:ss) or cron(fields)"
    )


@dataclasses.dataclass
class Delivery:
    """One run of one schedule: when (nominal), what, and whether it was delivered."""

    schedule: str
    at: float
    target: str
    delivered: bool
    error: str | None = None


@dataclasses.dataclass
class _Tracked:
    signature: tuple[Any, ...]
    next_due: float | None


class ScheduleRunner:
    """Runs moto's schedules on ``clock`` (``modelgate_emulator.clock``) until :meth:`stop`."""

    def __init__(
        self,
        *,
        account_id: str,
        region: str,
        clock: Any,
        invoke_async: InvokeAsync,
        authorize: Callable[[str, str], None] | None = None,
    ) -> None:
        self.account_id = account_id
        self.region = region
        self.clock = clock
        self._invoke_async = invoke_async
        self._authorize = authorize
        self._tracked: dict[tuple[str, str], _Tracked] = {}
        self._cron_noted: set[tuple[str, str]] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.deliveries: list[Delivery] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="modelgate-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                upcoming = self.run_due()
            except Exception:  # one bad pass must not end the schedules for the run
                logger.exception("scheduler: a pass over the schedules failed")
                upcoming = None
            now = self.clock.now()
            moment = min(upcoming if upcoming is not None else now + RESCAN_SECONDS, now + RESCAN_SECONDS)
            self.clock.wait_for_moment(self._stopping, moment)

    # ------------------------------------------------------------------ one pass
    def _schedules(self) -> list[Any]:
        from moto.scheduler.models import scheduler_backends

        backend = scheduler_backends[self.account_id][self.region]
        return [s for group in list(backend.schedule_groups.values()) for s in list(group.schedules.values())]

    def run_due(self) -> float | None:
        """Deliver every schedule due by now; the nominal moment the next one is due (None: none is)."""
        now = self.clock.now()
        upcoming: float | None = None
        seen = set()
        for schedule in self._schedules():
            key = (schedule.group_name, schedule.name)
            seen.add(key)
            due = self._next_due(key, schedule, now)
            while due is not None and due <= now:
                self._deliver(schedule, due)
                due = self._advance(key, schedule, due)
            if due is not None:
                upcoming = due if upcoming is None else min(upcoming, due)
        for gone in set(self._tracked) - seen:
            del self._tracked[gone]
        return upcoming

    def _next_due(self, key: tuple[str, str], schedule: Any, now: float) -> float | None:
        signature = (schedule.schedule_expression, schedule.state, schedule.start_date, schedule.end_date)
        tracked = self._tracked.get(key)
        if tracked is not None and tracked.signature == signature:
            return tracked.next_due
        kind, value = parse_expression(schedule.schedule_expression)
        due: float | None
        if schedule.state != "ENABLED":
            due = None
        elif kind == "rate":
            due = max(now, _epoch(schedule.start_date) or now)  # no StartDate: at once
        elif kind == "at":
            due = value if value is not None and value >= now else None
        else:
            if key not in self._cron_noted:
                self._cron_noted.add(key)
                logger.warning("scheduler: %s runs on %s, which the local runtime does not run", key[1],
                               schedule.schedule_expression)
            due = None
        self._tracked[key] = _Tracked(signature, self._before_end(schedule, due))
        return self._tracked[key].next_due

    def _advance(self, key: tuple[str, str], schedule: Any, due: float) -> float | None:
        kind, period = parse_expression(schedule.schedule_expression)
        following = due + period if kind == "rate" and period else None
        self._tracked[key].next_due = self._before_end(schedule, following)
        return self._tracked[key].next_due

    @staticmethod
    def _before_end(schedule: Any, due: float | None) -> float | None:
        end = _epoch(schedule.end_date)
        return None if due is None or (end is not None and due > end) else due

    def _deliver(self, schedule: Any, at: float) -> None:
        target = schedule.target or {}
        arn = str(target.get("Arn", ""))
        payload = str(target.get("Input") or "{}").encode()
        try:
            if arn.split(":")[2:3] != ["lambda"]:
                raise ValueError(f"target {arn} is not a Lambda function: the local runtime delivers to Lambda only")
            if self._authorize is not None:
                self._authorize(str(target.get("RoleArn", "")), arn)
            self._invoke_async(arn, payload)
        except Exception as exc:  # noqa: BLE001 - logged and counted: one schedule's failure never stops the others
            logger.error("scheduler: schedule %s was not delivered to %s: %s", schedule.name, arn, exc)
            self._record(Delivery(schedule.name, at, arn, False, str(exc)))
            return
        self._record(Delivery(schedule.name, at, arn, True))

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)


def _epoch(value: Any) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()


def authorize_with_role(role_arn: str, function_arn: str) -> None:
    """The schedule's execution role may invoke the function (raises ``iam.AccessDenied``)."""
    from modelgate_emulator import iam

    enforcer = iam.active()
    if enforcer is None:
        return
    if not role_arn:
        raise iam.AccessDenied("scheduler.amazonaws.com", "lambda:InvokeFunction", function_arn,
                               "the schedule's target has no RoleArn")
    enforcer.check(iam.role_principal(role_arn, "scheduler"), "lambda:InvokeFunction", function_arn)
