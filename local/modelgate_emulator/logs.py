"""Function logs as on AWS: each function's output in its own CloudWatch log group.

On AWS every execution environment is its own process: what a function writes to stdout /
stderr (``print``, ``logging``, Powertools' JSON lines) goes to the log group
``/aws/lambda/<function name>``, one log stream per execution environment named
``YYYY/MM/DD/[<version>]<environment id>`` (the context's ``log_stream_name``), and the
runtime adds ``START``, ``END`` and ``REPORT`` lines per invocation (``INIT_START`` and an
``Init Duration`` on a cold start). Sources:
- "Log and monitor Python Lambda functions",
  https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html (the example log output:
  ``START RequestId: ... Version: $LATEST`` ... ``END RequestId: ...``
  ``REPORT RequestId: ...  Duration: ... ms  Billed Duration: ... ms  Memory Size: ... MB ...
  Init Duration: ... ms``; "any logging library that writes to stdout or stderr");
- "How CloudWatch structures logs",
  https://docs.aws.amazon.com/lambda/latest/operatorguide/log-structure.html (the group name,
  one stream per execution environment, START / END / REPORT "even if your function does
  not log any output");
- "Sending Lambda function logs to CloudWatch Logs",
  https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html (Lambda creates
  the group on first use when it is missing; the template may declare it instead).

Locally every function runs in threads of one process. This module makes it look like AWS:
- **capture per invocation**: a context variable names the running invocation (set inside
  the handler's thread; threads the handler starts inherit it through ``environ.py``'s
  ``Thread.start`` patch). ``sys.stdout`` / ``sys.stderr`` writes and every
  ``logging.StreamHandler`` that writes to the console are routed to that invocation's
  lines (one CloudWatch event per line, as the runtime splits stdout). Output outside an
  invocation is untouched; with ``echo`` (the default) captured output still reaches the
  console too.
- **Powertools state per execution environment**: the layer (and its one Powertools
  ``Logger``) is imported once for all functions, so ``append_keys`` from one function (the
  Lambda context keys ``inject_lambda_context`` adds: request id, function name, cold
  start, the correlation id) would show in another's lines. Here the formatter's
  ``log_format`` and Powertools' ``THREAD_LOCAL_KEYS`` context variable are kept per
  execution environment (copied into each invocation and written back when it ends, so
  keys persist across warm invocations as they do on AWS), and Powertools' process-wide
  cold-start flag is answered per environment. What a Logger is constructed with is the
  base every environment starts from.
- **writes** go straight to moto's CloudWatch Logs backend (the Lambda service writes them
  on AWS; the function's own calls are not involved), creating the group and stream if
  missing, one PutLogEvents batch per invocation when it ends (and the cold start's
  ``INIT_START`` lines with the first one).

Limits: ``Max Memory Used`` is not measured (one process holds every function) and is left
out of REPORT; output a handler's thread writes after its timeout is dropped (AWS stops
the environment); ``sys.stdout`` is re-wrapped at each invocation when something swapped it
(pytest does), so a ``print`` is missed only if the stream is swapped mid-invocation.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

LOG = logging.getLogger(__name__)

# The invocation (or cold-start init phase) whose output this context produces.
_CAPTURE: contextvars.ContextVar[_Lines | None] = contextvars.ContextVar("modelgate_local_log_capture", default=None)
# The Powertools logger state of the execution environment running in this context.
_LOGGER_STATE: contextvars.ContextVar[_LoggerState | None] = contextvars.ContextVar(
    "modelgate_local_logger_state", default=None
)


def log_group_name(function_name: str) -> str:
    """The log group Lambda writes a function's logs to (no custom LoggingConfig.LogGroup)."""
    return f"/aws/lambda/{function_name}"


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Lines:
    """Output of one invocation (or init phase): CloudWatch events, one per line."""

    def __init__(self, *, echo: bool, cold_start: bool = False) -> None:
        self.echo = echo
        self.cold_start = cold_start
        self.events: list[dict[str, Any]] = []
        self._partial: dict[int, str] = {}  # per writer stream: text after its last newline
        self._lock = threading.Lock()
        self.closed = False

    def write(self, text: str, *, source: int = 0) -> None:
        """Text as written to a stream: complete lines become events, the rest waits."""
        with self._lock:
            if self.closed:
                return
            pending = self._partial.pop(source, "") + text
            *lines, rest = pending.split("\n")
            stamp = _now_ms()
            self.events.extend({"timestamp": stamp, "message": line} for line in lines)
            if rest:
                self._partial[source] = rest

    def add(self, message: str) -> None:
        """One event (it may span lines, like the runtime's error report)."""
        with self._lock:
            if not self.closed:
                self.events.append({"timestamp": _now_ms(), "message": message})

    def close(self) -> list[dict[str, Any]]:
        with self._lock:
            stamp = _now_ms()
            self.events.extend({"timestamp": stamp, "message": rest} for rest in self._partial.values())
            self._partial.clear()
            self.closed = True
            return list(self.events)


