"""The runtime's clock: nominal time that real work cannot eat, and waits on it."""

from __future__ import annotations

import threading
import time

import pytest
from modelgate_emulator.clock import LoadSafeClock, ManualClock, ScaledClock


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
