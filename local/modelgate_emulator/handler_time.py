"""Handler time: how long a Lambda invocation ran, counted so that machine load does not stretch it.

On AWS each invocation has its own sandbox: its duration is wall-clock time from when the
function code starts processing the event to when it stops, and Lambda stops it when that
passes the function's ``Timeout`` ("Configure Lambda function timeout",
https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html: "Timeout is the
maximum amount of time in seconds that a Lambda function can run"). The ``Duration`` metric is
that time ("Types of metrics for Lambda functions", Performance metrics: "Duration – The amount
of time that your function code spends processing an event",
https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html), and the REPORT log
line reports the init phase apart from it (``Init Duration``).

Locally every handler shares one interpreter (one GIL) and a machine that may be busy with
other work, so real time measures the machine, not the handler: twenty releases at once made
handlers that need a fraction of their Timeout in CPU run past it in real seconds. So an
invocation's *handler time* counts only what the handler itself spends:

- the CPU time of each of its threads (``time.pthread_getcpuclockid``: the thread's own CPU
  clock, read from another thread while it runs), which excludes time spent waiting for the
  GIL, for a CPU, or for the emulator's own locks;
- the time it deliberately waits: ``time.sleep`` (counted up to the length asked for, so a
  late wake-up on a busy machine does not count), and a synchronous invocation of another
  function (counted as that invocation's handler time);
- for a thread the handler's code starts (directly or through ``concurrent.futures``): the
  handler time of its creator when it was created, plus its own as above. The invocation's
  handler time is the largest of its threads': the longest chain of work, as the handler
  would see it on its own machine.

What it does not see, and why that is acceptable: a thread blocked on a lock, event or future
is waiting for another thread; the time it waits counts only through that other thread (the
longest chain). Work a thread does after waiting for another one is not added on top of the
other's time, so handler time can fall short of the real duration on an idle machine (it never
exceeds it): a local timeout is never spurious, and the hang guard (``hang_guard_seconds``)
still ends a handler that never returns. Threads the AWS side starts while serving the
handler's calls (moto, this package: a Step Functions execution, an asynchronous invocation)
are not the handler's. The emulator's clock (``clock.py``) stands still while a handler runs,
so no handler waits on it for nominal time; its waits are not counted. A module that bound
``time.sleep`` before the runtime was installed (``def f(sleep=time.sleep)`` imported early)
sleeps uncounted.

Without per-thread CPU clocks (not Linux/Unix) a thread's CPU time is its real time: load
stretches handler time again there.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

# The real-time hang guard: ``max(HANG_GUARD_FACTOR * Timeout, HANG_GUARD_MIN_SECONDS)``.
HANG_GUARD_FACTOR = 20.0
HANG_GUARD_MIN_SECONDS = 120.0
MIN_POLL_SECONDS = 0.01  # the shortest re-check of a handler whose handler time is near its Timeout

_HAS_THREAD_CLOCKS = hasattr(time, "pthread_getcpuclockid") and hasattr(time, "clock_gettime")
_local = threading.local()


def hang_guard_seconds(timeout: float) -> float:
    """Real seconds after which an invocation ends as timed out whatever its handler time.

    Handler time only grows while the handler computes or deliberately waits; a handler
    blocked forever on something else (a lock nobody releases, a socket, a future of a thread
    that died) would never reach its Timeout, and the caller (a Step Functions task, a test)
    would wait forever. AWS always ends an invocation at its Timeout, so locally it ends at the
    latest after this generous real time, which load alone does not reach."""
    return max(HANG_GUARD_FACTOR * float(timeout), HANG_GUARD_MIN_SECONDS)


def _thread_cpu(ident: int) -> float:
    """CPU seconds of the live thread ``ident`` (the caller guarantees it has not ended)."""
    return time.clock_gettime(time.pthread_getcpuclockid(ident))


@dataclasses.dataclass(eq=False)
class _Member:
    """One thread counting for one invocation. Fields change under the meter's lock."""

    meter: Meter
    ident: int
    offset: float  # the handler time of its creator when it was created (0 for the handler's thread)
    cpu_start: float
    waited: float = 0.0  # deliberate waits that ended
    wait_since: float | None = None  # real time a deliberate wait began
    wait_cap: float = math.inf  # a sleep counts up to the length asked for
    wait_on: Meter | None = None  # a synchronous invocation: counts as its handler time
    cpu_end: float | None = None  # the thread stopped counting

    def own_time(self, now: float) -> float:  # with the meter's lock held
        if not _HAS_THREAD_CLOCKS:  # its real time (waits included)
            return self.offset + (now if self.cpu_end is None else self.cpu_end) - self.cpu_start
        # Alive unless cpu_end is set: it sets cpu_end under the same lock before it stops counting.
        cpu = (_thread_cpu(self.ident) if self.cpu_end is None else self.cpu_end) - self.cpu_start
        used = self.offset + cpu + self.waited
        if self.wait_since is not None:
            real = max(0.0, now - self.wait_since)
            used += min(real, self.wait_on.elapsed() if self.wait_on is not None else self.wait_cap)
        return used


def _own_cpu() -> float:
    """The calling thread's CPU seconds (real seconds without per-thread CPU clocks)."""
    return _thread_cpu(threading.get_ident()) if _HAS_THREAD_CLOCKS else time.monotonic()