@dataclasses.dataclass
class _LoggerState:
    """What one execution environment's Powertools logger holds (per formatter)."""

    formats: dict[Any, dict[str, Any]] = dataclasses.field(default_factory=dict)
    thread_keys: dict[str, Any] = dataclasses.field(default_factory=dict)

    def copy(self) -> _LoggerState:
        return _LoggerState({f: dict(d) for f, d in self.formats.items()}, dict(self.thread_keys))


@dataclasses.dataclass
class _Init:
    lines: _Lines
    started_ms: int
    duration_ms: float
    runtime: str


class _ConsoleProxy:
    """``sys.stdout`` / ``sys.stderr`` that sends an invocation's writes to its lines."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        capture = _CAPTURE.get()
        if capture is not None:
            capture.write(text, source=id(self))
            # an EMF document is a metric (emf.py), not a line for people: log group only
            if not capture.echo or text.startswith('{"_aws":'):
                return len(text)
        return int(self._stream.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _unwrap(stream: Any) -> Any:
    return stream._stream if isinstance(stream, _ConsoleProxy) else stream


class _Patches:
    """Process-wide patches (reference counted: several runtimes may be installed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._undo: contextlib.ExitStack | None = None
        self._console: set[int] = set()

    def is_console(self, stream: Any) -> bool:
        return (
            isinstance(stream, _ConsoleProxy)
            or id(stream) in self._console
            or stream is sys.stdout
            or stream is sys.stderr
            or stream is sys.__stdout__
            or stream is sys.__stderr__
        )

    def install(self) -> None:
        with self._lock:
            self._count += 1
            if self._count > 1:
                return
            undo = contextlib.ExitStack()
            self._console = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s is not None}
            self.ensure_console()
            undo.callback(_restore_streams)
            _patch_stream_handler(undo, self)
            _patch_powertools(undo)
            self._undo = undo

    def ensure_console(self) -> None:
        """``sys.stdout`` / ``sys.stderr`` through the proxy (again, if something swapped them
        since: pytest's capture does, per test)."""
        if not self._count:
            return
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if current is not None and not isinstance(current, _ConsoleProxy):
                setattr(sys, name, _ConsoleProxy(current))

    def uninstall(self) -> None:
        with self._lock:
            if self._count == 0:
                return
            self._count -= 1
            if self._count or self._undo is None:
                return
            self._undo.close()
            self._undo = None
            self._console = set()


def _restore_streams() -> None:
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        while isinstance(current, _ConsoleProxy):  # only ours; a stream swapped in since stays
            current = current._stream
            setattr(sys, name, current)


_PATCHES = _Patches()


def _patch_stream_handler(undo: contextlib.ExitStack, patches: _Patches) -> None:
    original_emit = logging.StreamHandler.emit

    def emit(self: logging.StreamHandler, record: logging.LogRecord) -> None:  # type: ignore[type-arg]
        capture = _CAPTURE.get()
        console = not isinstance(self, logging.FileHandler) and patches.is_console(self.stream)
        if console and getattr(_unwrap(self.stream), "closed", False):
            # A console stream closed under the handler (pytest's capsys closes its buffer at the end
            # of the test in which a layer's logger was made): on Lambda stdout never closes, so
            # the handler writes to the process's console as it is now.
            self.stream = sys.stdout
        if capture is None or not console:
            original_emit(self, record)
            return
        try:
            message = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own contract: report and carry on
            self.handleError(record)
            return
        capture.write(message + self.terminator, source=id(self))
        if capture.echo:
            stream = _unwrap(self.stream)
            self.acquire()
            try:
                stream.write(message + self.terminator)
                self.flush()
            finally:
                self.release()

    logging.StreamHandler.emit = emit  # type: ignore[method-assign]
    undo.callback(setattr, logging.StreamHandler, "emit", original_emit)


