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
- :class:`JumpingClock` (``LocalAWS(jump_when_idle=True)``): a load-safe clock that, when
  every participating thread waits (on a timer, on another participant, or polling with
  nothing new to see) and no hold, external wait or barrier is in the way, jumps straight
  to the earliest deadline, so idle waits cost no real time.
- :class:`ManualClock` (tests): nominal time moves only when the test says so.

Waits on a clock (:meth:`Clock.wait`, :meth:`Clock.sleep`) end when the clock reaches
their deadline, not after a fixed real time.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import heapq
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Protocol

from modelgate_emulator import thread_start

_MIN_REAL_WAIT = 0.002  # real seconds: the shortest re-check of a wait whose deadline is ahead


class Waitable(Protocol):
    """What a clock's wait ends on: a :class:`threading.Event`, or anything shaped like one."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


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

    def wait(self, event: Waitable, nominal_seconds: float | None, *, external: bool = False) -> bool:
        """Wait until ``event`` is set (True) or ``nominal_seconds`` of this clock pass (False).

        ``external``: only someone outside the emulator (a test, a user) ends this wait early,
        such as an approval's task token; a :class:`JumpingClock` does not jump while it is
        pending. Other clocks ignore it.
        """
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

    def wait_for_moment(self, event: Waitable, moment: float) -> bool:
        """Wait until ``event`` is set (True) or this clock reaches ``moment`` (False).

        Compared with ``moment`` itself (not ``now + (moment - now)``, which can round one
        ulp past it): a clock held at a barrier on ``moment`` ends the wait."""
        while True:
            left = moment - self.now()
            if left <= 0:
                return event.is_set()
            if event.wait(max(self.real_seconds(left), _MIN_REAL_WAIT)):
                return True

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Real work in progress (see :class:`LoadSafeClock`); other clocks ignore it."""
        yield

    @contextlib.contextmanager
    def blocked_on(self, ready: Callable[[], bool]) -> Iterator[None]:
        """The calling thread blocks until ``ready()`` (another thread's work ends): see
        :class:`JumpingClock`; other clocks ignore it."""
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

    def _standing_still(self) -> bool:  # with the lock held
        return self._holds > 0

    def _advance(self) -> None:  # with the lock held
        real = time.monotonic()
        if not self._standing_still():
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


_ACTIVE = "active"  # running, or blocked in a way the clock does not know: no jump
_TIMER = "timer"  # Clock.wait with a deadline nobody outside the emulator ends early
_EXTERNAL = "external"  # Clock.wait that someone outside ends (an approval): no jump
_BLOCKED = "blocked"  # Clock.blocked_on: waits for another participant's work
_OBSERVING = "observing"  # polls for a condition (observe()): idle while nothing changed since


@dataclasses.dataclass(eq=False)
class _Participant:
    thread: threading.Thread
    enrolled: int = 0  # participant() / inherited enrolments; 0: a passing waiter
    state: str = _ACTIVE
    deadline: float | None = None
    ready: Callable[[], bool] | None = None  # the wait ends as soon as this is true
    seen: int = -1  # observing: the change count at its last poll that found nothing
    woken: bool = False  # a jump reached its deadline; it has not run yet


_running_lock = threading.Lock()
_running: list[JumpingClock] = []


def _enrol_started(thread: threading.Thread) -> Callable[[], None] | None:
    """A :mod:`thread_start` hook while a :class:`JumpingClock` runs: a thread started by a
    participant is a participant (enrolled before it starts, so the clock never sees a gap)."""
    parent = threading.current_thread()
    clocks = [clock for clock in list(_running) if clock._enrolled(parent)]
    if not clocks:
        return None
    for clock in clocks:
        clock._enrol(thread)
    run = thread.run

    def run_enrolled() -> None:
        try:
            run()
        finally:
            for clock in clocks:
                clock._leave(thread)

    thread.run = run_enrolled  # type: ignore[method-assign]

    def not_started() -> None:
        for clock in clocks:
            clock._leave(thread)

    return not_started


