"""EventBridge Scheduler for the embedded AWS: schedules fired on the runtime's clock.

moto 5.2.1 stores schedules (``moto/scheduler``) and never runs them. :class:`SchedulerRunner`
fires each ENABLED rate-based schedule of one account/region on nominal time, as EventBridge
Scheduler does ("Schedule types in EventBridge Scheduler",
https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html):

- ``rate(value unit)``, unit minute(s) / hour(s) / day(s); "If you don't provide a
  StartDate for a rate-based schedule, your schedule starts invoking the target
  immediately", then every period; a StartDate moves the first invocation there and an
  EndDate stops them;
- targets are invoked "with 60 second precision": here at the nominal second;
- the target is invoked with the schedule's ``Input`` as the payload, as the target's
  execution role (``RoleArn``): the role must allow ``lambda:InvokeFunction`` on the target
  ("Set up the execution role", EventBridge Scheduler User Guide,
  https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html#setting-up-execution-role);
  a refused invocation is logged and dropped (AWS retries per RetryPolicy, then drops or
  dead-letters it).

Only Lambda targets run (the stack's only kind); ``cron`` and ``at`` expressions are refused
when the schedule is deployed (template.py), so nothing is silently never run.
A nominal-time gap longer than a period (a jumping clock) fires once per missed period.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from modelgate_emulator.clock import Clock, JumpingClock

LOG = logging.getLogger(__name__)

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}

InvokeAsync = Callable[[str, bytes], None]
Authorize = Callable[[str, str], None]  # (role_arn, function_arn): raises when IAM refuses


def rate_seconds(expression: str) -> int:
    """The period of a ``rate(value unit)`` expression; ValueError naming what is wrong."""
    match = _RATE.match(expression.strip())
    if not match:
        raise ValueError(
            f"schedule expression {expression!r}: the embedded AWS runs rate(value unit) schedules only "
            "(unit minute(s), hour(s) or day(s))"
        )
    value = int(match.group(1))
    if value < 1:
        raise ValueError(f"schedule expression {expression!r}: the value must be a positive integer")
    return value * _UNIT_SECONDS[match.group(2).rstrip("s")]


class SchedulerRunner:
    """Fires the schedules of one account/region on ``clock`` until :meth:`stop`."""

    def __init__(
        self, *, account_id: str, region: str, clock: Clock, invoke_async: InvokeAsync,
        authorize: Authorize | None = None, tick_seconds: float = 0.05,
    ) -> None:
        self.account_id = account_id
        self.region = region
        self.clock = clock
        self.deliver = invoke_async  # the runtime's asynchronous (Event) invocation
        self.authorize = authorize
        self.tick_seconds = tick_seconds
        self._next: dict[str, float] = {}  # schedule ARN -> nominal time of its next invocation
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired: list[tuple[str, float]] = []  # (schedule name, nominal time): what ran

    def _schedules(self) -> list[Any]:
        from moto.scheduler.models import scheduler_backends

        backend = scheduler_backends[self.account_id][self.region]
        return [s for group in backend.schedule_groups.values() for s in group.schedules.values()]

    def fire_due(self) -> list[str]:
        """Invoke every schedule whose next invocation time has come; their names."""
        now = self.clock.now()
        fired = []
        with self._lock:
            for schedule in self._schedules():
                if schedule.state != "ENABLED":
                    continue
                period = rate_seconds(schedule.schedule_expression)
                start = _epoch(schedule.start_date) if schedule.start_date else None
                end = _epoch(schedule.end_date) if schedule.end_date else None
                due = self._next.setdefault(schedule.arn, start if start is not None else now)
                while due <= now and (end is None or due < end):
                    self._invoke(schedule)
                    self.fired.append((schedule.name, due))
                    fired.append(schedule.name)
                    due += period
                self._next[schedule.arn] = due
        return fired

    def _invoke(self, schedule: Any) -> None:
        target = schedule.target
        arn, role = str(target["Arn"]), str(target.get("RoleArn", ""))
        try:
            if ":lambda:" not in arn:
                raise ValueError(f"target {arn} is not a Lambda function (the only target the embedded AWS runs)")
            if self.authorize is not None:
                self.authorize(role, arn)
            self.deliver(arn, str(target.get("Input") or "{}").encode())
        except Exception:  # AWS drops (or dead-letters) what it cannot deliver; the schedule goes on
            LOG.exception("schedule %s: invoking %s failed", schedule.name, arn)

    def next_due(self) -> float | None:
        with self._lock:
            return min(self._next.values(), default=None)

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
                self.fire_due()
            except Exception:  # one bad tick must not end the schedules for the run
                LOG.exception("scheduler tick failed")
            upcoming = self.next_due()
            now = self.clock.now()
            if isinstance(self.clock, JumpingClock) and upcoming is not None:
                self.clock.wait_for_moment(self._stopping, upcoming)
            else:
                wait = self.tick_seconds if upcoming is None else self.clock.real_seconds(upcoming - now)
                self._stopping.wait(min(self.tick_seconds, max(wait, 0.002)))


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return datetime.fromisoformat(value).timestamp()
    return float(value)
