"""Fault injection for the in-process Lambda runtime: the Nth invocation of a function fails.

Tests arm a :class:`Fault` for a function and the attempts it applies to
(:meth:`FaultInjector.inject`); the runtime asks :meth:`FaultInjector.take` once per
synchronous invocation (``InvocationType=RequestResponse``, how Step Functions'
``lambda:invoke`` calls a function) and the fault, if any, happens there. Attempts are
counted per function from the moment the fault is armed, never by time, so a test is
deterministic on a busy machine. Asynchronous invocations are neither counted nor faulted.

The faults are AWS's own shapes:

- **Invoke errors** (transient): the Lambda service answers the Invoke call with an error
  instead of the function's result. ``TooManyRequestsException`` (HTTP 429, the request
  throughput limit) and ``ServiceException`` (HTTP 500, "The Lambda service encountered an
  internal error") are Invoke's documented errors ("Invoke", AWS Lambda API Reference,
  https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html#API_Invoke_Errors).
  Step Functions reports them as ``Lambda.TooManyRequestsException`` and
  ``Lambda.ServiceException`` and recommends retrying them ("Handle Lambda service
  exceptions", Step Functions best practices,
  https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html;
  "Handling errors in Step Functions workflows",
  https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
  A throttle happens before the function runs. A service error can happen either before
  the function runs or after it ran, when its result is lost on the way back
  (``after_handler=True``): the caller retries a step whose side effects already happened,
  which is what the pipeline's idempotent steps must survive.
- **Function errors** (permanent): the handler raises an unhandled exception, reported
  like the Python runtime reports one (``X-Amz-Function-Error: Unhandled``, errorType =
  the exception's class name); Step Functions takes the errorType as the error name.
  With ``after_handler=True`` the handler runs to the end first and then raises, as a
  crash after the side effects would.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Callable, Collection
from typing import Any

# Invoke's documented transient errors and their HTTP status codes (API_Invoke.html#API_Invoke_Errors).
INVOKE_ERRORS: dict[str, int] = {"TooManyRequestsException": 429, "ServiceException": 500}
_ERROR_TYPE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injected failure. Build it with :meth:`throttled`, :meth:`service_error` or :meth:`unhandled`."""

    error: str
    message: str
    status_code: int | None = None  # an Invoke error's HTTP status; None: a function error
    after_handler: bool = False

    def __post_init__(self) -> None:
        if not _ERROR_TYPE_RE.match(self.error):
            raise ValueError(f"fault error name {self.error!r} is not an exception name ([A-Za-z_][A-Za-z0-9_.]*, 1-128)")
        if self.status_code is None and "." in self.error:
            raise ValueError(f"a function error's type is an exception class name, without dots: {self.error!r}")
        if self.status_code is not None and INVOKE_ERRORS.get(self.error) != self.status_code:
            raise ValueError(
                f"invoke error {self.error!r} with status {self.status_code}: one of "
                + ", ".join(f"{name} ({code})" for name, code in INVOKE_ERRORS.items())
            )
        if self.status_code == INVOKE_ERRORS["TooManyRequestsException"] and self.after_handler:
            raise ValueError("a throttled request never reaches the function: after_handler must be False")

    @property
    def transient(self) -> bool:
        """An Invoke error (the ASL retries it), not the function's own failure."""
        return self.status_code is not None

    @classmethod
    def throttled(cls) -> Fault:
        """Invoke answers 429 TooManyRequestsException; the function does not run."""
        return cls("TooManyRequestsException", "Rate Exceeded. (injected fault)", INVOKE_ERRORS["TooManyRequestsException"])

    @classmethod
    def service_error(cls, *, after_handler: bool = False) -> Fault:
        """Invoke answers 500 ServiceException, before the function runs or after it ran."""
        where = "after the function ran; its result was lost" if after_handler else "before the function ran"
        return cls(
            "ServiceException",
            f"The Lambda service encountered an internal error ({where}; injected fault).",
            INVOKE_ERRORS["ServiceException"],
            after_handler,
        )

    @classmethod
    def unhandled(cls, error_type: str = "InjectedFault", message: str = "injected permanent fault",
                  *, after_handler: bool = False) -> Fault:
        """The handler raises ``error_type`` (an unhandled exception), at its start or after it ran."""
        return cls(error_type, message, None, after_handler)

    def invoke_error(self) -> Exception:
        """The Lambda service's error response for this fault (raised from moto's Invoke)."""
        from moto.core.exceptions import JsonRESTError

        if not self.transient:
            raise ValueError(f"{self.error} is a function error, not an Invoke error")
        error = JsonRESTError(self.error, self.message)
        error.code = self.status_code
        if self.error == "TooManyRequestsException":  # the throttle's documented fields
            error.description = json.dumps({"__type": self.error, "message": self.message, "Type": "User",
                                            "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"})
        return error

    def wrap(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """The handler with this (function) fault: it raises ``error`` before or after running."""
        if self.transient:
            raise ValueError(f"{self.error} is an Invoke error, not a function error")
        exception_type = type(self.error, (Exception,), {"__module__": __name__})
        message = self.message

        def faulty(event: Any, context: Any) -> Any:
            if self.after_handler:
                handler(event, context)
            raise exception_type(message)

        return faulty


@dataclasses.dataclass(frozen=True)
class FiredFault:
    """A fault that happened: which function, which attempt since it was armed, which request."""

    function_name: str
    attempt: int
    fault: Fault
    request_id: str


@dataclasses.dataclass
class _Plan:
    fault: Fault
    base: int  # the function's invocation count when armed: attempt n is invocation base + n
    attempts: frozenset[int]
    from_attempt: int | None


class FaultInjector:
    """Faults by function name and attempt; thread-safe (the pipeline invokes concurrently)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, list[_Plan]] = {}
        self._counts: dict[str, int] = {}
        self._fired: list[FiredFault] = []

    def inject(
        self,
        function_name: str,
        fault: Fault,
        *,
        attempts: Collection[int] = (),
        from_attempt: int | None = None,
    ) -> None:
        """Arm ``fault`` for the given attempts of ``function_name`` (1 = its next invocation),
        and for every attempt from ``from_attempt`` on (a permanent failure)."""
        if not function_name or not isinstance(function_name, str):
            raise ValueError(f"a fault needs a function name, got {function_name!r}")
        if not isinstance(fault, Fault):
            raise TypeError(f"fault must be a Fault, got {type(fault).__name__}")
        bad = [a for a in attempts if not isinstance(a, int) or isinstance(a, bool) or a < 1]
        if bad:
            raise ValueError(f"attempts are counted from 1 (the next invocation): {bad} for {function_name}")
        if from_attempt is not None and (not isinstance(from_attempt, int) or from_attempt < 1):
            raise ValueError(f"from_attempt is counted from 1 (the next invocation), got {from_attempt!r}")
        if not attempts and from_attempt is None:
            raise ValueError(f"fault for {function_name}: give attempts, from_attempt, or both")
        with self._lock:
            self._plans.setdefault(function_name, []).append(
                _Plan(fault, self._counts.get(function_name, 0), frozenset(attempts), from_attempt)
            )

    def clear(self, function_name: str | None = None) -> None:
        """Disarm every fault (of one function, or all); what fired is kept."""
        with self._lock:
            if function_name is None:
                self._plans.clear()
            else:
                self._plans.pop(function_name, None)

    def take(self, function_name: str, request_id: str) -> Fault | None:
        """Count one synchronous invocation of ``function_name``; the fault for it, if armed.

        When two armed faults cover the same attempt, the one armed first applies."""
        with self._lock:
            count = self._counts.get(function_name, 0) + 1
            self._counts[function_name] = count
            for plan in self._plans.get(function_name, ()):
                attempt = count - plan.base
                if attempt in plan.attempts or (plan.from_attempt is not None and attempt >= plan.from_attempt):
                    self._fired.append(FiredFault(function_name, attempt, plan.fault, request_id))
                    return plan.fault
        return None

    def fired(self, function_name: str | None = None) -> list[FiredFault]:
        """The faults that happened, oldest first (of one function, or all)."""
        with self._lock:
            return [f for f in self._fired if function_name is None or f.function_name == function_name]

    def invocations(self, function_name: str) -> int:
        """Synchronous invocations of ``function_name`` counted so far."""
        with self._lock:
            return self._counts.get(function_name, 0)
