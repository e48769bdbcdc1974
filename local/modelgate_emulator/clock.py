"""The embedded AWS's clock: nominal (pipeline) time, and how long it lasts in real time.

Every timed thing in the emulator reads one clock: metric timestamps and their publication
delay, alarm periods, event times, and the time the pipeline's own code reads
(``modelgate.clock``). Nominal time is what AWS would show: a 900 s bake lasts 900 nominal
seconds and its metrics are timestamped 900 nominal seconds apart.

- :class:`ScaledClock`: nominal time runs ``1 / time_factor`` times faster than real time
  from the moment it is created (which is also its nominal origin, so nominal timestamps
  start at the real current time).
- :class:`LoadSafeClock` (the runtime's clock): a scaled clock that stands still while
  real work runs (a Lambda handler, a caller's request: :meth:`LoadSafeClock.hold`) and
  that cannot pass a barrier its owner has not cleared (the alarm evaluator's next period
  boundary). So real work, however slow on a busy machine, costs no nominal time, and
  observers that must act at a nominal moment act there.
- :class:`ManualClock` (tests): nominal time moves only when the test says so.

Waits on a clock (:meth:`Clock.wait`, :meth:`Clock.sleep`) end when the clock reaches
their deadline, not after a fixed real time.
"""

from __future__ import annotations

import abc
import contextlib
import heapq
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

_MIN_REAL_WAIT = 0.002  # real seconds: the shortest re-check of a wait whose deadline is ahead


class Clock(abc.ABC):
    """Nominal time, as epoch seconds and as a timezone-aware datetime."""

    @abc.abstractmethod
    def now(self) -> float:
        """Nominal epoch seconds."""

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    @abc.abstractmethod
    def real_seconds(self, nominal_seconds: float) -> float:
        """Real seconds that ``nominal_seconds`` of nominal time last at best (at least 0)."""

    def wait(self, event: threading.Event, nominal_seconds: float | None) -> bool:
        """Wait until ``event`` is set (True) or ``nominal_seconds`` of this clock pass (False)."""
        if nominal_seconds is None:
            return event.wait()
        deadline = self.now() + max(0.0, float(nominal_seconds))
        while True:
            left = deadline - self.now()
            if left <= 0:
                return event.is_set()
            # Wake up after the best-case real time and look again: the clock may have
            # stood still meanwhile (work ran), so the deadline may still be ahead.
            if event.wait(max(self.real_seconds(left), _MIN_REAL_WAIT)):
                return True

    def sleep(self, nominal_seconds: float) -> None:
        self.wait(threading.Event(), nominal_seconds)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Real work in progress (see :class:`LoadSafeClock`); other clocks ignore it."""
        yield


class ScaledClock(Clock):
    """Nominal time = origin + real time elapsed since the origin / ``time_factor``."""

    def __init__(self, time_factor: float, *, origin: float | None = None) -> None:
        if time_factor <= 0:
            raise ValueError("time_factor must be > 0: waits are scaled, never skipped")
        self.time_factor = time_factor
        self._origin = time.time() if origin is None else float(origin)
        self._started = time.monotonic()

    def now(self) -> float:
        return self._origin + (time.monotonic() - self._started) / self.time_factor

    def real_seconds(self, nominal_seconds: float) -> float:
        return max(0.0, float(nominal_seconds)) * self.time_factor


class LoadSafeClock(Clock):
    """Nominal time that only flows while no real work runs, and stops at open barriers.

    While nothing holds it, nominal time runs ``1 / time_factor`` times faster than real
    time (like :class:`ScaledClock`). While any :meth:`hold` is open (a Lambda handler
    runs, a traffic generator's request is in flight) it stands still, so a handler that
    takes ten times longer on a loaded machine takes the same (zero) nominal time, and a
    900 s bake sees the same traffic and alarm evaluations however busy the machine is.
    :meth:`barrier` registers a nominal moment the clock may not pass until the barrier is
    cleared (the alarm evaluator's next period boundary: alarms evaluate exactly there,
    even when its thread is scheduled late).

    What still costs nominal time is real time spent outside any hold: the interpreter's
    own state transitions, thread scheduling between a wait's end and the next step.
    Waits (:meth:`Clock.wait`) re-check the clock, so a wait never ends early.
    """

    def __init__(self, time_factor: float, *, origin: float | None = None) -> None:
        if time_factor <= 0:
            raise ValueError("time_factor must be > 0: waits are scaled, never skipped")
        self.time_factor = time_factor
        self._lock = threading.Lock()
        self._now = time.time() if origin is None else float(origin)
        self._last = time.monotonic()
        self._holds = 0
        self._barriers: list[tuple[float, int]] = []  # a heap of (moment, id)
        self._cleared: set[int] = set()
        self._next_barrier = 0

    def _advance(self) -> None:  # with the lock held
        real = time.monotonic()
        if self._holds == 0:
            self._now += (real - self._last) / self.time_factor
        self._last = real
        while self._barriers and self._barriers[0][1] in self._cleared:
            self._cleared.discard(heapq.heappop(self._barriers)[1])
        if self._barriers and self._now > self._barriers[0][0]:
            self._now = self._barriers[0][0]

    def now(self) -> float:
        with self._lock:
            self._advance()
            return self._now

    def real_seconds(self, nominal_seconds: float) -> float:
        return max(0.0, float(nominal_seconds)) * self.time_factor

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Stop nominal time while the block runs (nested and concurrent holds add up)."""
        with self._lock:
            self._advance()
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._advance()
                self._holds -= 1

    def barrier(self, moment: float) -> int:
        """Stop nominal time at ``moment`` until :meth:`clear` is called with the returned id."""
        with self._lock:
            self._advance()
            self._next_barrier += 1
            heapq.heappush(self._barriers, (max(float(moment), self._now), self._next_barrier))
            return self._next_barrier

    def clear(self, barrier_id: int) -> None:
        with self._lock:
            self._advance()  # up to the barrier: time did not pass it
            self._cleared.add(barrier_id)
            self._last = time.monotonic()


class ManualClock(Clock):
    """A clock that only moves when told (``advance``/``set``): for tests of timed logic."""

    def __init__(self, start: float | datetime) -> None:
        self._lock = threading.Lock()
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds})")
        with self._lock:
            self._now += seconds

    def set(self, moment: float | datetime) -> None:
        value = moment.timestamp() if isinstance(moment, datetime) else float(moment)
        with self._lock:
            if value < self._now:
                raise ValueError("a clock does not go back")
            self._now = value

    def real_seconds(self, nominal_seconds: float) -> float:
        return 0.0
