"""EventBridge Scheduler for the embedded AWS: schedules run on the runtime's nominal clock.

moto 5.2.1 stores schedules (``moto/scheduler``) and never runs them. :class:`ScheduleRunner`
runs every ENABLED schedule of the account and region on the runtime's clock, as AWS does
("Schedule types in EventBridge Scheduler", EventBridge Scheduler User Guide,
https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html):

- ``rate(value unit)`` (unit ``minute(s)``, ``hour(s)``, ``day(s)``): from its ``StartDate``, or
  at once when it has none ("If you do not provide a StartDate for a rate-based schedule, your
  schedule starts invoking its target immediately"), then every period, until ``EndDate``;
- ``cron(fields)``: AWS's six-field cron (``aws_cron``: ``?``, ``L``, ``W``, ``#``, the year field,
  day-of-week 1 = SUN) at its wall-clock times in ``ScheduleExpressionTimezone`` (UTC when
  unset), between ``StartDate`` and ``EndDate``; a time the spring daylight-saving change skips
  is not run, a time the autumn change repeats runs once;
- ``at(yyyy-mm-ddThh:mm:ss)``: once, at that wall-clock moment in ``ScheduleExpressionTimezone``.

``FlexibleTimeWindow`` ``{"Mode": "FLEXIBLE", "MaximumWindowInMinutes": n}``: the target is
invoked at a moment within the n minutes after the scheduled time (here a pseudo-random one
fixed by the schedule and the time, so a run repeats); ``OFF``: at the scheduled time.

A Lambda target is invoked asynchronously with the target's ``Input`` as the event, as the
templated Lambda Invoke target does; the schedule's execution role must allow
``lambda:InvokeFunction`` on the target ("Set up the execution role", EventBridge Scheduler
User Guide, https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html#setting-up-execution-role),
checked with the embedded AWS's IAM when it enforces. A failed invocation is retried per the
target's ``RetryPolicy`` ("RetryPolicy", EventBridge Scheduler API Reference,
https://docs.aws.amazon.com/scheduler/latest/APIReference/API_RetryPolicy.html: "Retry attempts
with exponential backoff continue until either the maximum number of attempts is made or until
the duration of the MaximumEventAgeInSeconds is reached"; AWS's default, which moto fills in, is
185 attempts over 86,400 s). AWS does not document the backoff's base: here the n-th retry
waits ``RETRY_BASE_SECONDS * 2**(n-1)``, at most ``RETRY_CAP_SECONDS``. When the retries are
spent, the event goes to the target's ``DeadLetterConfig`` queue ("Configuring a schedule's
dead-letter queue in EventBridge Scheduler", https://docs.aws.amazon.com/scheduler/latest/UserGuide/configuring-schedule-dlq.html:
"If you configure a retry policy for your schedule, EventBridge Scheduler delivers the
dead-letter event it has exhausting the maximum number of retries you set"): a standard SQS
queue the execution role may ``sqs:SendMessage`` to; the message body is the target's input and
its attributes say why (ERROR_CODE, ERROR_MESSAGE, EXECUTION_ID, SCHEDULE_ARN, SCHEDULED_TIME,
TARGET_ARN). Without a dead-letter queue the event is logged as dropped. Every attempt is in
:attr:`ScheduleRunner.deliveries`. Other target types are not delivered (logged, counted).

:func:`check_schedule` refuses at deploy what CreateSchedule refuses (the expression, the time
zone, the window, the retry policy, the queue ARN), naming the problem.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from modelgate_emulator import aws_cron
from modelgate_emulator.background import BackgroundLoop

logger = logging.getLogger(__name__)

InvokeAsync = Callable[[str, bytes], None]

_RATE = re.compile(r"^rate\((?P<value>[1-9][0-9]*) (?P<unit>minute|minutes|hour|hours|day|days)\)$")
_AT = re.compile(r"^at\((?P<moment>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}
# How long the runner waits at most before looking for new or changed schedules (nominal seconds).
RESCAN_SECONDS = 60.0
# The retry backoff (AWS documents "exponential backoff", not its base): 1 s, 2 s, 4 s ... at most 5 min.
RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 300.0
# AWS's bounds ("RetryPolicy", "FlexibleTimeWindow", "DeadLetterConfig" in the Scheduler API Reference).
_RETRY_BOUNDS = {"MaximumRetryAttempts": (0, 185), "MaximumEventAgeInSeconds": (60, 86_400)}
_WINDOW_MINUTES = (1, 1440)
_QUEUE_ARN = re.compile(r"^arn:aws(-[a-z]+)?:sqs:[a-z0-9\-]+:\d{12}:[a-zA-Z0-9\-_]+$")


def parse_expression(expression: str) -> tuple[str, float | None]:
    """``("rate", seconds)``, ``("at", epoch seconds of the moment read as UTC)`` or ``("cron", None)``
    (the cron fields checked by ``aws_cron.parse``); ValueError naming the expression when it is
    none of them (what CreateSchedule refuses)."""
    if match := _RATE.match(expression):
        value, unit = int(match["value"]), match["unit"].rstrip("s")
        if value == 1 and match["unit"].endswith("s") or value > 1 and not match["unit"].endswith("s"):
            raise ValueError(f"schedule expression {expression!r}: use '{unit}' for 1 and '{unit}s' above")
        return "rate", float(value * _UNIT_SECONDS[unit])
    if match := _AT.match(expression):
        return "at", datetime.fromisoformat(match["moment"]).replace(tzinfo=UTC).timestamp()
    if expression.startswith("cron("):
        aws_cron.parse(expression)
        return "cron", None
    raise ValueError(
        f"schedule expression {expression!r} is not rate(value unit), at(yyyy-mm-ddThh:mm:ss) or cron(fields)"
    )


def check_schedule(properties: dict[str, Any]) -> None:
    """What CreateSchedule refuses in a schedule's properties (CloudFormation's names); ValueError naming it."""
    parse_expression(str(properties["ScheduleExpression"]))
    aws_cron.zone_info(str(properties.get("ScheduleExpressionTimezone") or "UTC"))
    window = dict(properties.get("FlexibleTimeWindow") or {"Mode": "OFF"})
    if window.get("Mode") not in ("OFF", "FLEXIBLE"):
        raise ValueError(f"FlexibleTimeWindow Mode {window.get('Mode')!r} is not OFF or FLEXIBLE")
    if window["Mode"] == "FLEXIBLE":
        minutes = window.get("MaximumWindowInMinutes")
        low, high = _WINDOW_MINUTES
        if minutes is None or not low <= int(minutes) <= high:
            raise ValueError(f"FlexibleTimeWindow FLEXIBLE needs MaximumWindowInMinutes {low}-{high}, not {minutes!r}")
    target = dict(properties.get("Target") or {})
    for key, value in dict(target.get("RetryPolicy") or {}).items():
        if key not in _RETRY_BOUNDS:
            raise ValueError(f"RetryPolicy has no {key!r} (only {', '.join(_RETRY_BOUNDS)})")
        low, high = _RETRY_BOUNDS[key]
        if not low <= int(value) <= high:
            raise ValueError(f"RetryPolicy {key} {value} is outside {low}-{high}")
    queue = (target.get("DeadLetterConfig") or {}).get("Arn")
    if queue is not None and not _QUEUE_ARN.match(str(queue)):
        raise ValueError(f"DeadLetterConfig Arn {queue!r} is not an SQS queue ARN")
    start, end = _epoch(properties.get("StartDate")), _epoch(properties.get("EndDate"))
    if start is not None and end is not None and end <= start:
        raise ValueError(f"EndDate {properties['EndDate']} is not after StartDate {properties['StartDate']}")


@dataclasses.dataclass
class Delivery:
    """One attempt of one run of one schedule: when (nominal), what, and whether it was delivered.
    ``scheduled``: the run's scheduled time; ``attempt``: 1 for the first, then each retry;
    ``dead_lettered``: the last failed attempt's event went to the dead-letter queue."""

    schedule: str
    at: float
    target: str
    delivered: bool
    error: str | None = None
    attempt: int = 1
    scheduled: float | None = None
    dead_lettered: bool = False