class Meter:
    """One invocation's handler time (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: list[_Member] = []
        self._final: float | None = None

    def elapsed(self) -> float:
        """Handler seconds so far (frozen once :meth:`close` was called)."""
        with self._lock:
            if self._final is not None:
                return self._final
            now = time.monotonic()
            return max((m.own_time(now) for m in self._members), default=0.0)

    def close(self) -> float:
        """The invocation ended (returned, or gave up on): freeze and return its handler time."""
        used = self.elapsed()
        with self._lock:
            if self._final is None:
                self._final = used
            return self._final

    @contextlib.contextmanager
    def counting(self, offset: float = 0.0) -> Iterator[None]:
        """The calling thread counts for this invocation while the block runs."""
        ident = threading.get_ident()
        with self._lock:
            if self._final is not None:  # a leftover thread of an invocation that ended
                member = None
            else:
                member = _Member(self, ident, offset, _own_cpu())
                self._members.append(member)
        previous = getattr(_local, "member", None)
        _local.member = member
        try:
            yield
        finally:
            _local.member = previous
            if member is not None:
                with self._lock:
                    member.cpu_end = _own_cpu()

    def _begin_wait(self, member: _Member, cap: float, on: Meter | None) -> None:
        with self._lock:
            member.wait_since, member.wait_cap, member.wait_on = time.monotonic(), cap, on

    def _end_wait(self, member: _Member) -> None:
        with self._lock:
            if member.wait_since is None:
                return
            real = max(0.0, time.monotonic() - member.wait_since)
            member.waited += min(real, member.wait_on.elapsed() if member.wait_on is not None else member.wait_cap)
            member.wait_since, member.wait_cap, member.wait_on = None, math.inf, None

    def _time_of(self, member: _Member) -> float | None:
        """``member``'s handler time now; None once this invocation ended."""
        with self._lock:
            return None if self._final is not None else member.own_time(time.monotonic())


def _current() -> _Member | None:
    return getattr(_local, "member", None)


@contextlib.contextmanager
def waiting_for(invocation: Meter) -> Iterator[None]:
    """The calling thread waits for a synchronous invocation: if it counts for an invocation
    itself (a handler invoking another function), the wait counts as ``invocation``'s handler
    time, at most the real time waited."""
    member = _current()
    if member is None:
        yield
        return
    member.meter._begin_wait(member, math.inf, invocation)
    try:
        yield
    finally:
        member.meter._end_wait(member)


# ---------------------------------------------------------------------- patches
_install_lock = threading.Lock()
_installed = 0
_original_sleep: Any = time.sleep
_original_thread_init: Any = threading.Thread.__init__
_plumbing: tuple[str, ...] = ()  # files a thread's creation passes through (threading, concurrent.futures)
_aws_side: tuple[str, ...] = ()  # code that serves the handler's calls (moto, this package)


def _counted_sleep(seconds: float) -> None:
    """``time.sleep`` that counts as deliberate waiting in a thread counting for an invocation."""
    member = _current()
    try:
        cap = float(seconds)
    except (TypeError, ValueError):
        cap = math.nan
    if member is None or not cap >= 0:  # not counting, or an argument time.sleep itself rejects
        _original_sleep(seconds)
        return
    member.meter._begin_wait(member, cap, None)
    try:
        _original_sleep(seconds)
    finally:
        member.meter._end_wait(member)


def _started_by_handler_code(frame: FrameType | None) -> bool:
    """Whether the code that creates a thread is the handler's (or a library it calls), not
    the AWS side serving one of its calls."""
    while frame is not None and frame.f_code.co_filename.startswith(_plumbing):
        frame = frame.f_back
    return frame is not None and not frame.f_code.co_filename.startswith(_aws_side)


def _counted_thread_init(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
    """``threading.Thread.__init__``: a thread the handler's code creates counts for its
    invocation from its creator's handler time on."""
    _original_thread_init(self, *args, **kwargs)
    creator = _current()
    if creator is None or not _started_by_handler_code(sys._getframe(1)):
        return
    meter = creator.meter
    offset = meter._time_of(creator)
    if offset is None:
        return
    run = self.run

    def run_counted() -> None:
        with meter.counting(offset):
            run()

    self.run = run_counted  # type: ignore[method-assign]


def _package_dir(module: Any) -> tuple[str, ...]:
    """The directory of a package or module's file, as code objects may name it (with a separator)."""
    directory = Path(module.__file__).parent
    return tuple({str(directory) + "/", str(directory.resolve()) + "/"})


def install() -> None:
    """Patch ``time.sleep`` and ``threading.Thread.__init__`` (reference counted)."""
    global _installed, _original_sleep, _original_thread_init, _plumbing, _aws_side
    import moto

    import modelgate_emulator

    with _install_lock:
        _installed += 1
        if _installed > 1:
            return
        this = Path(__file__)
        _plumbing = (threading.__file__, str(Path(threading.__file__).resolve()), str(this), str(this.resolve()),
                     *_package_dir(concurrent.futures))
        _aws_side = (*_package_dir(moto), *_package_dir(modelgate_emulator))
        # Kept after uninstall: a module that imported the patched function keeps calling it.
        if time.sleep is not _counted_sleep:
            _original_sleep = time.sleep
        if threading.Thread.__init__ is not _counted_thread_init:
            _original_thread_init = threading.Thread.__init__
        time.sleep = _counted_sleep
        threading.Thread.__init__ = _counted_thread_init  # type: ignore[method-assign]


def uninstall() -> None:
    """Undo :func:`install` once every installer has called this."""
    global _installed
    with _install_lock:
        if _installed == 0:
            return
        _installed -= 1
        if _installed:
            return
        if time.sleep is _counted_sleep:
            time.sleep = _original_sleep
        if threading.Thread.__init__ is _counted_thread_init:
            threading.Thread.__init__ = _original_thread_init  # type: ignore[method-assign]


def is_installed() -> bool:
    return _installed > 0
