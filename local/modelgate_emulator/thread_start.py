"""One patch of ``threading.Thread.start``, shared by the emulator's parts that need one.

Two parts act when a thread starts: :mod:`environ` runs it in a copy of its creator's context
(a Lambda invocation's environment, the IAM principal), and a running :class:`clock.JumpingClock`
enrols it as a participant. Each used to replace ``Thread.start`` with its own function that
called the one it had saved: whichever was installed last bypassed the other (the jumping
clock's threads lost their creator's principal, so a Distributed Map's child executions ran
as nobody), and undoing them in another order than they were done left a stale patch behind.

Here there is one patch, installed while at least one hook is registered: each hook is called
in the creating thread, before the thread starts, in the order registered, and may wrap
``thread.run``; if a hook or the start fails, the cleanups the earlier hooks returned run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

# A hook gets the thread about to start; it may return a cleanup, run if the start fails after it.
Hook = Callable[[threading.Thread], Callable[[], None] | None]

_lock = threading.Lock()
_hooks: list[Hook] = []
_original_start = threading.Thread.start


def _start(thread: threading.Thread) -> None:
    cleanups: list[Callable[[], None]] = []
    try:
        for hook in tuple(_hooks):
            cleanup = hook(thread)
            if cleanup is not None:
                cleanups.append(cleanup)
        _original_start(thread)
    except BaseException:
        for cleanup in reversed(cleanups):
            cleanup()
        raise


def add_hook(hook: Hook) -> None:
    """Call ``hook`` for every thread started from now on (installs the patch for the first)."""
    with _lock:
        if not _hooks:
            threading.Thread.start = _start  # type: ignore[method-assign]
        _hooks.append(hook)


def remove_hook(hook: Hook) -> None:
    """Stop calling ``hook`` (one registration); the last removal restores ``Thread.start``."""
    with _lock:
        _hooks.remove(hook)
        if not _hooks:
            threading.Thread.start = _original_start  # type: ignore[method-assign]
