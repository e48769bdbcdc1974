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
- **Function timeouts**: the invocation ends at the function's ``Timeout``. The Python runtime
  reports it as a function error (``X-Amz-Function-Error: Unhandled``) with errorType
  ``Sandbox.Timedout`` and the message "RequestId: <id> Error: Task timed out after N.NN
  seconds", and logs "<time> <id> Task timed out after N.NN seconds" ("Troubleshoot
  invocation issues in Lambda", its section "Lambda: Function times out during Init phase
  (Sandbox.Timedout)", AWS Lambda Developer Guide,
  https://docs.aws.amazon.com/lambda/latest/dg/troubleshooting-invocation.html#troubleshooting-timeouts; "Configure
  Lambda function timeout", https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html).
  Step Functions' ``lambda:invoke`` takes the errorType as the error name (the local
  interpreter does too); its best-practice page names an unhandled error, a function timeout
  among them, ``Lambda.Unknown`` ("Handle Lambda service exceptions", above), so the ASL
  retries both names. ``Fault.timed_out(after_handler=True)``: the handler ran to its end,
  its side effects happened, and the invocation still reports the timeout (the time ran out
  while it returned: the case a step's write followed by a timeout leaves). Without
  ``after_handler``: the handler never completes, so none of its effects happen, and the
  invocation reports the timeout. The invocation returns at once either way (no waiting for
  a real timeout: the fault is keyed by attempt, never by time), and the local runtime's
  log says "Task timed out" as for a real one (``lambda_runtime.LambdaRuntime._shape``).
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
# The errorType the Lambda runtime reports for a function that ran out of time.
TIMED_OUT = "Sandbox.Timedout"
_ERROR_TYPE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injected failure. Build it with :meth:`throttled`, :meth:`service_error` or :meth:`unhandled`."""

    error: str
    message: str
    status_code: int | None = None  # an Invoke error's HTTP status; None: a function error
    after_handler: bool = False
    timeout: bool = False  # the function ran out of time (error Sandbox.Timedout): see timed_out

    def __post_init__(self) -> None:
        if not _ERROR_TYPE_RE.match(self.error):
            raise ValueError(f"fault error name {self.error!r} is not an exception name ([A-Za-z_][A-Za-z0-9_.]*, 1-128)")
        if self.timeout != (self.error == TIMED_OUT):
            raise ValueError(f"a function timeout is reported as {TIMED_OUT} and only a timeout is: "
                             f"error {self.error!r} with timeout={self.timeout}; use Fault.timed_out()")
        if self.timeout and self.status_code is not None:
            raise ValueError("a function timeout is a function error, not an Invoke error: it has no status code")
        if self.status_code is None and "." in self.error and not self.timeout:
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

    @classmethod
    def timed_out(cls, *, after_handler: bool = False) -> Fault:
        """The invocation reports the function's timeout (``Sandbox.Timedout``): after the handler
        ran to its end (its side effects happened), or without it completing (none happened)."""
        where = "after the handler ran" if after_handler else "before the handler completed"
        return cls(TIMED_OUT, f"the function timed out {where} (injected fault)", None, after_handler, timeout=True)

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
        """The handler with this (function) fault: it raises ``error`` before or after running
        (a timeout raises :class:`InjectedTimeout`, which the runtime reports as its timeout)."""
        if self.transient:
            raise ValueError(f"{self.error} is an Invoke error, not a function error")
        if self.timeout:
            exception_type: type[Exception] = InjectedTimeout
        else:
            exception_type = type(self.error, (Exception,), {"__module__": __name__})
        message = self.message

        def faulty(event: Any, context: Any) -> Any:
            if self.after_handler:
                handler(event, context)
            raise exception_type(message)

        return faulty


class InjectedTimeout(Exception):
    """Raised by a handler wrapped with a :meth:`Fault.timed_out` fault: the runtime reports the
    invocation as timed out (``Sandbox.Timedout``), never as this exception."""


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


# ---------------------------------------------------------------------------- throttled SDK calls
# A call a handler makes through the AWS SDK (boto3) answered with the service's throttling
# error, before it reaches moto. Each service's own shape:
# - DynamoDB (JSON 1.0 protocol): HTTP 400 with ``__type`` ``ThrottlingException`` ("Rate of
#   requests exceeds the allowed throughput") or ``ProvisionedThroughputExceededException``
#   ("Error handling with DynamoDB", Amazon DynamoDB Developer Guide,
#   https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html);
# - Lambda's control plane (REST-JSON): HTTP 429 ``TooManyRequestsException``, header
#   ``x-amzn-ErrorType`` ("UpdateAlias", AWS Lambda API Reference, Errors,
#   https://docs.aws.amazon.com/lambda/latest/api/API_UpdateAlias.html);
# - KMS (JSON 1.1 protocol): HTTP 400 with ``__type`` ``ThrottlingException``, "You have
#   exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
#   ("Throttling AWS KMS requests", AWS KMS Developer Guide,
#   https://docs.aws.amazon.com/kms/latest/developerguide/throttling.html).
# The SDK's retry mode decides what happens next (modelgate.adapters.clients: "standard" with
# ``max_attempts`` 5, which boto3 counts as retries: 6 calls in all; ``total_max_attempts``
# would count the first call too): both codes are in botocore's throttling set, retried after
# rand(0, 1) * min(1 s * 2**i, 20 s) ("Retry behavior", AWS SDKs and Tools Reference Guide,
# https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html; boto3 "Retries",
# https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html). The fault is
# injected at botocore's ``before-send`` event, inside that retry loop, so each retry is a
# new attempt the injector counts.
SDK_THROTTLES: dict[str, tuple[str, int, str]] = {
    # service -> (default error code, HTTP status, message)
    "dynamodb": ("ThrottlingException", 400, "Rate of requests exceeds the allowed throughput. (injected fault)"),
    "lambda": ("TooManyRequestsException", 429, "Rate exceeded (injected fault)"),
    "kms": ("ThrottlingException", 400,
            "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls. (injected fault)"),
}
_DYNAMODB_THROTTLES = ("ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded")


@dataclasses.dataclass(frozen=True)
class SdkThrottle:
    """Throttle ``times`` calls (None: every call) of ``service``'s ``operation`` made by the
    handler of ``function`` (None: by anyone). Build it with :meth:`of`."""

    service: str
    operation: str
    error: str
    status_code: int
    message: str
    function: str | None = None
    times: int | None = None

    @classmethod
    def of(cls, service: str, operation: str, *, times: int | None, function: str | None = None,
           error: str | None = None) -> SdkThrottle:
        if service not in SDK_THROTTLES:
            raise ValueError(f"no throttle shape for service {service!r}: one of {', '.join(sorted(SDK_THROTTLES))}")
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]{1,63}", operation or ""):
            raise ValueError(f"{operation!r} is not an API operation name (UpdateAlias, PutItem, ...)")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
            raise ValueError(f"times counts throttled calls from 1 (None: every call), got {times!r}")
        default, status, message = SDK_THROTTLES[service]
        error = error or default
        if service == "dynamodb" and error not in _DYNAMODB_THROTTLES:
            raise ValueError(f"DynamoDB throttles with one of {', '.join(_DYNAMODB_THROTTLES)}, not {error!r}")
        if service in ("lambda", "kms") and error != default:
            raise ValueError(f"{service} throttles with {default}, not {error!r}")
        return cls(service, operation, error, status, message, function, times)

    def response(self, url: str) -> Any:
        """The HTTP response the service sends for this throttle (botocore parses it as AWS's)."""
        from botocore.awsrequest import AWSResponse

        if self.service == "dynamodb":
            body = {"__type": f"com.amazonaws.dynamodb.v20120810#{self.error}", "message": self.message}
            headers = {"Content-Type": "application/x-amz-json-1.0"}
        elif self.service == "kms":
            body = {"__type": self.error, "message": self.message}
            headers = {"Content-Type": "application/x-amz-json-1.1"}
        else:
            body = {"Type": "User", "message": self.message, "Reason": "CallerRateLimitExceeded"}
            headers = {"Content-Type": "application/json", "x-amzn-ErrorType": self.error}
        data = json.dumps(body).encode()
        headers = {**headers, "x-amzn-RequestId": "injected-throttle", "Content-Length": str(len(data))}
        return AWSResponse(url, self.status_code, headers, _RawBody(data))


class _RawBody:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, *_: Any, **__: Any) -> Any:
        yield self._data


@dataclasses.dataclass(frozen=True)
class FiredSdkThrottle:
    service: str
    operation: str
    function: str | None
    error: str


class SdkFaultInjector:
    """Throttles of SDK calls, armed by tests and answered in moto's place while :meth:`install`
    is in effect (LocalAWS installs it). The calling function is the Lambda sandbox's
    ``AWS_LAMBDA_FUNCTION_NAME`` (the per-invocation environment, ``environ.py``); calls from
    test code have none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: list[list[Any]] = []  # [throttle, throttled so far]
        self._fired: list[FiredSdkThrottle] = []
        self._patch: Any = None

    def inject(self, throttle: SdkThrottle) -> None:
        if not isinstance(throttle, SdkThrottle):
            raise TypeError(f"expected an SdkThrottle, got {type(throttle).__name__}")
        with self._lock:
            self._plans.append([throttle, 0])

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()

    def fired(self) -> list[FiredSdkThrottle]:
        with self._lock:
            return list(self._fired)

    def take(self, service: str, operation: str, function: str | None) -> SdkThrottle | None:
        """The throttle for this call, if one is armed and not used up (counted)."""
        with self._lock:
            for plan in self._plans:
                throttle, used = plan
                if (throttle.service, throttle.operation) != (service, operation):
                    continue
                if throttle.function is not None and throttle.function != function:
                    continue
                if throttle.times is not None and used >= throttle.times:
                    continue
                plan[1] = used + 1
                self._fired.append(FiredSdkThrottle(service, operation, function, throttle.error))
                return throttle
        return None

    def install(self) -> None:
        """Answer throttled calls in moto's place from now on (until :meth:`uninstall`).

        moto answers a boto3 call at botocore's ``before-send`` event (its ``BotocoreStubber``),
        inside the SDK's retry loop; botocore calls every ``before-send`` handler and takes the
        first response, so a throttle has to replace moto's answer there, not precede it (moto
        would still apply the call). Each retry is a new ``before-send``, counted here."""
        import os
        from unittest import mock

        from moto.core.botocore_stubber import BotocoreStubber

        if self._patch is not None:
            raise RuntimeError("the SDK fault injector is installed already")
        original = BotocoreStubber.__call__
        injector = self

        def stubber(stub: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            _, service, operation = (event_name.split(".") + ["", ""])[:3]
            throttle = injector.take(service, operation, os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
            if throttle is not None:
                return throttle.response(getattr(request, "url", ""))
            return original(stub, event_name, request, **kwargs)

        self._patch = mock.patch.object(BotocoreStubber, "__call__", stubber)
        self._patch.start()

    def uninstall(self) -> None:
        if self._patch is not None:
            self._patch.stop()
            self._patch = None
