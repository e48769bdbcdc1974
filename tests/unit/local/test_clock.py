"""The runtime's clock: nominal time that real work cannot eat, and waits on it."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import pytest
from modelgate_emulator.clock import JumpingClock, LoadSafeClock, ManualClock, ScaledClock, observe


def test_a_scaled_clock_runs_faster_than_real_time_from_the_real_now() -> None:
    before = time.time()
    clock = ScaledClock(0.01, origin=before)
    start = clock.now()
    time.sleep(0.05)
    assert clock.now() - start >= 5.0  # 0.05 real s = 5 nominal s
    assert clock.real_seconds(100) == pytest.approx(1.0)


def test_a_load_safe_clock_stands_still_while_work_is_held() -> None:
    # Given a clock at 1 real ms per nominal second
    clock = LoadSafeClock(0.001)
    # When real work runs for 50 ms under a hold
    with clock.hold():
        held_at = clock.now()
        time.sleep(0.05)
        # Then no nominal time passed, even from another thread's view
        seen: list[float] = []
        thread = threading.Thread(target=lambda: seen.append(clock.now()))
        thread.start()
        thread.join()
        assert clock.now() == held_at == seen[0]
    # And once the work is done time flows again
    time.sleep(0.01)
    assert clock.now() > held_at + 5


def test_a_wait_on_the_clock_does_not_end_while_the_clock_stands_still() -> None:
    # Given a wait of 20 nominal seconds (20 real ms at best) and work held for 100 ms
    clock = LoadSafeClock(0.001)
    ended: list[float] = []

    def waiter() -> None:
        clock.wait(threading.Event(), 20)
        ended.append(time.monotonic())

    with clock.hold():
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.1)
        # Then while the work runs the wait has not ended
        assert not ended
    thread.join(5)
    assert ended and not thread.is_alive()


def test_a_wait_ends_early_when_its_event_is_set() -> None:
    clock = LoadSafeClock(0.001)
    event = threading.Event()
    threading.Timer(0.01, event.set).start()
    assert clock.wait(event, 10_000) is True  # 10 real s at best; the event came first


def test_a_barrier_stops_nominal_time_until_cleared() -> None:
    # Given a barrier 5 nominal seconds ahead
    clock = LoadSafeClock(0.001)
    barrier_at = clock.now() + 5
    barrier = clock.barrier(barrier_at)
    # When much more real time passes than 5 nominal seconds
    time.sleep(0.05)
    # Then the clock waits at the barrier
    assert clock.now() == barrier_at
    # And once cleared it flows on from there
    clock.clear(barrier)
    time.sleep(0.01)
    assert clock.now() > barrier_at


def test_a_barrier_in_the_past_does_not_turn_the_clock_back() -> None:
    clock = LoadSafeClock(0.001)
    now = clock.now()
    clock.barrier(now - 100)
    assert clock.now() >= now


def test_a_manual_clock_moves_only_forward_when_told() -> None:
    clock = ManualClock(1000.0)
    clock.advance(5)
    assert clock.now() == 1005.0
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(10)


def test_clocks_refuse_a_factor_that_would_skip_waits() -> None:
    with pytest.raises(ValueError):
        LoadSafeClock(0)
    with pytest.raises(ValueError):
        ScaledClock(-1)


# ---------------------------------------------------------------- the jumping clock
# time_factor=inf: nominal time never flows, it only jumps, and a jump is decided at the
# moment a participant changes what it does (synchronously, under the clock's lock). So
# "no jump" is checked by reading the clock right after the change, never by waiting.
HANG_GUARD = 30.0  # real seconds: only to turn a hang into a failure, never a speed limit
T0 = 1_000_000.0


def until(clock: JumpingClock, condition: Callable[[dict[str, str]], bool], what: str) -> None:
    """Wait (real time, hang guard only) until ``condition(clock.participants())`` holds."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition(seen := clock.participants()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached: {what}; participants: {seen}")
        time.sleep(0.001)


def sleeper(clock: JumpingClock, name: str, seconds: float, woke: list[tuple[str, float]]) -> threading.Thread:
    def run() -> None:
        clock.sleep(seconds)
        woke.append((name, clock.now()))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def join(*threads: threading.Thread) -> None:
    for thread in threads:
        thread.join(HANG_GUARD)
        assert not thread.is_alive(), f"{thread.name} still waits"


def test_the_clock_jumps_to_each_deadline_when_every_participant_waits() -> None:
    # Given a clock that only moves by jumps, and three participants sleeping 30, 10 and 20 s
    clock = JumpingClock(math.inf, origin=T0)
    woke: list[tuple[str, float]] = []
    with clock.running():
        threads = [sleeper(clock, name, seconds, woke) for name, seconds in (("c", 30), ("a", 10), ("b", 20))]
        until(clock, lambda p: [p.get(n) for n in "abc"] == ["timer"] * 3, "all three wait")
        # While the test thread runs (an active participant) nothing jumps
        assert clock.now() == T0 and clock.jumps == 0
        with clock.blocked_on(lambda: False):  # When the test only waits for them
            join(*threads)
    # Then each woke exactly at its deadline, in deadline order
    assert woke == [("a", T0 + 10), ("b", T0 + 20), ("c", T0 + 30)]
    assert clock.jumps == 3