class JumpingClock(LoadSafeClock):
    """A :class:`LoadSafeClock` that jumps to the next deadline when every participant waits.

    Participants are threads: the one that calls :meth:`running` and, while it runs, every
    thread a participant starts (a :mod:`thread_start` hook enrols it before it starts; it
    leaves when its ``run`` returns), plus any thread inside :meth:`participant`. A
    participant counts as *active* unless it is

    - in :meth:`Clock.wait` with a deadline (a timer) whose event is not set,
    - in :meth:`blocked_on` whose condition is not met (it waits for another participant),
    - in an :func:`observe` poll loop whose last poll saw every change so far.

    When no hold is open and every participant is idle that way, nominal time jumps to the
    earliest timer deadline (never past the first uncleared :meth:`barrier`), and the timers
    due then are woken in deadline order: the clock stands still until each woken thread has
    run (so a loaded machine cannot stretch a jump). A pending ``external`` wait (a task
    token only a person or a test answers) or any active participant prevents the jump, and
    time flows as on a :class:`LoadSafeClock` meanwhile, so an actor the clock does not know
    about is never jumped past. ``time_factor=math.inf``: nominal time moves only by jumps.
    """

    def __init__(self, time_factor: float, *, origin: float | None = None, poll_seconds: float = 0.01) -> None:
        super().__init__(time_factor, origin=origin)
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be > 0, got {poll_seconds}")
        self.poll_seconds = poll_seconds  # real seconds: how often a wait looks at its event
        self._changed = threading.Condition(self._lock)
        self._participants: dict[threading.Thread, _Participant] = {}
        self._changes = 0  # bumped when a participant may have done something observable
        self._live = False
        self.jumps = 0

    # ------------------------------------------------------------------ lifecycle
    @contextlib.contextmanager
    def running(self) -> Iterator[JumpingClock]:
        """Jump while the block runs; the calling thread (and what it starts) participates."""
        with self._lock:
            if self._live:
                raise RuntimeError("this JumpingClock is already running")
            self._live = True
        with _running_lock:
            if not _running:
                thread_start.add_hook(_enrol_started)
            _running.append(self)
        try:
            with self.participant():
                yield self
        finally:
            with _running_lock:
                _running.remove(self)
                if not _running:
                    thread_start.remove_hook(_enrol_started)
            with self._lock:
                self._live = False
                self._participants.clear()
                self._changed.notify_all()

    @contextlib.contextmanager
    def participant(self) -> Iterator[None]:
        """The calling thread participates while the block runs (see the class docstring)."""
        thread = threading.current_thread()
        self._enrol(thread)
        try:
            yield
        finally:
            self._leave(thread)

    def _enrolled(self, thread: threading.Thread) -> bool:
        with self._lock:
            member = self._participants.get(thread)
            return self._live and member is not None and member.enrolled > 0

    def _enrol(self, thread: threading.Thread) -> None:
        with self._lock:
            member = self._participants.setdefault(thread, _Participant(thread))
            member.enrolled += 1

    def _leave(self, thread: threading.Thread) -> None:
        with self._lock:
            member = self._participants.get(thread)
            if member is None:
                return
            member.enrolled -= 1
            if member.enrolled <= 0 and member.state == _ACTIVE:
                del self._participants[thread]
            self._note_change()

    def real_seconds(self, nominal_seconds: float) -> float:
        nominal = max(0.0, float(nominal_seconds))
        return nominal * self.time_factor if nominal else 0.0  # inf * 0 would be nan

    # ------------------------------------------------------------------ waits
    def _standing_still(self) -> bool:  # with the lock held
        if self._holds > 0:
            return True
        # A woken timer, or a wait whose event was set, is about to run: scheduling it takes
        # no nominal time.
        return any(m.woken or (m.state in (_TIMER, _EXTERNAL) and m.ready is not None and m.ready())
                   for m in self._participants.values())

    def wait(self, event: Waitable, nominal_seconds: float | None, *, external: bool = False) -> bool:
        if nominal_seconds is None and not external:
            with self.blocked_on(event.is_set):
                return event.wait()
        with self._lock:
            self._advance()
            deadline = math.inf if nominal_seconds is None else self._now + max(0.0, float(nominal_seconds))
        return self._wait_until(event, deadline, external)

    def wait_for_moment(self, event: Waitable, moment: float) -> bool:
        return self._wait_until(event, float(moment), False)  # exactly there: a barrier may be

    def _wait_until(self, event: Waitable, deadline: float, external: bool) -> bool:
        with self._lock:
            member = self._begin_wait(_EXTERNAL if external else _TIMER, event.is_set, deadline)
            try:
                while True:
                    if event.is_set():
                        return True
                    self._advance()
                    if self._now >= deadline:
                        return event.is_set()
                    member.woken = False
                    self._changed.wait(min(self.real_seconds(deadline - self._now), self.poll_seconds))
            finally:
                self._end_wait(member)

    @contextlib.contextmanager
    def blocked_on(self, ready: Callable[[], bool]) -> Iterator[None]:
        with self._lock:
            member = self._begin_wait(_BLOCKED, ready, None)
        try:
            yield
        finally:
            with self._lock:
                self._end_wait(member)

    def _begin_wait(self, state: str, ready: Callable[[], bool], deadline: float | None) -> _Participant:
        thread = threading.current_thread()
        member = self._participants.get(thread)
        if member is None:  # a thread that is no participant: its deadline still counts
            member = self._participants[thread] = _Participant(thread)
        member.state, member.ready, member.deadline, member.woken = state, ready, deadline, False
        self._note_change()
        return member

    def _end_wait(self, member: _Participant) -> None:
        member.state, member.ready, member.deadline, member.woken = _ACTIVE, None, None, False
        if member.enrolled <= 0:
            self._participants.pop(member.thread, None)
        self._changed.notify_all()

    # ------------------------------------------------------------------ holds and barriers
    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        try:
            with super().hold():
                yield
        finally:
            with self._lock:
                self._note_change()  # the work may have changed what observers look at

    def clear(self, barrier_id: int) -> None:
        super().clear(barrier_id)
        with self._lock:
            self._try_jump()

    def participants(self) -> dict[str, str]:
        """Thread name -> what it does for the clock ("active", "timer", "external",
        "blocked", "observing"; "woken": a jump reached its deadline): to see why it does not jump."""
        with self._lock:
            return {t.name: "woken" if m.woken else m.state for t, m in self._participants.items()}

    # ------------------------------------------------------------------ observers
    def _poll_started(self) -> int | None:
        """An observer starts a poll: it is active, and reading costs no nominal time (a hold
        that is no change: the observer's own reads never make it poll again)."""
        with self._lock:
            member = self._participants.get(threading.current_thread())
            if member is None or member.enrolled <= 0:
                return None
            self._advance()
            self._holds += 1
            member.state = _ACTIVE
            return self._changes

    def _poll_ended(self) -> None:
        with self._lock:
            self._advance()
            self._holds -= 1
            self._try_jump()

    def _poll_found_nothing(self, seen: int, real_timeout: float) -> None:
        """Idle until something changes after ``seen`` (or ``real_timeout`` passes)."""
        with self._lock:
            member = self._participants.get(threading.current_thread())
            if member is None:
                return
            member.state, member.seen = _OBSERVING, seen
            self._try_jump()
            if self._changes == seen and self._live:
                self._changed.wait(real_timeout)
            member.state = _ACTIVE

    # ------------------------------------------------------------------ the jump
    def _note_change(self) -> None:  # with the lock held
        self._changes += 1
        self._changed.notify_all()
        self._try_jump()

    def _try_jump(self) -> None:  # with the lock held
        if not self._live or self._holds > 0:
            return
        self._advance()
        deadlines = []
        for thread, member in list(self._participants.items()):
            if thread.ident is not None and not thread.is_alive():
                del self._participants[thread]  # ended without leaving (the interpreter shut it down)
                continue
            if member.woken or member.state in (_ACTIVE, _EXTERNAL):
                return
            if member.state == _OBSERVING:
                if member.seen != self._changes:
                    return
                continue
            if member.ready is not None and member.ready():
                return  # about to wake
            if member.state == _TIMER and member.deadline is not None:
                if member.deadline <= self._now:
                    return  # due: about to wake by itself
                deadlines.append(member.deadline)
        if not deadlines:
            return
        target = min(deadlines)
        if self._barriers:
            target = min(target, self._barriers[0][0])
        if target <= self._now:
            return
        self._now = target
        self._last = time.monotonic()
        self.jumps += 1
        for member in self._participants.values():
            if member.state == _TIMER and member.deadline is not None and member.deadline <= target:
                member.woken = True
        self._changed.notify_all()


