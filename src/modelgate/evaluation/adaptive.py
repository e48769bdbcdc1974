"""An adaptive rate limiter: finds a provider's undisclosed quota from its throttles and latency.

The shape follows the AWS SDKs' ``adaptive`` retry mode ("Retry behavior", AWS SDKs and Tools
Reference Guide, https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html:
client-side rate limiting that "can delay initial request" and suits a client with a single
throttled resource; botocore's ``retries/adaptive.py`` leaves its bucket disabled until the first
throttle and then paces at a rate taken from what it measured). Here:

* **Open until told otherwise.** Calls are not paced until the first congestion signal, so an
  evaluation against a provider that never throttles (the local model) runs as fast as before.
* **Multiplicative decrease** on a signal: a throttled call, or latency rising to
  ``latency_factor`` x its baseline (a provider that queues before it throttles). The new rate is
  ``decrease`` x the rate the signalling call was sent at, or x the *goodput* (successful calls
  per second over the last ``window_s``) when that was sent at more than 3x the goodput: far past
  the quota, goodput is the quota, so one decrease lands just under it, even from the open start.
  Too few successes to measure (throttles answer before calls do) is a *blind* cut: half the
  measured sending rate, then the rate doubles per second of paced successes to the next signal.
* **One decrease per round trip.** A signal from a call sent before the last decrease says
  nothing about the new rate (it was in flight at the old one) and is ignored, as TCP ignores
  losses from one window (RFC 5681 fast recovery).
* **Additive increase** while pacing binds: each success of a call that had to wait for its slot
  adds ``(1 - decrease) x r_drop / recovery_calls`` (``r_drop`` = the rate at the last decrease),
  so the rate climbs back to where it was cut in ``recovery_calls`` successes; past that the step
  doubles every ``recovery_calls`` successes (a quota that rose, or a cut from a low estimate, is
  found in a few rounds, not hundreds). A call that did not wait (fewer calls than the rate
  allows) proves nothing about a higher rate and adds nothing.
* **Calls waiting re-queue on a cut** (``recheck``): slots handed out at the old rate would go on
  overshooting for as long as the queue is.
* **A window on calls in flight, too** (``acquire`` / ``try_enter``): rate alone can't stop a
  burst: from the open start, every caller's first call goes out at once, and with 64 callers
  and a quota of 5/s that is some 60 throttles before a single answer comes back. So calls in
  flight are bounded by a window that starts at ``initial_window`` and, until the first signal,
  grows by one per answered call that found it full (doubling per round trip: TCP's slow start,
  RFC 5681 section 3.1); a signal cuts it to ``decrease`` x the calls in flight then (at least
  ``initial_window``), after which it grows by one per window's worth of answers that found it
  full (congestion avoidance). ``reserve`` paces by rate only (no window), for callers that
  bound concurrency themselves.
* ``floor`` and ``ceiling`` bound the rate; every decision uses the injected ``clock``.

Thread-safe: one lock guards the state; ``acquire`` sleeps outside it, like ``TokenBucket``.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

_OVERDRIVE = 3.0  # sending this many times the goodput is over-driving the provider
_MIN_GOODPUT_SAMPLES = 10  # successes in the window before goodput is a measurement


class Ticket(NamedTuple):
    """One call's slot: when it was asked for and granted, at what rate, in which epoch."""

    requested_at: float
    granted_at: float
    rate: float  # math.inf while the limiter is open
    epoch: int
    admitted: bool = False  # holds a window slot (``acquire`` / ``try_enter``), freed by ``observe``

    @property
    def waited(self) -> bool:
        return self.granted_at > self.requested_at


