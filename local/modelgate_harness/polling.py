"""The one way the harness, the demo and the tests wait for something to happen.

Nothing on the release path polls (bakes are callbacks); only observers do: a test
waiting for the ledger to say "Baking", the driver waiting for an execution to end, a
server waiting to come up. They all call :func:`wait_until`, so every wait has a
deadline and every timeout says what was awaited, for how long, and what was seen last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from modelgate_emulator.clock import observe

T = TypeVar("T")

# A poll that found nothing is followed by at least this many times its own CPU time idle: an
# observer takes at most 1/(1 + POLL_IDLE_FACTOR) of a core, however expensive its check (a
# ledger read costs ~10 ms of CPU on the embedded AWS; every 20 ms that was half a core, taken
# from the pipeline it watches on a 2-core machine).
POLL_IDLE_FACTOR = 3.0

__all__ = ["wait_until"]


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.02,
    *,
    progress: Callable[[], Any] | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy; return that.

    A poll that takes CPU time ``c`` is followed by at least ``POLL_IDLE_FACTOR * c`` seconds
    before the next one (an expensive check is made less often, so the observer does not
    starve what it observes); a cheap check keeps ``interval``.

    ``predicate`` is called at least once, and once more at the deadline, so a short
    timeout never fails a condition that already holds. An exception from it propagates
    at once (a broken check is not "not yet"). On an embedded AWS whose clock jumps
    (``LocalAWS(jump_when_idle=True)``) the caller is a participant: the clock does not jump
    until ``predicate`` has been called again after each change, and it is called again as
    soon as something changed (``modelgate_emulator.clock.observe``). After ``timeout`` seconds: ``TimeoutError``
    "timed out after <timeout> s waiting for <what>", followed by "; last seen: <progress()>"
    when ``progress`` is given (say where things stood: a status, the last state entered).
    """
    if timeout < 0 or interval <= 0:
        raise ValueError(f"timeout must be >= 0 and interval > 0 (got {timeout}, {interval})")
    deadline = time.monotonic() + timeout
    observation = observe()
    while True:
        cpu_before = time.thread_time()
        with observation.poll():
            value = predicate()
        if value:
            return value
        pause = max(interval, POLL_IDLE_FACTOR * (time.thread_time() - cpu_before))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        observation.found_nothing(min(pause, remaining))
    message = f"timed out after {timeout:g} s waiting for {what}"
    if progress is not None:
        try:
            message += f"; last seen: {progress()}"
        except Exception as exc:  # noqa: BLE001 - the timeout is the error to report
            message += f"; last seen: unknown ({type(exc).__name__}: {exc})"
    raise TimeoutError(message)
