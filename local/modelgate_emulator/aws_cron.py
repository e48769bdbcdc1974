"""AWS cron expressions (EventBridge Scheduler), checked as CreateSchedule checks them and run in a time zone.

AWS's cron is not Unix cron ("Cron expressions reference", Amazon EventBridge User Guide,
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cron-expressions.html, which the
Scheduler's "Schedule types in EventBridge Scheduler" points to for cron-based schedules,
https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html):

- six fields, ``minutes hours day-of-month month day-of-week year``, no seconds;
- day-of-week is ``1-7`` with ``1`` = SUN (Unix: ``0-6`` with ``1`` = MON), or ``SUN-SAT``;
- a year field, ``1970-2199``;
- exactly one of day-of-month and day-of-week is ``?``: "You can't specify the Day-of-month
  and Day-of-week fields in the same cron expression. If you specify a value or a * in one of
  the fields, you must use a ? in the other" (Unix cron would match either one);
- wildcards per field: ``, - * /`` (minutes, hours, month, year), ``, - * ? / L W``
  (day-of-month: ``L`` last day, ``3W`` the weekday nearest the 3rd), ``, - * ? L #``
  (day-of-week: ``L`` the last day of the week, ``6L`` the month's last Friday, ``3#2`` its
  second Tuesday; "If you use the '#' character, you can define only one expression in the
  day-of-week field");
- ``1/10`` in minutes is every tenth minute from minute 1.

:func:`parse` checks all of that and names what is wrong, as CreateSchedule refuses it. The
occurrences are computed by ``croniter`` (the maintained cron library, which knows ``L``, ``W``
and ``#``) from the translated Unix fields; the year field is applied here (croniter's own
stops at 2099). Times are wall-clock times in the schedule's ``ScheduleExpressionTimezone``,
with the Scheduler's daylight-saving rule ("Daylight saving time on EventBridge Scheduler",
same page): a time the spring change skips is not run, a time the autumn change repeats runs
once (its first occurrence).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")  # AWS: 1..7
_NAMES = ("minutes", "hours", "day-of-month", "month", "day-of-week", "year")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2199))
_STEP_ALLOWED = (True, True, True, True, False, True)
_VALUE = r"(?:\d{1,4}|[A-Za-z]{3})"
_ITEM = re.compile(rf"^(?P<start>\*|{_VALUE})(?:-(?P<end>{_VALUE}))?(?:/(?P<step>\d{{1,4}}))?$")
# How many candidate times one lookup may pass over (days the spring change skips, years the year field excludes).
_MAX_CANDIDATES = 10_000


class CronError(ValueError):
    """An expression CreateSchedule refuses; the message names the expression and the field."""


@dataclasses.dataclass(frozen=True)
class CronSchedule:
    """A parsed ``cron(...)``: :meth:`next_after` gives its occurrences in a time zone."""

    expression: str
    unix: str  # the five Unix fields croniter reads (day-of-week renumbered, ``?`` as ``*``)
    years: frozenset[int] | None  # None: every year

    def next_after(self, moment: float, timezone: str = "UTC") -> float | None:
        """The first occurrence strictly after ``moment`` (epoch seconds), in ``timezone``'s
        wall-clock time; None when there is none (the year field has passed)."""
        zone = zone_info(timezone)
        local = datetime.fromtimestamp(moment, zone).replace(tzinfo=None)
        start = local
        iterator = croniter(self.unix, start)
        for _ in range(_MAX_CANDIDATES):
            try:
                candidate: datetime = iterator.get_next(datetime)
            except CroniterBadDateError:  # e.g. cron(0 0 30 2 ? *): no such day
                return None
            if self.years is not None and candidate.year not in self.years:
                later = [y for y in self.years if y > candidate.year]
                if not later:
                    return None
                iterator = croniter(self.unix, datetime(min(later), 1, 1) - timedelta(minutes=1))
                continue
            aware = candidate.replace(tzinfo=zone)  # fold 0: a repeated wall time runs at its first occurrence
            if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != candidate:
                continue  # a wall time the spring change skips: not run
            at = aware.timestamp()
            if at > moment:
                return at
        raise CronError(f"{self.expression}: no occurrence within {_MAX_CANDIDATES} candidates")


def zone_info(timezone: str) -> ZoneInfo:
    """The IANA zone of ``ScheduleExpressionTimezone``; CronError naming it when there is none."""
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"ScheduleExpressionTimezone {timezone!r} is not a time zone name (IANA, e.g. Europe/Paris)") \
            from None


def parse(expression: str) -> CronSchedule:
    """Check ``cron(fields)`` as CreateSchedule does; CronError naming the expression and the field."""
    match = re.fullmatch(r"cron\((?P<body>[^()]*)\)", expression)
    if not match:
        raise CronError(f"schedule expression {expression!r} is not cron(fields)")
    fields = match["body"].split()
    if len(fields) != 6:
        raise CronError(f"cron expression {expression!r} has {len(fields)} fields; AWS cron has 6: "
                        "minutes hours day-of-month month day-of-week year")
    dom, month, dow, year = fields[2:]
    if (dom == "?") == (dow == "?"):
        raise CronError(f"cron expression {expression!r}: exactly one of day-of-month ({dom}) and day-of-week "
                        f"({dow}) must be '?' (AWS does not take both)")

    def bad(index: int, why: str) -> CronError:
        return CronError(f"cron expression {expression!r}: {_NAMES[index]} field {fields[index]!r}: {why}")

    unix = [
        _plain(fields[0], 0, bad), _plain(fields[1], 1, bad),
        "*" if dom == "?" else _day_of_month(dom, bad),
        _plain(month, 3, bad),
        "*" if dow == "?" else _day_of_week(dow, bad),
    ]
    years = None if year == "*" else frozenset(_expand(year, 5, bad))
    text = " ".join(unix)
    try:
        croniter(text)
    except CroniterBadCronError as exc:  # what the translation let through and croniter cannot run
        raise CronError(f"cron expression {expression!r}: {exc}") from None
    return CronSchedule(expression, text, years)


def _number(token: str, index: int, bad) -> int:
    names = MONTHS if index == 3 else DAYS if index == 4 else ()
    if token.upper() in names:
        return names.index(token.upper()) + 1
    if not token.isdigit():
        raise bad(index, f"{token!r} is not a number" + (f" or one of {'/'.join(names)}" if names else ""))
    value = int(token)
    low, high = _BOUNDS[index]
    if not low <= value <= high:
        raise bad(index, f"{value} is outside {low}-{high}")
    return value


def _items(field: str, index: int, bad) -> list[tuple[int, int, int]]:
    """Each comma item as (first, last, step), checked against the field's bounds."""
    low, high = _BOUNDS[index]
    out = []
    for item in field.split(","):
        match = _ITEM.match(item)
        if not match:
            raise bad(index, f"{item!r} is not a value, a range a-b, * or a step x/n")
        step = int(match["step"]) if match["step"] else 1
        if match["step"] and not _STEP_ALLOWED[index]:
            raise bad(index, "'/' is not allowed in this field")
        if match["step"] and step < 1:
            raise bad(index, "a step must be at least 1")
        if match["start"] == "*":
            if match["end"]:
                raise bad(index, f"{item!r}: '*' cannot start a range")
            first, last = low, high
        else:
            first = _number(match["start"], index, bad)
            last = _number(match["end"], index, bad) if match["end"] else (high if match["step"] else first)
            if last < first:
                raise bad(index, f"{item!r}: the range runs backwards")
        out.append((first, last, step))
    return out


