"""The adaptive limiter: open start, multiplicative decrease, additive increase, bounds, threads.

Every test runs on a fake clock (time moves only when a test or a sleep moves it).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from modelgate.errors import Throttled
from modelgate.evaluation.adaptive import AdaptiveRateLimiter, Ticket
from modelgate.evaluation.comparison import CANDIDATE
from modelgate.evaluation.dataset import DatasetCase
from modelgate.evaluation.runner import RetryPolicy, evaluate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def limiter(clock: Clock, **kw: Any) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(clock=clock.time, sleep=clock.sleep, **kw)


def succeed(lim: AdaptiveRateLimiter, clock: Clock, n: int, *, every: float, latency: float | None = None) -> None:
    """``n`` calls, one each ``every`` seconds, each answered at once."""
    for _ in range(n):
        clock.now += every
        lim.observe(lim.reserve(), throttled=False, latency_s=latency)


def test_open_until_the_first_signal() -> None:
    # Given a fresh limiter
    clock = Clock()
    lim = limiter(clock)
    # When 100 calls ask for a slot at the same instant
    tickets = [lim.reserve() for _ in range(100)]
    # Then none waits: an evaluation that is never throttled is never paced
    assert all(t.granted_at == 0.0 and not t.waited for t in tickets)
    assert math.isinf(lim.rate)


def test_a_throttle_cuts_to_the_decrease_times_the_rate_it_was_sent_at() -> None:
    # Given 64 successes at 16 calls/s (4 s: two windows), sent open
    clock = Clock()
    lim = limiter(clock, decrease=0.8, window_s=2.0)
    succeed(lim, clock, 64, every=1 / 16)
    # When a call is throttled
    lim.observe(lim.reserve(), throttled=True)
    # Then the rate is 0.8 x the rate calls went out at: 33 in the 2 s window, this one included
    assert lim.rate == pytest.approx(0.8 * 33 / 2)
    assert lim.decreases == 1


def test_far_past_the_quota_a_throttle_cuts_to_the_decrease_times_the_goodput() -> None:
    # Given 16 calls/s getting through while 100 more went out in the same 2 s (over-driving)
    clock = Clock()
    lim = limiter(clock, decrease=0.8, window_s=2.0)
    succeed(lim, clock, 64, every=1 / 16)
    in_flight = [lim.reserve() for _ in range(100)]
    # When one of them is throttled
    lim.observe(in_flight[0], throttled=True)
    # Then the rate is 0.8 x the goodput (32 successes in the window), not of what was sent
    assert lim.rate == pytest.approx(0.8 * 16.0)


def test_one_decrease_per_round_trip() -> None:
    # Given calls in flight when the first throttle answers
    clock = Clock()
    lim = limiter(clock, window_s=2.0)
    succeed(lim, clock, 64, every=1 / 16)
    in_flight = [lim.reserve() for _ in range(5)]
    lim.observe(in_flight[0], throttled=True)
    cut = lim.rate
    # When the others, sent at the old rate, are throttled too
    for ticket in in_flight[1:]:
        lim.observe(ticket, throttled=True)
    # Then they cut nothing more; a call sent at the new rate that is throttled does
    assert lim.rate == cut and lim.decreases == 1
    lim.observe(lim.acquire(), throttled=True)
    assert lim.rate < cut and lim.decreases == 2


def test_paced_successes_add_the_same_step_back_until_the_rate_is_where_it_was_cut() -> None:
    # Given a cut from 16.5/s to 14.85/s, 100 successes to recover
    clock = Clock()
    lim = limiter(clock, decrease=0.9, recovery_calls=100, window_s=2.0)
    succeed(lim, clock, 64, every=1 / 16)
    lim.observe(lim.reserve(), throttled=True)
    assert lim.rate == pytest.approx(14.85)
    # When 100 calls wait for their slots and succeed
    rates = []
    for _ in range(100):
        lim.observe(lim.acquire(), throttled=False)
        rates.append(lim.rate)
    # Then the rate climbed by equal steps of (16.5 - 14.85) / 100 back to 16.5/s
    assert rates[:2] == pytest.approx([14.8665, 14.883])
    assert rates[-1] == pytest.approx(16.5)
    # And past it the probe's step doubles every recovery_calls successes
    for _ in range(100):
        lim.observe(lim.acquire(), throttled=False)
    assert lim.rate == pytest.approx(16.5 + 100 * 0.033)


def test_a_call_that_did_not_wait_proves_nothing_about_a_higher_rate() -> None:
    # Given a limiter cut to 14.85/s
    clock = Clock()
    lim = limiter(clock, window_s=2.0)
    succeed(lim, clock, 64, every=1 / 16)
    lim.observe(lim.reserve(), throttled=True)
    cut = lim.rate
    # When calls arrive slower than that rate (none waits) and succeed
    clock.now += 1.0
    for _ in range(50):
        clock.now += 1.0
        ticket = lim.reserve()
        assert not ticket.waited
        lim.observe(ticket, throttled=False)
    # Then the rate did not grow
    assert lim.rate == cut


def test_the_rate_stays_within_floor_and_ceiling() -> None:
    # Given a floor of 2/s and a ceiling of 30/s
    clock = Clock()
    lim = limiter(clock, floor=2.0, ceiling=30.0, recovery_calls=5, window_s=2.0)
    # When every call is throttled, each in a new round trip
    for _ in range(40):
        lim.observe(lim.acquire(), throttled=True)
    # Then the rate never goes under the floor
    assert lim.rate == 2.0
    # When every call then succeeds, for long
    for _ in range(2_000):
        lim.observe(lim.acquire(), throttled=False)
    # Then it never goes over the ceiling
    assert lim.rate == 30.0


def test_a_throttle_before_any_success_halves_what_was_sent_then_doubles_per_second() -> None:
    # Given 10 calls sent over 1 s and no answer yet
    clock = Clock()
    lim = limiter(clock, window_s=2.0)
    for _ in range(10):
        lim.reserve()
        clock.now += 0.1
    # When a call (sent open) is throttled
    lim.observe(lim.reserve(), throttled=True)
    # Then the rate is half of what was sent (11 calls in 1 s), nothing measured to go by
    assert lim.rate == pytest.approx(11.0 / 1.0 / 2 * 0.9)
    before = lim.rate
    # And each paced success multiplies it by 2 ** (1 / rate): x2 per second of successes
    start = clock.now
    while clock.now - start < 1.0:
        lim.observe(lim.acquire(), throttled=False)
    assert lim.rate == pytest.approx(2 * before, rel=0.15)


def test_latency_rising_to_the_factor_over_its_baseline_cuts_the_rate() -> None:
    # Given a baseline of 100 ms over 80 calls at 16/s
    clock = Clock()
    lim = limiter(clock, latency_samples=80, latency_factor=2.0, window_s=2.0)
    succeed(lim, clock, 80, every=1 / 16, latency=0.1)
    # When latency wobbles up to 1.8x it, nothing is cut
    succeed(lim, clock, 80, every=1 / 16, latency=0.18)
    assert math.isinf(lim.rate)
    # When latency rises to 2.5x, the rate is cut (no throttle needed) once the median of this
    # epoch's last 40 answers is past 2x: at the 20th slow answer (the middle two: 0.18 and 0.25)
    slow = 0
    while lim.decreases == 0 and slow < 40:
        succeed(lim, clock, 1, every=1 / 16, latency=0.25)
        slow += 1
    assert slow == 20
    assert lim.rate == pytest.approx(0.9 * 16.0)


def test_one_slow_answer_is_not_congestion() -> None:
    clock = Clock()
    lim = limiter(clock, latency_samples=80, window_s=2.0)
    succeed(lim, clock, 100, every=1 / 16, latency=0.1)
    for i in range(100):
        clock.now += 1 / 16
        lim.observe(lim.reserve(), throttled=False, latency_s=5.0 if i % 10 == 0 else 0.1)
    assert lim.decreases == 0


def test_a_call_waiting_when_the_rate_is_cut_requeues_at_the_new_rate() -> None:
    # Given a limiter pacing at 14.85/s and 10 calls queued for slots after the one just sent
    clock = Clock()
    lim = limiter(clock, window_s=2.0)
    succeed(lim, clock, 64, every=1 / 16)
    lim.observe(lim.reserve(), throttled=True)
    queued = [lim.reserve() for _ in range(10)]
    assert queued[-1].granted_at == pytest.approx(clock.now + 10 / 14.85)
    # When a call sent at that rate is throttled (the rate drops again)
    lim.observe(queued[0], throttled=True)
    # Then the next waiting call gets a new slot at the new rate, and one not waiting keeps its own
    again = lim.recheck(queued[1])
    assert again is not queued[1] and again.rate == lim.rate
    fresh = Ticket(clock.now, clock.now, lim.rate, 0)
    assert lim.recheck(fresh) is fresh


def test_threads_share_the_slots_and_the_steps() -> None:
    # Given a limiter cut to 14.85/s (a fixed fake time: threads don't move it)
    clock = Clock()
    lim = AdaptiveRateLimiter(clock=clock.time, sleep=lambda s: None, window_s=2.0, recovery_calls=1_000_000)
    succeed(lim, clock, 64, every=1 / 16)
    lim.observe(lim.reserve(), throttled=True)
    start_rate = lim.rate
    step = (1 - 0.9) * 16.5 / 1_000_000
    tickets: list[Ticket] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            ticket = lim.reserve()
            with lock:
                tickets.append(ticket)

    # When 8 threads reserve 200 slots each at the same instant
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every slot is distinct and exactly 1/rate apart: none was handed out twice
    grants = sorted(t.granted_at for t in tickets)
    assert len(grants) == 1600
    gaps = [b - a for a, b in itertools.pairwise(grants)]
    assert gaps == pytest.approx([1.0 / start_rate] * 1599)

    # When 8 threads report 200 paced successes each
    def report(batch: list[Ticket]) -> None:
        for ticket in batch:
            lim.observe(ticket, throttled=False)

    threads = [threading.Thread(target=report, args=(tickets[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every one of them added its step (no update lost)
    assert lim.rate == pytest.approx(start_rate + 1600 * step)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"floor": 0}, "floor"),
        ({"floor": 5, "ceiling": 2}, "floor"),
        ({"ceiling": math.inf}, "ceiling"),
        ({"decrease": 1.0}, "decrease"),
        ({"recovery_calls": 0}, "recovery_calls"),
        ({"window_s": 0}, "window_s"),
        ({"latency_factor": 1.0}, "latency_factor"),
        ({"latency_samples": 0}, "latency_samples"),
        ({"latency_min_rise_s": -1}, "latency_min_rise_s"),
        ({"initial_window": 0}, "initial_window"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveRateLimiter(**kwargs)


def test_evaluate_finds_an_undisclosed_quota_without_being_told() -> None:
    # Given a provider that admits 5 calls/s (token bucket, burst 1) and throttles the rest
    clock = Clock()
    state = {"tokens": 1.0, "last": 0.0}
    attempts = {"ok": 0, "throttled": 0}
    done_at: list[float] = []

    def invoke(inputs: dict[str, str]) -> Mapping[str, Any]:
        now = clock.time()
        state["tokens"] = min(1.0, state["tokens"] + (now - state["last"]) * 5.0)
        state["last"] = now
        if state["tokens"] < 1.0:
            attempts["throttled"] += 1
            raise Throttled("Too many requests, please wait before trying again.")
        state["tokens"] -= 1.0
        attempts["ok"] += 1
        done_at.append(now)
        return {"output": "x"}

    cases = [DatasetCase(id=f"c{i}", inputs={"question": f"q{i}"}, expected="x") for i in range(600)]
    # When the evaluation runs with no rate limit (adaptive), one call at a time
    report = evaluate(
        cases, {CANDIDATE: invoke}, concurrency=1, rate_limit="adaptive",
        retry=RetryPolicy(max_attempts=20), clock=clock.time, sleep=clock.sleep, jitter_seed=3, resamples=200,
    )
    # Then every case was answered, few calls were throttled, and the pace came close to the quota
    assert not any(r.throttled for r in report.results)
    assert attempts["ok"] == 600
    share = attempts["throttled"] / (attempts["ok"] + attempts["throttled"])
    achieved = 600 / done_at[-1]
    assert share <= 0.05, share
    assert achieved >= 0.85 * 5.0, achieved
    assert achieved >= 0.85 * 5.0, achieved


def refill(lim: AdaptiveRateLimiter, flying: list[Ticket]) -> None:
    """Callers always waiting (more than the window): every free slot is taken at once."""
    while (ticket := lim.try_enter()) is not None:
        flying.append(ticket)


def test_calls_in_flight_start_bounded_and_the_window_doubles_per_round_trip_until_a_signal() -> None:
    # Given a fresh limiter with a window of 4 calls in flight
    clock = Clock()
    lim = limiter(clock, initial_window=4)
    # When 64 callers ask at once, only 4 get in: the open start can't fire 64 calls at a quota
    flying: list[Ticket] = []
    refill(lim, flying)
    assert len(flying) == 4 and lim.in_flight == 4
    # When those 4 are answered (one round trip) with callers waiting, each answer finds the window
    # full and grows it by one, and the freed slots are taken again
    first_round, flying = flying, []
    for ticket in first_round:
        clock.now += 0.01
        lim.observe(ticket, throttled=False)
        refill(lim, flying)
    assert lim.window == 8 and lim.in_flight == 8
    # And the next round trip doubles it again
    second_round, flying = flying, []
    for ticket in second_round:
        lim.observe(ticket, throttled=False)
        refill(lim, flying)
    assert lim.window == 16


def test_answers_that_leave_the_window_unused_do_not_grow_it() -> None:
    # Given 4 calls in flight and nobody else waiting
    clock = Clock()
    lim = limiter(clock, initial_window=4)
    flying = [lim.try_enter() for _ in range(4)]
    # When they are answered, the first finds the window full, the others don't: it grows by one only
    for ticket in flying:
        lim.observe(ticket, throttled=False)
    assert lim.window == 5 and lim.in_flight == 0


def test_a_throttle_cuts_the_window_to_the_decrease_times_the_calls_in_flight() -> None:
    # Given a window grown by slow start to 32 calls, all in flight (three round trips: 4 + 8 + 16 answers)
    clock = Clock()
    lim = limiter(clock, initial_window=4, decrease=0.5)
    flying: list[Ticket] = []
    refill(lim, flying)
    for _ in range(4 + 8 + 16):
        lim.observe(flying.pop(0), throttled=False)
        refill(lim, flying)
    assert lim.window == 32 and lim.in_flight == 32
    # When one is throttled
    clock.now += 0.3
    lim.observe(flying.pop(0), throttled=True)
    # Then the window is half of the 32 in flight: 16 of the other 31 must come back before a call goes out
    assert lim.window == 16 and lim.in_flight == 31
    for _ in range(15):
        lim.observe(flying.pop(0), throttled=False)  # sent before the cut: no second cut
    assert lim.in_flight == 16 and lim.try_enter() is None and lim.decreases == 1
    lim.observe(flying.pop(0), throttled=False)
    assert lim.try_enter() is not None


def test_after_a_signal_the_window_grows_by_one_per_windows_worth_of_answers() -> None:
    clock = Clock()
    lim = limiter(clock, initial_window=4, decrease=0.5)
    flying: list[Ticket] = []
    refill(lim, flying)
    lim.observe(flying.pop(0), throttled=True)  # window: max(4, 0.5 x 4) = 4
    assert lim.window == 4
    # When the 3 calls sent before the cut come back (they grow nothing), then answers with callers
    # always waiting: each adds 1 / window, about one per window's worth (TCP's congestion avoidance)
    sizes = []
    for _ in range(3 + 17):
        clock.now += 0.1
        lim.observe(flying.pop(0), throttled=False)
        refill(lim, flying)
        sizes.append(lim.window)
    # Then it grew 4 -> 7 over 17 answers (4 + 5 + 6 + 2: a little under one per window), not doubling
    assert sizes[:3] == [4, 4, 4] and sizes[-2:] == [6, 7]


def test_acquire_waits_for_a_window_slot_a_thread_frees() -> None:
    # Given a window of 1 held by a call in flight
    clock = Clock()
    lim = AdaptiveRateLimiter(clock=clock.time, sleep=lambda s: None, initial_window=1)
    held = lim.acquire()
    got: list[Ticket] = []
    waiter = threading.Thread(target=lambda: got.append(lim.acquire()))
    waiter.start()
    # Then the second caller waits until the first call is observed
    waiter.join(timeout=0.2)
    assert waiter.is_alive() and not got
    lim.observe(held, throttled=False)
    waiter.join()
    assert len(got) == 1 and got[0].admitted and lim.in_flight == 1


def test_a_call_that_fails_without_a_throttle_frees_its_window_slot() -> None:
    # Given an evaluation whose every call fails (not a throttle), one window slot per caller
    clock = Clock()

    def broken(inputs: dict[str, str]) -> Mapping[str, Any]:
        raise RuntimeError("model error")

    cases = [DatasetCase(id=f"c{i}", inputs={"question": f"q{i}"}, expected="x") for i in range(30)]
    # When it runs through the adaptive limiter with more cases than the initial window
    report = evaluate(cases, {CANDIDATE: broken}, concurrency=1, rate_limit="adaptive",
                      clock=clock.time, sleep=clock.sleep, resamples=50)
    # Then every case was called and recorded as an error (no slot leaked, nothing hung)
    assert len(report.results) == 30 and all(r.error == "RuntimeError: model error" for r in report.results)
