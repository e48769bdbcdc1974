"""The embedded AWS's clock: nominal (pipeline) time, and how long it lasts in real time.

Every timed thing in the emulator reads one clock: metric timestamps and their publication
delay, alarm periods, event times, and the time the pipeline's own code reads
(``modelgate.clock``). Nominal time is what AWS would show: a 900 s bake lasts 900 nominal
seconds and its metrics are timestamped 900 nominal seconds apart.

- :class:`ScaledClock` (the runtime's clock): nominal time runs ``1 / time_factor`` times
  faster than real time from the moment it is created (which is also its nominal origin,
  so nominal timestamps start at the real current time).
- :class:`ManualClock` (tests): nominal time moves only when the test says so.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class Clock:
    """Nominal time, as epoch seconds and as a timezone-aware datetime."""

    def now(self) -> float:
        raise NotImplementedError

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def real_seconds(self, nominal_seconds: float) -> float:
        """Real seconds that ``nominal_seconds`` of nominal time last (at least 0)."""
        raise NotImplementedError


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