def _expand(field: str, index: int, bad) -> list[int]:
    return sorted({v for first, last, step in _items(field, index, bad) for v in range(first, last + 1, step)})


def _unix_items(items: list[tuple[int, int, int]], shift: int = 0) -> str:
    parts = []
    for first, last, step in items:
        if first == last:
            parts.append(str(first - shift))
        else:
            parts.append(f"{first - shift}-{last - shift}" + (f"/{step}" if step != 1 else ""))
    return ",".join(parts)


def _plain(field: str, index: int, bad) -> str:
    if field == "?":
        raise bad(index, "'?' is allowed only in day-of-month and day-of-week")
    return "*" if field == "*" else _unix_items(_items(field, index, bad))


def _day_of_month(field: str, bad) -> str:
    upper = field.upper()
    if upper == "L":
        return "L"
    if upper.endswith("W"):
        day = upper[:-1]
        if not day.isdigit():
            raise bad(2, "'W' takes one day of the month before it, e.g. 3W")
        return f"{_number(day, 2, bad)}W"
    if "L" in upper or "W" in upper or "#" in upper:
        raise bad(2, "'L' stands alone and 'W' follows one day (3W); '#' is for day-of-week")
    return "*" if field == "*" else _unix_items(_items(field, 2, bad))


def _day_of_week(field: str, bad) -> str:
    upper = field.upper()
    if "#" in upper:
        if "," in upper:
            raise bad(4, "with '#', day-of-week holds one expression only")
        day, _, nth = upper.partition("#")
        if not nth.isdigit() or not 1 <= int(nth) <= 5:
            raise bad(4, "'#' takes the week of the month, 1-5 (3#2: the second Tuesday)")
        return f"{_number(day, 4, bad) - 1}#{nth}"
    if upper == "L":
        return "6"  # the last day of the week: Saturday
    if upper.endswith("L"):
        return f"L{_number(upper[:-1], 4, bad) - 1}"  # 6L: the month's last Friday
    return "*" if field == "*" else _unix_items(_items(field, 4, bad), shift=1)