def _patch_powertools(undo: contextlib.ExitStack) -> None:
    """Per-environment Powertools logger state (see the module docstring)."""
    try:
        from aws_lambda_powertools.logging import formatter as pt_formatter
        from aws_lambda_powertools.logging import logger as pt_logger
    except ImportError:  # functions that don't use Powertools need none of this
        return
    formatter_cls = pt_formatter.LambdaPowertoolsFormatter

    def get_format(self: Any) -> dict[str, Any]:
        base = self.__dict__.get("log_format")
        state = _LOGGER_STATE.get()
        if state is None or base is None:
            if base is None:
                raise AttributeError("log_format")
            return base  # type: ignore[no-any-return]
        current = state.formats.get(self)
        if current is None:
            current = state.formats[self] = dict(base)
        return current

    def set_format(self: Any, value: dict[str, Any]) -> None:
        state = _LOGGER_STATE.get()
        if state is None or "log_format" not in self.__dict__:
            self.__dict__["log_format"] = value
        else:
            state.formats[self] = value

    formatter_cls.log_format = property(get_format, set_format)
    undo.callback(delattr, formatter_cls, "log_format")

    # What a Logger / formatter is constructed with is every environment's starting point,
    # even when the layer is first imported during one function's cold start.
    for cls in (pt_logger.Logger, formatter_cls):
        original_init = cls.__init__

        cls.__init__ = _detached(original_init)
        undo.callback(setattr, cls, "__init__", original_init)

    original_cold_start = pt_logger._is_cold_start

    def is_cold_start() -> bool:
        capture = _CAPTURE.get()
        return capture.cold_start if capture is not None else original_cold_start()

    pt_logger._is_cold_start = is_cold_start
    undo.callback(setattr, pt_logger, "_is_cold_start", original_cold_start)


def _detached(original_init: Callable[..., None]) -> Callable[..., None]:
    """``__init__`` run outside any environment's logger state (it sets the base)."""

    @functools.wraps(original_init)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        token = _LOGGER_STATE.set(None)
        try:
            original_init(self, *args, **kwargs)
        finally:
            _LOGGER_STATE.reset(token)

    return init


def _thread_keys_var() -> contextvars.ContextVar[dict[str, Any]] | None:
    module = sys.modules.get("aws_lambda_powertools.logging.formatter")
    return getattr(module, "THREAD_LOCAL_KEYS", None)


class FunctionLogs:
    """The Lambda service's log writer for the local runtime (one per ``LambdaRuntime``)."""

    def __init__(self, *, echo: bool = True) -> None:
        self.echo = echo
        self._states: dict[str, _LoggerState] = {}
        self._inits: dict[str, _Init] = {}
        self._lock = threading.Lock()
        self._installed = False
        # Where metrics extracted from EMF log events go (emf.py): (account, region, datums).
        self.emf_sink: Callable[[str, str, list[Any]], None] | None = None

    def install(self) -> None:
        if not self._installed:
            _PATCHES.install()
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            _PATCHES.uninstall()
            self._installed = False
        with self._lock:
            self._states.clear()
            self._inits.clear()

    @contextlib.contextmanager
    def init_phase(self, log_stream_name: str, *, runtime: str) -> Iterator[None]:
        """Module code at a cold start: its output and logger state belong to the new environment."""
        _PATCHES.ensure_console()
        lines = _Lines(echo=self.echo, cold_start=True)
        state = _LoggerState()
        start, started_ms = time.monotonic(), _now_ms()
        capture, logger_state = _CAPTURE.set(lines), _LOGGER_STATE.set(state)
        try:
            yield
        finally:
            _LOGGER_STATE.reset(logger_state)
            _CAPTURE.reset(capture)
        with self._lock:  # a failed init leaves no environment behind, so nothing is kept
            self._states[log_stream_name] = state
            self._inits[log_stream_name] = _Init(lines, started_ms, (time.monotonic() - start) * 1000.0, runtime)

    def invocation(self, context: Any, *, account_id: str, region: str) -> Invocation:
        """Start one invocation's capture; run its handler through ``Invocation.wrap``."""
        stream = str(context.log_stream_name)
        with self._lock:
            init = self._inits.pop(stream, None)
            state = self._states.get(stream, _LoggerState()).copy()
        return Invocation(self, context, account_id=account_id, region=region, state=state, init=init)

    def _save_state(self, stream: str, state: _LoggerState) -> None:
        with self._lock:
            self._states[stream] = state

    def write(self, account_id: str, region: str, group: str, stream: str, events: list[dict[str, Any]]) -> None:
        """PutLogEvents into moto's backend (group and stream created when missing)."""
        if not events:
            return
        from moto.logs.models import logs_backends

        backend = logs_backends[account_id][region]
        with _WRITE_LOCK:  # moto's LogStream.put_log_events appends without a lock
            if group not in backend.groups:
                backend.create_log_group(group, tags={})
            backend.ensure_log_stream(group, stream)
            backend.put_log_events(group, stream, sorted(events, key=lambda e: e["timestamp"]))
        if self.emf_sink is not None:
            from modelgate_emulator import emf

            # CloudWatch Logs extracts embedded-metric-format documents into metrics (emf.py)
            if datums := emf.extract(events):
                self.emf_sink(account_id, region, datums)