def test_no_jump_while_a_hold_is_open() -> None:
    clock = JumpingClock(math.inf, origin=T0)
    woke: list[tuple[str, float]] = []
    with clock.running(), clock.blocked_on(lambda: False):
        with clock.hold():  # real work runs
            thread = sleeper(clock, "waiter", 10, woke)
            until(clock, lambda p: p.get("waiter") == "timer", "the waiter waits")
            # Then everyone waits but the work holds the clock
            assert clock.now() == T0 and clock.jumps == 0
        # When the work ends the clock jumps at once
        join(thread)
    assert woke == [("waiter", T0 + 10)]


def test_no_jump_while_a_participant_is_active() -> None:
    clock = JumpingClock(math.inf, origin=T0)
    woke: list[tuple[str, float]] = []
    release = threading.Event()
    with clock.running(), clock.blocked_on(lambda: False):
        # A participant blocked on something the clock does not know counts as active
        busy = threading.Thread(target=release.wait, name="busy", daemon=True)
        busy.start()
        waiter = sleeper(clock, "waiter", 10, woke)
        until(clock, lambda p: p.get("waiter") == "timer" and p.get("busy") == "active", "both started")
        assert clock.now() == T0 and clock.jumps == 0
        # When it ends (it leaves the participants) the clock jumps
        release.set()
        join(busy, waiter)
    assert woke == [("waiter", T0 + 10)]


def test_no_jump_while_an_external_wait_is_pending() -> None:
    clock = JumpingClock(math.inf, origin=T0)
    woke: list[tuple[str, float]] = []
    approval = threading.Event()
    answered: list[bool] = []
    with clock.running(), clock.blocked_on(lambda: False):
        # An approval (24 h timeout) only someone outside answers, and a 10 s timer
        approver = threading.Thread(
            target=lambda: answered.append(clock.wait(approval, 86_400, external=True)), name="approval", daemon=True
        )
        approver.start()
        waiter = sleeper(clock, "waiter", 10, woke)
        until(clock, lambda p: p.get("waiter") == "timer" and p.get("approval") == "external", "both wait")
        # Then the approval timeout is not jumped to, nor anything before it
        assert clock.now() == T0 and clock.jumps == 0
        approval.set()
        join(approver, waiter)
    assert answered == [True]
    assert woke == [("waiter", T0 + 10)]


def test_a_jump_never_passes_an_uncleared_barrier() -> None:
    clock = JumpingClock(math.inf, origin=T0)
    woke: list[tuple[str, float]] = []
    with clock.running(), clock.blocked_on(lambda: False):
        barrier = clock.barrier(T0 + 5)
        waiter = sleeper(clock, "waiter", 10, woke)
        until(clock, lambda p: p.get("waiter") == "timer", "the waiter waits")
        # Then the clock jumped to the barrier and stays there
        assert clock.now() == T0 + 5 and not woke
        # When the barrier is cleared it jumps on to the deadline
        clock.clear(barrier)
        join(waiter)
    assert woke == [("waiter", T0 + 10)]


def test_an_observer_sees_every_change_before_the_clock_jumps() -> None:
    clock = JumpingClock(math.inf, origin=T0)
    woke: list[tuple[str, float]] = []
    with clock.running():
        observation = observe()
        with observation.poll():  # the test polls: it may act on what it sees
            waiter = sleeper(clock, "waiter", 10, woke)  # meanwhile something changes
            until(clock, lambda p: p.get("waiter") == "timer", "the waiter waits")
        # When the poll found nothing, the observer has not seen the change: no jump
        observation.found_nothing(0.0)
        assert clock.now() == T0 and clock.jumps == 0
        # When it polled again after the change, the clock jumps
        with observation.poll():
            pass
        observation.found_nothing(HANG_GUARD)
        join(waiter)
    assert woke == [("waiter", T0 + 10)]


def test_without_participants_a_jumping_clock_flows_like_a_load_safe_clock() -> None:
    # Not running: no participant is known, so it never jumps; time flows, holds stop it
    clock = JumpingClock(0.001)
    with clock.hold():
        held = clock.now()
        time.sleep(0.02)
        assert clock.now() == held
    time.sleep(0.01)
    assert clock.now() > held + 5
    assert clock.jumps == 0


def test_a_jumping_clock_refuses_a_bad_poll_interval() -> None:
    with pytest.raises(ValueError, match="poll_seconds"):
        JumpingClock(0.01, poll_seconds=0)


def test_a_thread_started_under_a_running_jumping_clock_keeps_its_creators_context_in_either_order() -> None:
    # Given a context variable threads inherit (as the IAM principal is) and the process
    # environment's overlay, installed before or after a jumping clock starts running
    import contextvars

    from modelgate_emulator import environ

    principal: contextvars.ContextVar[str | None] = contextvars.ContextVar("test_principal", default=None)
    environ.inherit_in_threads(principal)
    original_start = threading.Thread.start
    for environ_first in (True, False):
        clock = JumpingClock(math.inf, origin=T0)
        if environ_first:
            environ.install()
        with clock.running():
            if not environ_first:
                environ.install()
            try:
                # When a participant holding the principal starts a thread
                seen: list[tuple[str | None, dict[str, str]]] = []
                token = principal.set("state-machine-role")
                try:
                    thread = threading.Thread(target=lambda: seen.append((principal.get(), clock.participants())),
                                              name="child")
                    thread.start()
                finally:
                    principal.reset(token)
                join(thread)
            finally:
                if not environ_first:
                    environ.uninstall()
        if environ_first:
            environ.uninstall()
        # Then the thread ran as its creator's principal and as a participant of the clock
        assert seen and seen[0][0] == "state-machine-role", (environ_first, seen)
        assert seen[0][1].get("child") == "active", (environ_first, seen)
        # And with both undone, in either order, Thread.start is Python's own again
        assert threading.Thread.start is original_start