class AdaptiveRateLimiter:
    """AIMD pacing of calls per second over every thread that shares it (see the module doc)."""

    def __init__(
        self,
        *,
        floor: float = 0.5,
        ceiling: float = 1_000.0,
        decrease: float = 0.9,
        recovery_calls: int = 200,
        window_s: float = 2.0,
        latency_factor: float = 2.0,
        latency_samples: int = 80,
        latency_min_rise_s: float = 0.05,
        initial_window: int = 4,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 < floor <= ceiling or not math.isfinite(ceiling):
            raise ValueError(f"need 0 < floor <= ceiling < inf calls per second, got floor={floor}, ceiling={ceiling}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be a factor in (0, 1), got {decrease}")
        if recovery_calls < 1:
            raise ValueError(f"recovery_calls must be >= 1, got {recovery_calls}")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0 seconds, got {window_s}")
        if not latency_factor > 1:
            raise ValueError(f"latency_factor must be > 1, got {latency_factor}")
        if latency_samples < 1:
            raise ValueError(f"latency_samples must be >= 1, got {latency_samples}")
        if latency_min_rise_s < 0:
            raise ValueError(f"latency_min_rise_s must be >= 0 seconds, got {latency_min_rise_s}")
        if initial_window < 1:
            raise ValueError(f"initial_window must be >= 1 call in flight, got {initial_window}")
        self.floor, self.ceiling = floor, ceiling
        self.decrease, self.recovery_calls = decrease, recovery_calls
        self.window_s = window_s
        self.latency_factor, self.latency_samples = latency_factor, latency_samples
        self.latency_min_rise_s = latency_min_rise_s
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
        self.initial_window = initial_window
        self._cwnd = float(initial_window)  # calls in flight allowed (acquire / try_enter)
        self._in_flight = 0
        self._rate = math.inf  # open: no pacing until the first signal
        self._next = -math.inf  # the earliest time the next slot may be granted
        self._epoch = 0  # bumped by every decrease
        self._step = 0.0  # additive increase per success, set at each decrease
        self._since_drop = 0  # successes that waited for their slot since the last decrease
        self._blind = False  # the last decrease had no goodput to go by
        self._successes: deque[float] = deque()  # completion times within window_s
        self._sends: deque[float] = deque()  # grant times within window_s
        self._started: float | None = None
        self._first_success: float | None = None
        self._window: deque[float] = deque(maxlen=latency_samples)  # the last latencies, any epoch
        self._recent: deque[float] = deque(maxlen=max(3, latency_samples // 2))  # this epoch's last latencies
        self._baseline: float | None = None
        self._seen = 0
        self.decreases = 0

    @property
    def rate(self) -> float:
        """The current pacing rate in calls per second (``math.inf`` while open)."""
        with self._lock:
            return self._rate

    @property
    def window(self) -> int:
        """Calls that may be in flight at once (through ``acquire`` / ``try_enter``)."""
        with self._lock:
            return int(self._cwnd)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def try_enter(self) -> Ticket | None:
        """A window slot and a rate slot without waiting for the window (``None``: it is full;
        try again once a call is observed). The ticket may still have to wait for its time."""
        with self._lock:
            if self._in_flight >= int(self._cwnd):
                return None
            self._in_flight += 1
        return self.reserve(admitted=True)

    def reserve(self, *, admitted: bool = False) -> Ticket:
        """Take the next slot without sleeping: the ticket says when it may start."""
        with self._lock:
            now = self._clock()
            if self._started is None:
                self._started = now
            granted = now if math.isinf(self._rate) else max(now, self._next)
            if not math.isinf(self._rate):
                self._next = granted + 1.0 / self._rate
            self._sends.append(granted)
            self._trim(self._sends, now)
            return Ticket(now, granted, self._rate, self._epoch, admitted)

    def recheck(self, ticket: Ticket) -> Ticket:
        """At its slot's time: ``ticket`` itself, or a new slot if the rate was cut while it waited.

        A decrease re-queues every call still waiting at the new rate: slots handed out at the old
        rate would otherwise go on overshooting for as long as the queue is (with many threads and
        a low quota, many seconds).
        """
        with self._lock:
            if not ticket.waited or ticket.epoch == self._epoch:
                return ticket
        return self.reserve(admitted=ticket.admitted)

    def acquire(self) -> Ticket:
        """Wait for a window slot, then for a rate slot (sleeping outside the lock); every
        ticket must be ``observe``d once, which frees its window slot."""
        with self._slot_freed:
            while self._in_flight >= int(self._cwnd):
                self._slot_freed.wait()
            self._in_flight += 1
        ticket = self.reserve(admitted=True)
        while True:
            if ticket.waited:
                self._sleep(max(0.0, ticket.granted_at - self._clock()))
            again = self.recheck(ticket)
            if again is ticket:
                return ticket
            ticket = again

    def observe(self, ticket: Ticket, *, throttled: bool, latency_s: float | None = None) -> None:
        """Feed back how the call sent with ``ticket`` went."""
        with self._lock:
            now = self._clock()
            full = ticket.admitted and self._in_flight >= int(self._cwnd)
            if ticket.admitted:
                self._in_flight = max(0, self._in_flight - 1)
                self._slot_freed.notify()
            if throttled:
                self._signal(ticket, now)
                return
            if full and ticket.epoch == self._epoch:  # the window bound: it may grow
                self._cwnd += 1.0 if self.decreases == 0 else 1.0 / self._cwnd
            self._successes.append(now)
            if self._first_success is None:
                self._first_success = now
            self._trim_successes(now)
            if latency_s is not None and self._latency_rose(ticket, latency_s):
                self._signal(ticket, now)
                return
            if ticket.waited and ticket.epoch == self._epoch and not math.isinf(self._rate):
                self._since_drop += 1
                if self._blind:  # cut with nothing measured: double per second of paced calls
                    self._rate = min(self.ceiling, self._rate * 2.0 ** (1.0 / max(1.0, self._rate)))
                else:
                    probe = 2 ** min(10, (self._since_drop - 1) // self.recovery_calls)
                    self._rate = min(self.ceiling, self._rate + self._step * probe)

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window_s:
            times.popleft()

    def _trim_successes(self, now: float) -> None:
        """Keep the window's successes, and at least the last _MIN_GOODPUT_SAMPLES of them."""
        while len(self._successes) > _MIN_GOODPUT_SAMPLES and self._successes[0] <= now - self.window_s:
            self._successes.popleft()

    def _latency_rose(self, ticket: Ticket, latency_s: float) -> bool:
        """Whether this epoch's recent median latency is ``latency_factor`` x the baseline.

        Baseline: the lowest median of ``latency_samples`` consecutive latencies seen so far (a
        median, not a mean: one slow answer is not congestion; the lowest: a rate that already
        queues must not become the norm). Recent: the median of this epoch's last
        ``latency_samples // 2`` (at least 3) latencies: long enough that the queue a cut leaves
        behind drains before its latency can cut again. A rise of less than ``latency_min_rise_s``
        is noise around a fast call (a thread switch doubles a 50 us call), not a queue.
        """
        self._window.append(latency_s)
        self._seen += 1
        if len(self._window) == self.latency_samples and self._seen % max(1, self.latency_samples // 4) == 0:
            median = statistics.median(self._window)
            self._baseline = median if self._baseline is None else min(self._baseline, median)
        if ticket.epoch != self._epoch:
            return False  # sent before the last decrease: its latency is the old rate's
        self._recent.append(latency_s)
        if self._baseline is None or len(self._recent) != self._recent.maxlen:
            return False
        recent = statistics.median(self._recent)
        return recent > self.latency_factor * self._baseline and recent - self._baseline > self.latency_min_rise_s

    def _signal(self, ticket: Ticket, now: float) -> None:
        if ticket.epoch != self._epoch:
            return  # in flight at the old rate: already answered by the last decrease
        self._trim_successes(now)
        self._trim(self._sends, now)
        # Over the window, or since the first call when that is shorter (the open start).
        started = self._started if self._started is not None else now
        sent = min(ticket.rate, self._rate)
        if math.isinf(sent):  # sent open: what went out over the window is the rate it was sent at
            sent = len(self._sends) / max(min(self.window_s, now - started), 1e-9)
        # Goodput over the window (or since the first success when that is shorter), or over the
        # last _MIN_GOODPUT_SAMPLES successes when the window holds fewer (a low quota). Fewer
        # successes than that so far (throttles answer faster than calls at the start) measure
        # nothing: the quota is below what was sent, by how much is unknown, so halve and climb
        # back multiplicatively to the next signal, which then has a goodput to go by.
        n = len(self._successes)
        self._blind = n < _MIN_GOODPUT_SAMPLES
        if self._blind:
            r_drop = max(self.floor, sent / 2)
        else:
            oldest = self._successes[0]
            if oldest > now - self.window_s:
                first = self._first_success if self._first_success is not None else oldest
                goodput = n / max(min(self.window_s, now - first), 1e-9)
            else:
                goodput = (n - 1) / max(now - oldest, 1e-9)
            # Goodput far below the sending rate: over-driving (the open start); go by goodput.
            # Otherwise the sending rate: a dip in goodput may be a lull in demand (retries
            # backing off), not the quota, and cutting to it would leave the rate far below.
            r_drop = max(self.floor, goodput if sent > _OVERDRIVE * goodput else sent)
        self._rate = min(self.ceiling, max(self.floor, self.decrease * r_drop))
        # The window: the calls in flight now (this one's slot already freed, so + 1), cut.
        in_flight = self._in_flight + (1 if ticket.admitted else 0)
        self._cwnd = max(float(self.initial_window), math.floor(self.decrease * in_flight))
        self._step = (1.0 - self.decrease) * r_drop / self.recovery_calls
        # Calls still waiting re-queue at the new rate (``recheck``), after the last one sent.
        last_sent = next((t for t in reversed(self._sends) if t <= now), -math.inf)
        self._next = max(now, last_sent + 1.0 / self._rate)
        self._epoch += 1
        self._since_drop = 0
        self._recent.clear()
        self.decreases += 1
