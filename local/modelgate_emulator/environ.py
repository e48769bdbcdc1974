"""Per-invocation process environment for Lambda handlers that share one Python process.

Why: on AWS every Lambda function (and every version) runs in its own sandbox with its own
``os.environ``. Locally several handlers run at the same time in threads of one process
(Step Functions executions, EventBridge deliveries, a traffic generator), so setting
``os.environ`` per call would let one function read another's ``LEDGER_TABLE`` or pinned
model config. Instead :func:`install` replaces ``os.environ`` once with
:class:`OverlayEnviron`, whose reads consult the *current context's* overlay first.

How:
- the overlay lives in a :class:`contextvars.ContextVar`, so it is per thread and per
  asyncio task, and nested invocations (a handler invoking another function) restore
  the caller's overlay on return;
- a new thread does not inherit context variables before Python 3.14, so
  :func:`install` also hooks ``threading.Thread.start`` (:mod:`thread_start`): a thread started while an
  overlay is active runs inside a copy of its creator's context. This covers
  ``ThreadPoolExecutor`` inside handlers (its workers are created on ``submit`` by the
  submitting thread). It is the behaviour Python 3.14 offers as ``thread_inherit_context``.
- with an overlay active the base process environment is hidden except a pass-through
  allowlist (credentials, moto and Python settings, PATH, ...), like a Lambda sandbox:
  a variable set in the developer's shell must not hide a variable the template forgot.
- writes inside an invocation go to its overlay, never to the process.

Limits (documented, not worked around): ``os.environb``, ``os.putenv`` and child
processes see the real process environment only; a thread started by a handler also
carries the handler's environment into moto code it runs (e.g. a Step Functions
execution started from a handler) - harmless, since moto reads only pass-through keys.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from modelgate_emulator import thread_start

# Overlay of the current invocation: key -> value, or None for "deleted in this sandbox".
_OVERLAY: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar(
    "modelgate_local_env_overlay", default=None
)

# Base-environment keys a Lambda sandbox still sees locally: credentials and SDK settings
# (the fake moto credentials), moto's own switches, interpreter and OS plumbing.
PASSTHROUGH_PREFIXES: tuple[str, ...] = (
    "AWS_",
    "BOTO_",
    "MOTO_",
    "TEST_SERVER_MODE",
    "PYTHON",
    "PYTEST_",
    "LC_",
    "SSL_",
)
PASSTHROUGH_KEYS: frozenset[str] = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
)


def _passes_through(key: str) -> bool:
    return key in PASSTHROUGH_KEYS or key.startswith(PASSTHROUGH_PREFIXES)


class OverlayEnviron(os._Environ):  # type: ignore[type-arg]  # os._Environ is generic only in stubs
    """``os.environ`` that reads the current context's overlay first.

    It shares the real environment's storage (``_data``) and encoders, so outside an
    invocation it behaves exactly like the original ``os.environ`` (writes call putenv),
    and code that kept a reference to the original object sees the same base values.
    """

    def __init__(self, base: os._Environ) -> None:  # type: ignore[type-arg]
        super().__init__(
            base._data,  # type: ignore[attr-defined]
            base.encodekey,
            base.decodekey,
            base.encodevalue,
            base.decodevalue,
        )

    def __getitem__(self, key: str) -> str:
        overlay = _OVERLAY.get()
        if overlay is None:
            return super().__getitem__(key)  # type: ignore[no-any-return]
        if key in overlay:
            value = overlay[key]
            if value is None:
                raise KeyError(key)
            return value
        if _passes_through(key):
            return super().__getitem__(key)  # type: ignore[no-any-return]
        raise KeyError(key)

    def __setitem__(self, key: str, value: str) -> None:
        overlay = _OVERLAY.get()
        if overlay is None:
            super().__setitem__(key, value)
            return
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"str expected, not {type(key if not isinstance(key, str) else value).__name__}")
        overlay[key] = value

    def __delitem__(self, key: str) -> None:
        overlay = _OVERLAY.get()
        if overlay is None:
            super().__delitem__(key)
            return
        if key not in self:
            raise KeyError(key)
        overlay[key] = None

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        overlay = _OVERLAY.get()
        if overlay is None:
            yield from super().__iter__()
            return
        for key in list(super().__iter__()):
            if key not in overlay and _passes_through(key):
                yield key
        for key, value in list(overlay.items()):
            if value is not None:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        return dict(self.items())

    def __repr__(self) -> str:
        return f"OverlayEnviron({self.copy()!r})"


# Other context variables a thread inherits from its creator (the IAM principal: iam.py).
_INHERITED: list[contextvars.ContextVar[Any]] = []


def inherit_in_threads(var: contextvars.ContextVar[Any]) -> None:
    """A thread started while ``var`` is set runs in a copy of its creator's context too."""
    if var not in _INHERITED:
        _INHERITED.append(var)


_lock = threading.Lock()
_installed = 0
_original_environ: Any = None


def _inherit_context(thread: threading.Thread) -> None:
    """A thread started when its creator is inside a Lambda invocation or has an inherited
    variable set runs in a copy of its creator's context (see the module docstring); a
    :mod:`thread_start` hook."""
    inherit = _OVERLAY.get() is not None or any(var.get() is not None for var in _INHERITED)
    if inherit and not getattr(thread, "_modelgate_context", None):
        context = contextvars.copy_context()
        run = thread.run
        thread._modelgate_context = context  # type: ignore[attr-defined]
        thread.run = lambda: context.run(run)  # type: ignore[method-assign]


def install() -> None:
    """Replace ``os.environ`` and hook ``Thread.start`` (reference counted, idempotent)."""
    global _installed, _original_environ
    with _lock:
        _installed += 1
        if _installed > 1:
            return
        _original_environ = os.environ
        os.environ = OverlayEnviron(_original_environ)  # also what os.getenv reads
        thread_start.add_hook(_inherit_context)


def uninstall() -> None:
    """Undo :func:`install` once every installer has called this."""
    global _installed, _original_environ
    with _lock:
        if _installed == 0:
            return
        _installed -= 1
        if _installed:
            return
        os.environ = _original_environ
        thread_start.remove_hook(_inherit_context)
        _original_environ = None


def is_installed() -> bool:
    return _installed > 0


@contextmanager
def overlay(environment: Mapping[str, str]) -> Iterator[dict[str, str | None]]:
    """Run the block with ``environment`` as this context's process environment."""
    if not is_installed():
        raise RuntimeError("modelgate_emulator.environ.install() must run before overlay()")
    values: dict[str, str | None] = dict(environment)
    token = _OVERLAY.set(values)
    try:
        yield values
    finally:
        _OVERLAY.reset(token)


def current_overlay() -> Mapping[str, str | None] | None:
    """The active invocation's overlay, or None outside any invocation."""
    return _OVERLAY.get()