class _Observation:
    """One observer's poll loop on the running jumping clocks it participates in."""

    def __init__(self, clocks: list[JumpingClock]) -> None:
        self._clocks = clocks
        self._seen: list[int | None] = [None] * len(clocks)

    @contextlib.contextmanager
    def poll(self) -> Iterator[None]:
        """Around one poll: the observer is active (it may act on what it sees)."""
        self._seen = [clock._poll_started() for clock in self._clocks]
        try:
            yield
        finally:
            for clock, seen in zip(self._clocks, self._seen, strict=True):
                if seen is not None:
                    clock._poll_ended()

    def found_nothing(self, real_timeout: float) -> None:
        """The last poll saw nothing to act on: idle until something changes, at most
        ``real_timeout`` real seconds."""
        waited = False
        for clock, seen in zip(self._clocks, self._seen, strict=True):
            if seen is not None:
                clock._poll_found_nothing(seen, real_timeout)
                waited = True
        if not waited:
            time.sleep(real_timeout)


def observe() -> _Observation:
    """For a loop that polls the emulator for a condition (``wait_until``, waiting for an
    execution): poll inside ``with observation.poll():`` and call ``found_nothing(interval)``
    after a poll that found nothing, instead of sleeping. A :class:`JumpingClock` the calling thread
    participates in then does not jump until the loop has polled again after every change
    (so a test that acts once it sees "Baking" sees it before the bake is jumped over), and
    the loop re-polls as soon as something changed. Elsewhere it just sleeps."""
    thread = threading.current_thread()
    return _Observation([clock for clock in list(_running) if clock._enrolled(thread)])


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
