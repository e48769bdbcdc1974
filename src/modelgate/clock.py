"""The time the pipeline reads: the wall clock on AWS, the embedded AWS's clock locally.

Stages that compare their own time with AWS timestamps (the canary step's start, the
judge's metric window) read :func:`now` instead of ``datetime.now``. On Lambda nothing
replaces the source, so it is ``datetime.now(UTC)``. The embedded AWS runs pipeline time
faster than real time (scaled waits, or a virtual clock that jumps ahead when everything
waits); it installs its clock here so that a 900 s bake, the metrics' timestamps and the
judge's window all read the same time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Source = Callable[[], datetime]


def _wall_clock() -> datetime:
    return datetime.now(UTC)


_source: Source = _wall_clock


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    moment = _source()
    if moment.tzinfo is None:
        raise RuntimeError("the installed clock returned a naive datetime: it must be timezone-aware")
    return moment


def install(source: Source) -> Callable[[], None]:
    """Read time from ``source`` (the embedded AWS does this); returns ``uninstall``."""
    global _source
    previous = _source
    _source = source

    def uninstall() -> None:
        global _source
        _source = previous

    return uninstall