_WRITE_LOCK = threading.Lock()


class Invocation:
    """One invocation's log capture: ``wrap`` the handler, then ``finish`` with its outcome."""

    def __init__(
        self, logs: FunctionLogs, context: Any, *, account_id: str, region: str, state: _LoggerState, init: _Init | None
    ) -> None:
        self._logs = logs
        self.context = context
        self.account_id = account_id
        self.region = region
        self.group = log_group_name(context.function_name)
        self.stream = str(context.log_stream_name)
        self.request_id = str(context.aws_request_id)
        self._state = state
        self._init = init
        self._lines = _Lines(echo=logs.echo, cold_start=init is not None)
        self._start_event = {
            "timestamp": _now_ms(),
            "message": f"START RequestId: {self.request_id} Version: {context.function_version}",
        }

    @property
    def cold_start(self) -> bool:
        return self._init is not None

    def wrap(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """The handler, run with this invocation's capture and logger state in its context."""

        def run(event: Any, context: Any) -> Any:
            _PATCHES.ensure_console()
            thread_keys = _thread_keys_var()
            capture, logger_state = _CAPTURE.set(self._lines), _LOGGER_STATE.set(self._state)
            keys_token = thread_keys.set(dict(self._state.thread_keys)) if thread_keys is not None else None
            try:
                return handler(event, context)
            finally:
                if thread_keys is not None and keys_token is not None:
                    self._state.thread_keys = dict(thread_keys.get())
                    thread_keys.reset(keys_token)
                _LOGGER_STATE.reset(logger_state)
                _CAPTURE.reset(capture)

        return run

    def finish(
        self,
        *,
        duration_ms: float,
        error: tuple[str, str, list[str]] | None = None,
        timed_out_after: float | None = None,
    ) -> list[dict[str, Any]]:
        """Close the capture and write INIT_START (cold), START, the output, END and REPORT."""
        events: list[dict[str, Any]] = []
        if self._init is not None:
            events.append(
                {"timestamp": self._init.started_ms, "message": f"INIT_START Runtime Version: {self._init.runtime}"}
            )
            events.extend(self._init.lines.close())
        events.append(self._start_event)
        events.extend(self._lines.close())
        if timed_out_after is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{_now_ms() % 1000:03d}Z"
            events.append(
                {
                    "timestamp": _now_ms(),
                    "message": f"{stamp} {self.request_id} Task timed out after {timed_out_after:.2f} seconds",
                }
            )
        elif error is not None:
            error_type, message, stack = error
            text = [f"[ERROR] {error_type}: {message}"]
            if stack:
                text += ["Traceback (most recent call last):", *(line.rstrip("\n") for line in stack)]
            events.append({"timestamp": _now_ms(), "message": "\n".join(text)})
        events.append({"timestamp": _now_ms(), "message": f"END RequestId: {self.request_id}"})
        report = (
            f"REPORT RequestId: {self.request_id}\tDuration: {duration_ms:.2f} ms\t"
            f"Billed Duration: {max(1, math.ceil(duration_ms))} ms\tMemory Size: {self.context.memory_limit_in_mb} MB"
        )
        if self._init is not None:
            report += f"\tInit Duration: {self._init.duration_ms:.2f} ms"
        events.append({"timestamp": _now_ms(), "message": report})
        self._logs._save_state(self.stream, self._state)
        try:
            self._logs.write(self.account_id, self.region, self.group, self.stream, events)
        except Exception:
            LOG.exception("writing the logs of %s (%s) failed", self.context.function_name, self.request_id)
            raise
        return events


def read_events(
    logs_client: Any, function_name: str, *, start_time_ms: int | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """A function's log events, oldest first (``filter_log_events`` over every stream);
    the last ``limit`` when given. Empty when the group does not exist yet."""
    args: dict[str, Any] = {"logGroupName": log_group_name(function_name)}
    if start_time_ms is not None:
        args["startTime"] = start_time_ms
    events: list[dict[str, Any]] = []
    try:
        for page in logs_client.get_paginator("filter_log_events").paginate(**args):
            events.extend(page.get("events", []))
    except logs_client.exceptions.ResourceNotFoundException:
        return []
    events.sort(key=lambda e: e["timestamp"])  # stable: one stream's order within a millisecond stays
    return events[-limit:] if limit else events
