"""The harness's one polling helper: returns what it waited for, or says what never happened."""

from __future__ import annotations

import itertools
import time

import pytest
from modelgate_harness.polling import wait_until


def test_it_returns_the_first_truthy_value():
    # Given a condition that holds on its third look
    looks = iter([None, 0, {"status": "Baking"}])
    # When waited for / Then its value is returned
    assert wait_until(lambda: next(looks), 1, "the bake", interval=0.001) == {"status": "Baking"}


def test_a_condition_that_already_holds_needs_no_time():
    assert wait_until(lambda: "yes", 0, "nothing") == "yes"


def test_a_timeout_names_what_was_awaited_and_what_was_seen_last():
    # Given a condition that never holds, and where things stand
    # When waited for briefly / Then the error says what, how long, and the last state seen
    with pytest.raises(TimeoutError, match=r"^timed out after 0.05 s waiting for the canary; last seen: Canary$"):
        wait_until(lambda: False, 0.05, "the canary", interval=0.01, progress=lambda: "Canary")


def test_a_broken_progress_report_does_not_hide_the_timeout():
    def broken():
        raise KeyError("status")

    with pytest.raises(TimeoutError, match=r"waiting for x; last seen: unknown \(KeyError: 'status'\)"):
        wait_until(lambda: None, 0.01, "x", interval=0.005, progress=broken)


def test_an_error_in_the_condition_is_not_waited_out():
    # Given a check that fails / When waited for / Then its error comes out at once, not a timeout
    with pytest.raises(ZeroDivisionError):
        wait_until(lambda: 1 / 0, 60, "a broken check")


def test_an_expensive_check_is_made_less_often():
    # Given a check that burns 5 ms of CPU per look and holds on its fourth
    from modelgate_harness.polling import POLL_IDLE_FACTOR

    looks: list[tuple[float, float, float]] = []  # (started, ended, CPU it took), real seconds

    def expensive():
        started, cpu = time.monotonic(), time.thread_time()
        while time.thread_time() - cpu < 0.005:
            pass
        looks.append((started, time.monotonic(), time.thread_time() - cpu))
        return len(looks) == 4

    # When waited for with a 1 ms interval
    assert wait_until(expensive, 60, "the expensive check", interval=0.001)
    # Then each look was followed by at least POLL_IDLE_FACTOR times its CPU time before the next
    gaps = [(nxt[0] - ended, POLL_IDLE_FACTOR * cpu) for (_, ended, cpu), nxt in itertools.pairwise(looks)]
    assert len(gaps) == 3
    assert all(gap >= idle for gap, idle in gaps), gaps