@dataclasses.dataclass
class _Tracked:
    signature: tuple[Any, ...]
    next_due: float | None


@dataclasses.dataclass
class _Attempt:
    """A run of a schedule waiting for its next attempt (the first, or a retry)."""

    schedule: str
    schedule_arn: str
    target: dict[str, Any]
    scheduled: float
    at: float
    number: int = 1
    first_at: float | None = None
    execution_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:16])


class ScheduleRunner(BackgroundLoop):
    """Runs moto's schedules on ``clock`` (``modelgate_emulator.clock``) until :meth:`stop`.

    ``authorize(role_arn, resource_arn, action)`` raises when the role may not take the action."""

    thread_name = "modelgate-scheduler"

    def __init__(
        self,
        *,
        account_id: str,
        region: str,
        clock: Any,
        invoke_async: InvokeAsync,
        authorize: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.account_id = account_id
        self.region = region
        self.clock = clock
        self._invoke_async = invoke_async
        self._authorize = authorize
        self._tracked: dict[tuple[str, str], _Tracked] = {}
        self._pending: list[_Attempt] = []
        self._init_loop()
        self._lock = threading.Lock()
        self.deliveries: list[Delivery] = []

    # ------------------------------------------------------------------ lifecycle
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
        """Start every run due by now and make every attempt due by now (first ones and retries);
        the nominal moment the next is due (None: none is)."""
        now = self.clock.now()
        upcoming: float | None = None
        seen = set()
        for schedule in self._schedules():
            key = (schedule.group_name, schedule.name)
            seen.add(key)
            try:
                due = self._next_due(key, schedule, now)
            except ValueError as exc:  # stored through the API without the deploy's check
                logger.error("scheduler: schedule %s is not run: %s", schedule.name, exc)
                self._tracked[key] = _Tracked(self._signature(schedule), None)
                continue
            while due is not None and due <= now:
                self._pending.append(_Attempt(schedule.name, schedule.arn, dict(schedule.target or {}), due,
                                              due + _window_offset(schedule, due)))
                due = self._advance(key, schedule, due)
            if due is not None:
                upcoming = due if upcoming is None else min(upcoming, due)
        for gone in set(self._tracked) - seen:
            del self._tracked[gone]
        while ready := sorted((a for a in self._pending if a.at <= now), key=lambda a: (a.at, a.schedule)):
            for attempt in ready:
                self._pending.remove(attempt)
                self._attempt(attempt)
        if self._pending:
            first = min(a.at for a in self._pending)
            upcoming = first if upcoming is None else min(upcoming, first)
        return upcoming

    @staticmethod
    def _signature(schedule: Any) -> tuple[Any, ...]:
        return (schedule.schedule_expression, schedule.schedule_expression_timezone, schedule.state,
                schedule.start_date, schedule.end_date)

    def _next_due(self, key: tuple[str, str], schedule: Any, now: float) -> float | None:
        signature = self._signature(schedule)
        tracked = self._tracked.get(key)
        if tracked is not None and tracked.signature == signature:
            return tracked.next_due
        kind, _ = parse_expression(schedule.schedule_expression)
        zone = schedule.schedule_expression_timezone or "UTC"
        start = _epoch(schedule.start_date)
        due: float | None
        if schedule.state != "ENABLED":
            due = None
        elif kind == "rate":
            due = max(now, start or now)  # no StartDate: at once
        elif kind == "at":
            moment = _wall_clock(schedule.schedule_expression, zone)
            due = moment if moment >= now else None
        else:
            # the first occurrence at or after now (or StartDate): strictly after a moment just before it
            due = aws_cron.parse(schedule.schedule_expression).next_after(max(now, start or now) - 1e-3, zone)
        self._tracked[key] = _Tracked(signature, self._before_end(schedule, due))
        return self._tracked[key].next_due

    def _advance(self, key: tuple[str, str], schedule: Any, due: float) -> float | None:
        kind, period = parse_expression(schedule.schedule_expression)
        following: float | None = None
        if kind == "rate" and period:
            following = due + period
        elif kind == "cron":
            following = aws_cron.parse(schedule.schedule_expression).next_after(
                due, schedule.schedule_expression_timezone or "UTC")
        self._tracked[key].next_due = self._before_end(schedule, following)
        return self._tracked[key].next_due

    @staticmethod
    def _before_end(schedule: Any, due: float | None) -> float | None:
        end = _epoch(schedule.end_date)
        return None if due is None or (end is not None and due > end) else due

    # ------------------------------------------------------------------ delivery
    def _attempt(self, attempt: _Attempt) -> None:
        target = attempt.target
        arn = str(target.get("Arn", ""))
        payload = str(target.get("Input") or "{}").encode()
        attempt.first_at = attempt.first_at if attempt.first_at is not None else attempt.at
        try:
            if arn.split(":")[2:3] != ["lambda"]:
                raise ValueError(f"target {arn} is not a Lambda function: the local runtime delivers to Lambda only")
            if self._authorize is not None:
                self._authorize(str(target.get("RoleArn", "")), arn, "lambda:InvokeFunction")
            self._invoke_async(arn, payload)
        except Exception as exc:  # noqa: BLE001 - retried, then dead-lettered or dropped: never stops the others
            self._failed(attempt, exc)
            return
        self._record(Delivery(attempt.schedule, attempt.at, arn, True, None, attempt.number, attempt.scheduled))

    def _failed(self, attempt: _Attempt, error: Exception) -> None:
        target = attempt.target
        arn = str(target.get("Arn", ""))
        policy = dict(target.get("RetryPolicy") or {})
        retries = int(policy.get("MaximumRetryAttempts", 185))
        max_age = float(policy.get("MaximumEventAgeInSeconds", 86_400))
        wait = min(RETRY_BASE_SECONDS * 2 ** (attempt.number - 1), RETRY_CAP_SECONDS)
        retry_at = attempt.at + wait
        assert attempt.first_at is not None
        if attempt.number <= retries and retry_at - attempt.first_at <= max_age:
            logger.warning("scheduler: schedule %s attempt %d to %s failed (%s); retry in %.0f s",
                           attempt.schedule, attempt.number, arn, error, wait)
            self._record(Delivery(attempt.schedule, attempt.at, arn, False, str(error), attempt.number,
                                  attempt.scheduled))
            self._pending.append(dataclasses.replace(attempt, at=retry_at, number=attempt.number + 1))
            return
        spent = "no retry left" if attempt.number > retries else f"the event is older than {max_age:.0f} s"
        queue = (target.get("DeadLetterConfig") or {}).get("Arn")
        dead_lettered = bool(queue) and self._dead_letter(attempt, str(queue), error)
        logger.error("scheduler: schedule %s was not delivered to %s after %d attempt(s), %s: %s; %s",
                     attempt.schedule, arn, attempt.number, spent, error,
                     f"sent to the dead-letter queue {queue}" if dead_lettered else "dropped")
        self._record(Delivery(attempt.schedule, attempt.at, arn, False, str(error), attempt.number,
                              attempt.scheduled, dead_lettered))

    def _dead_letter(self, attempt: _Attempt, queue_arn: str, error: Exception) -> bool:
        """The dead-letter event to ``queue_arn`` as the execution role; False (logged) when it cannot go."""
        from moto.sqs.models import sqs_backends

        attributes = {
            "ERROR_CODE": _error_code(error),
            "ERROR_MESSAGE": (str(error) or repr(error))[:256],
            "EXECUTION_ID": attempt.execution_id,
            "SCHEDULE_ARN": attempt.schedule_arn,
            "SCHEDULED_TIME": datetime.fromtimestamp(attempt.scheduled, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "TARGET_ARN": str(attempt.target.get("Arn", "")),
        }
        try:
            if self._authorize is not None:
                self._authorize(str(attempt.target.get("RoleArn", "")), queue_arn, "sqs:SendMessage")
            _, _, _, region, account, queue_name = queue_arn.split(":", 5)
            sqs_backends[account][region].send_message(
                queue_name=queue_name, message_body=str(attempt.target.get("Input") or "{}"),
                message_attributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
            )
        except Exception as exc:  # noqa: BLE001 - logged: the event is lost, as on AWS
            logger.error("scheduler: schedule %s: the dead-letter queue %s refused the event: %s",
                         attempt.schedule, queue_arn, exc)
            return False
        return True

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)


def _window_offset(schedule: Any, due: float) -> float:
    """Seconds after ``due`` the target is invoked: 0 with the window OFF, else a moment within it."""
    window = schedule.flexible_time_window or {}
    if window.get("Mode") != "FLEXIBLE":
        return 0.0
    return random.Random(f"{schedule.arn}|{due}").uniform(0.0, 60.0 * float(window["MaximumWindowInMinutes"]))


def _wall_clock(expression: str, zone: str) -> float:
    """An ``at()`` expression's moment, read in the schedule's time zone."""
    match = _AT.match(expression)
    assert match, expression
    return datetime.fromisoformat(match["moment"]).replace(tzinfo=aws_cron.zone_info(zone)).timestamp()


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and (code := (response.get("Error") or {}).get("Code")):
        return str(code)
    return type(error).__name__


def _epoch(value: Any) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()


def authorize_with_role(role_arn: str, resource_arn: str, action: str = "lambda:InvokeFunction") -> None:
    """The schedule's execution role may take ``action`` on the resource: invoke the target
    function, send to the dead-letter queue (raises ``iam.AccessDenied``)."""
    from modelgate_emulator import iam

    enforcer = iam.active()
    if enforcer is None:
        return
    if not role_arn:
        raise iam.AccessDenied("scheduler.amazonaws.com", action, resource_arn, "the schedule's target has no RoleArn")
    enforcer.check(iam.role_principal(role_arn, "scheduler"), action, resource_arn)
