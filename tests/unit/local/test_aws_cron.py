"""AWS's cron (EventBridge Scheduler) where it differs from Unix cron, its refusals, and its time zones."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from modelgate_emulator import aws_cron


def at(*args: int, tz: str = "UTC") -> float:
    return datetime(*args, tzinfo=ZoneInfo(tz)).timestamp()


def occurrences(expression: str, start: float, count: int, tz: str = "UTC") -> list[datetime]:
    schedule, out, moment = aws_cron.parse(expression), [], start
    for _ in range(count):
        nxt = schedule.next_after(moment, tz)
        if nxt is None:
            break
        out.append(datetime.fromtimestamp(nxt, ZoneInfo(tz)))
        moment = nxt
    return out


def test_day_of_week_counts_from_sunday_as_1_not_unix_monday():
    # AWS: 2 = MON; Unix cron (croniter read as is): 2 = TUE
    [aws] = occurrences("cron(0 8 ? * 2 *)", at(2030, 1, 1), 1)
    unix = croniter("0 8 * * 2", datetime(2030, 1, 1)).get_next(datetime)
    assert aws.strftime("%a %H:%M") == "Mon 08:00" and unix.strftime("%a") == "Tue"
    assert {d.strftime("%a") for d in occurrences("cron(0 8 ? * 1,7 *)", at(2030, 1, 1), 6)} == {"Sun", "Sat"}
    assert {d.strftime("%a") for d in occurrences("cron(0 8 ? * MON-FRI *)", at(2030, 1, 1), 10)} == {
        "Mon", "Tue", "Wed", "Thu", "Fri"}


def test_the_year_field_bounds_the_runs_even_past_2099():
    assert [d.isoformat() for d in occurrences("cron(0 0 1 1 ? 2031,2033)", at(2030, 6, 1), 5)] == [
        "2031-01-01T00:00:00+00:00", "2033-01-01T00:00:00+00:00"]
    [far] = occurrences("cron(30 6 1 JAN ? 2150)", at(2030, 1, 1), 3)  # croniter's own year field stops at 2099
    assert far.isoformat() == "2150-01-01T06:30:00+00:00"
    assert occurrences("cron(0 0 * * ? 2020-2025)", at(2030, 1, 1), 1) == []


@pytest.mark.parametrize(("expression", "start", "expected"), [
    ("cron(0 0 L 2 ? *)", (2028, 1, 1), ["2028-02-29", "2029-02-28"]),  # L: the month's last day (leap year)
    ("cron(0 9 15W * ? *)", (2024, 6, 1), ["2024-06-14", "2024-07-15"]),  # Sat 15 June -> Fri 14
    ("cron(0 9 1W * ? *)", (2024, 5, 31), ["2024-06-03", "2024-07-01"]),  # Sat 1 June -> Mon 3, not May
    ("cron(0 0 ? * 3#2 *)", (2024, 6, 1), ["2024-06-11", "2024-07-09"]),  # the second Tuesday
    ("cron(0 0 ? * 6L *)", (2024, 6, 1), ["2024-06-28", "2024-07-26"]),  # the month's last Friday
    ("cron(0 0 ? * L *)", (2024, 6, 1), ["2024-06-01", "2024-06-08"]),  # L alone: the week's last day, Saturday
])
def test_l_w_and_hash(expression, start, expected):
    assert [d.date().isoformat() for d in occurrences(expression, at(*start) - 1, len(expected))] == expected


def test_a_start_value_with_a_step_runs_from_that_value():
    assert [d.minute for d in occurrences("cron(1/10 * * * ? *)", at(2030, 1, 1), 7)] == [1, 11, 21, 31, 41, 51, 1]
    assert [d.hour for d in occurrences("cron(0 */6 * * ? *)", at(2030, 1, 1), 4)] == [6, 12, 18, 0]


@pytest.mark.parametrize(("expression", "message"), [
    ("cron(0 8 * * *)", "has 5 fields; AWS cron has 6"),
    ("cron(0 0 8 * * ? *)", "has 7 fields"),
    ("cron(0 8 * * * *)", "exactly one of day-of-month"),  # Unix cron takes both; AWS refuses
    ("cron(0 8 ? * ? *)", "exactly one of day-of-month"),
    ("cron(60 8 * * ? *)", "minutes field '60': 60 is outside 0-59"),
    ("cron(0 24 * * ? *)", "hours field '24': 24 is outside 0-23"),
    ("cron(0 8 ? * 0 *)", "day-of-week field '0': 0 is outside 1-7"),
    ("cron(0 8 ? * 8 *)", "outside 1-7"),
    ("cron(0 8 * * ? 1969)", "year field '1969': 1969 is outside 1970-2199"),
    ("cron(0 8 * * ? 2200)", "outside 1970-2199"),
    ("cron(0 8 ? * */2 *)", "'/' is not allowed"),
    ("cron(0 8 ? * 3#1,6#3 *)", "one expression only"),
    ("cron(0 8 ? * 2#6 *)", "week of the month, 1-5"),
    ("cron(0 8 ? * 3W *)", "is not a value"),
    ("cron(? 8 * * ? *)", "'?' is allowed only"),
    ("cron(L 8 * * ? *)", "is not a value"),
    ("cron(0 8 20-10 * ? *)", "runs backwards"),
    ("cron(0 8 * JUNE ? *)", "is not a value"),
    ("cron(0 8 * XYZ ? *)", "'XYZ' is not a number or one of JAN/"),
    ("cron(0 8 XW * ? *)", "'W' takes one day"),
    ("cron0 8 * * ? *", "is not cron(fields)"),
])
def test_what_create_schedule_refuses_is_refused_naming_the_problem(expression, message):
    with pytest.raises(aws_cron.CronError, match=re.escape(message)):
        aws_cron.parse(expression)


def test_times_are_wall_clock_times_in_the_schedule_time_zone():
    winter, summer = occurrences("cron(0 9 * * ? *)", at(2030, 1, 10), 1, "Europe/Paris") + occurrences(
        "cron(0 9 * * ? *)", at(2030, 7, 10), 1, "Europe/Paris")
    assert winter.astimezone(UTC).hour == 8 and summer.astimezone(UTC).hour == 7  # CET / CEST
    with pytest.raises(aws_cron.CronError, match="'Mars/Olympus' is not a time zone"):
        aws_cron.zone_info("Mars/Olympus")


def test_daylight_saving_skips_a_missing_time_and_runs_a_repeated_time_once():
    ny = "America/New_York"
    # 10 March 2030: 02:00 -> 03:00, so 02:30 does not exist that day and is not run
    days = [d.date().day for d in occurrences("cron(30 2 * * ? *)", at(2030, 3, 8, tz=ny), 3, ny)]
    assert days == [8, 9, 11]
    # 3 November 2030: 01:00-02:00 happens twice; 01:30 runs once, at its first occurrence (EDT)
    [nov3] = [d for d in occurrences("cron(30 1 * * ? *)", at(2030, 11, 2, tz=ny), 3, ny) if d.day == 3]
    assert nov3.utcoffset().total_seconds() == -4 * 3600
    # a 25-hour day has 48 half-hour wall times: 48 runs, not 50
    start, end = at(2030, 11, 3, tz=ny) - 1, at(2030, 11, 4, tz=ny) - 1
    runs = [d for d in occurrences("cron(0/30 * * * ? *)", start, 60, ny) if d.timestamp() <= end]
    assert len(runs) == 48 and end - start == 25 * 3600
