"""In-process Lambda runtime: moto's Invoke runs the function's real handler.

moto 5.2.1 behaviour this module covers (each has a test in tests/unit/local):
- ``mock_aws(config={"lambda": {"use_docker": False}})`` makes ``LambdaSimpleBackend.invoke``
  echo its input; here Invoke imports and runs ``lambda_handler`` from the function's code
  directory with the function's environment, a Lambda context and the Python runtime's
  error shape (``X-Amz-Function-Error: Unhandled``, errorType/errorMessage/requestId/
  stackTrace). Step Functions takes ``errorType`` as the error name, so the ASL catches
  domain errors (``GateFailed``) by name.
- ``LambdaResponse.invoke`` reads a lower-case ``qualifier`` query parameter; botocore
  sends ``Qualifier``. Patched, so ``Invoke(Qualifier="live")`` reaches the alias.
- aliases store RoutingConfig but Invoke ignores it; here an alias's
  ``AdditionalVersionWeights`` route each invocation at random by weight, as AWS does
  (seeded per alias when the runtime has a routing seed, so a run can be repeated), and
  the response carries ``X-Amz-Executed-Version``.
- no AWS/Lambda metrics are emitted; here every invocation calls the metrics sink
  (``cloudwatch.LambdaMetricsPublisher`` in ``LocalAWS``: AWS's dimension sets, published
  late), telling it whether the call went through a weighted alias (``weighted_alias``:
  the only calls AWS documents the ``ExecutedVersion`` dimension for, see
  ``cloudwatch.lambda_datums``).
- ``LambdaFunction._get_layers_data`` looks layers up in the Docker backend even when the
  simple backend is in use, so a function with Layers can't be created; patched to use the
  backend moto itself selected.

Fault injection (``LambdaRuntime.faults``, see ``faults.py``): a test can make the Nth
synchronous invocation of a function fail the way AWS fails it: Invoke answers
TooManyRequestsException (429) or ServiceException (500, before the handler ran or after it
ran and its result was lost), the handler raises an unhandled exception, or the invocation
times out (``Sandbox.Timedout``, after the handler ran or without it completing).

Design choices (documented where they differ from AWS):
- each (function, version, configuration) gets its own module instance, loaded from its
  code directory under a unique module name (every function names its module ``app``):
  the first invocation is a cold start, later ones are warm. Concurrent invocations of
  one version share that instance (AWS would start more sandboxes).
- the function's environment applies only to its invocation: see ``environ.py``.
- what the handler writes (print, logging, Powertools) lands in its CloudWatch log group
  with START / END / REPORT lines, and the shared Powertools logger's keys are kept per
  execution environment: see ``logs.py``.
- the function's ``Timeout`` is enforced in handler time (``handler_time.py``): the CPU time
  of the handler's threads plus the time it deliberately waits (``time.sleep``, a
  synchronous invocation of another function), not real time, so a busy machine or other
  handlers holding the GIL do not make it time out; a real-time hang guard (20 x Timeout,
  at least 120 s) still ends a handler blocked for ever. The Step Functions time factor
  does not apply: handlers do real work at real speed. The ``Duration`` in the REPORT line
  and the metric, and ``context.get_remaining_time_in_millis()``, read the same handler
  time. The runtime's clock stands still while a handler runs (``work_in_progress``): real
  work costs no nominal time. A timed-out handler thread can't be killed; it is left to
  finish in the background and its result is discarded (the clock moves on when its caller
  gives up).
- ``InvocationType=Event`` runs the handler in a background thread and returns 202.
  A function error is retried twice, after 1 and then 2 minutes (scaled by
  ``async_retry_delays``), then the event goes to the function's dead-letter queue if it
  has one: the original payload as the message body, attributes RequestID, ErrorCode and
  ErrorMessage (truncated to 1 KB), as in "How Lambda handles errors and retries with
  asynchronous invocation" and "Adding a dead-letter queue" (AWS Lambda Developer Guide,
  https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html and
  .../invocation-async-retain-records.html#invocation-dlq). ErrorCode is the Invoke's
  HTTP status, 200 for a function error (the error is in the response, not the status).
  moto 5.2.1 drops ``DeadLetterConfig`` from CreateFunction, so the deployer registers it
  here (:meth:`LambdaRuntime.set_dead_letter_target`). Only SQS targets are supported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import hashlib
import importlib.util
import io
import json
import logging
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol
from unittest import mock

from modelgate_emulator import environ, handler_time, iam
from modelgate_emulator.faults import Fault, FaultInjector, InjectedTimeout
from modelgate_emulator.logs import FunctionLogs, log_group_name

LOG = logging.getLogger(__name__)

_ARN_RE = re.compile(r"^arn:[^:]+:lambda:(?P<region>[^:]+):(?P<account>\d+):function:(?P<name>[^:]+)(?::(?P<qualifier>[^:]+))?$")
_RUNTIME_FILE = str(Path(__file__).resolve())
# AWS retries a failed asynchronous invocation twice, 1 and then 2 minutes apart.
ASYNC_RETRY_DELAYS_SECONDS = (60.0, 120.0)
DLQ_ERROR_MESSAGE_LIMIT = 1024
_SQS_ARN_RE = re.compile(r"^arn:[^:]+:sqs:(?P<region>[^:]+):(?P<account>\d+):(?P<name>[^:]+)$")


class LambdaInvokeError(Exception):
    """A function error returned by Invoke (``FunctionError`` set), as the caller sees it."""

    def __init__(self, error_type: str, error_message: str, payload: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message
        self.payload = dict(payload or {})


class MetricsSink(Protocol):
    def __call__(
        self,
        *,
        account_id: str,
        region: str,
        function_name: str,
        resource: str | None,
        executed_version: str,
        duration_ms: float,
        error: bool,
        timestamp: datetime | None = None,
        weighted_alias: bool = False,
    ) -> None: ...


@dataclasses.dataclass(frozen=True)
class FunctionCode:
    """Where a deployed function's code lives locally (what SAM would build and zip)."""

    code_dir: Path
    # CodeSha256 of the placeholder zip the deployer uploaded: if moto reports another
    # digest, the code was replaced through the API and that zip is run instead.
    placeholder_sha256: str | None = None


@dataclasses.dataclass(frozen=True)
class InvocationRecord:
    """One invocation, kept per function for tests and debugging."""

    request_id: str
    function_name: str
    qualifier: str | None
    executed_version: str
    invocation_type: str
    started_at: datetime
    duration_ms: float
    cold_start: bool
    error_type: str | None = None
    error_message: str | None = None


@dataclasses.dataclass(frozen=True)
class InvokeResult:
    status_code: int
    payload: bytes
    executed_version: str
    request_id: str
    function_error: str | None = None


@dataclasses.dataclass(frozen=True)
class _Target:
    account_id: str
    region: str
    function_name: str
    qualifier: str | None
    executed_version: str
    invoked_arn: str
    resource: str | None
    config: Any  # moto LambdaFunction of the executed version
    weighted_alias: bool = False  # invoked through an alias routing to an additional version


class LambdaContext:
    """The context object the Python runtime passes to a handler."""

    def __init__(
        self,
        *,
        function_name: str,
        function_version: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        aws_request_id: str,
        log_group_name: str,
        log_stream_name: str,
        deadline: float,
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = aws_request_id
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity = None
        self.client_context = None
        self._deadline = deadline
        self._handler_time: Callable[[], float] | None = None
        self._timeout = 0.0

    def count_handler_time(self, handler_time: Callable[[], float], timeout: float) -> None:
        """The remaining time is ``timeout`` less the invocation's handler time (handler_time.py)."""
        self._handler_time, self._timeout = handler_time, float(timeout)

    def get_remaining_time_in_millis(self) -> int:
        if self._handler_time is not None:
            return max(0, int((self._timeout - self._handler_time()) * 1000))
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext({self.function_name}:{self.function_version} {self.aws_request_id})"


class WeightedRouter:
    """Routes an invocation of a weighted alias to one of its versions, at random by weight.

    AWS: "Lambda uses a simple probabilistic model to distribute the traffic between the
    two function versions. At low traffic levels, you might see a high variance between
    the configured and actual percentage of traffic on each version" ("Implement Lambda
    canary deployments using a weighted alias",
    https://docs.aws.amazon.com/lambda/latest/dg/configuring-alias-routing.html). So each
    request is an independent draw, never a round robin: a 10 % canary sees 10 % only on
    average. ``seed`` (``LocalAWS(seed=...)``) gives every alias its own generator seeded
    from (seed, alias ARN), so the same invocation order to an alias repeats the same
    versions whatever other aliases do; ``None`` draws from fresh entropy.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._rngs: dict[str, random.Random] = {}

    def pick(self, alias_arn: str, primary: str, additional: Mapping[str, float]) -> str:
        extra = {v: float(w) for v, w in additional.items() if v != primary}
        if not extra:
            return primary
        for version, weight in extra.items():
            if not 0.0 <= weight <= 1.0:
                raise ValueError(f"alias {alias_arn}: weight {weight} of version {version} is outside [0.0, 1.0]")
        if sum(extra.values()) > 1.0 + 1e-9:
            raise ValueError(f"alias {alias_arn}: additional version weights exceed 1.0")
        with self._lock:
            rng = self._rngs.get(alias_arn)
            if rng is None:
                rng = self._rngs[alias_arn] = random.Random(None if self._seed is None else f"{self._seed}:{alias_arn}")
            draw = rng.random()
        for version, weight in sorted(extra.items()):
            if draw < weight:
                return version
            draw -= weight
        return primary


@dataclasses.dataclass
class _Environment:
    """A warm execution environment: one loaded handler module."""

    handler: Callable[[Any, Any], Any]
    module: ModuleType
    log_stream_name: str
    invocations: int = 0


class _HandlerError(Exception):
    """The runtime itself failed to start the handler (import, handler lookup)."""

    def __init__(self, error_type: str, message: str, stack: list[str]) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.stack = stack


class LambdaRuntime:
    """Runs Lambda handlers in process for moto's Lambda backend.

    ``install()`` patches moto (see the module docstring); ``uninstall()`` restores it.
    The deployer registers each function's code directory and each layer's directory.
    """

    def __init__(
        self,
        *,
        metrics_sink: MetricsSink | None = None,
        history_size: int = 10_000,
        async_retry_delays: tuple[float, ...] = ASYNC_RETRY_DELAYS_SECONDS,
        routing_seed: int | None = None,
        work_in_progress: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
        echo_logs: bool = True,
    ) -> None:
        if any(delay < 0 for delay in async_retry_delays):
            raise ValueError(f"async_retry_delays must be >= 0 seconds, got {async_retry_delays}")
        self._metrics_sink = metrics_sink
        self.logs = FunctionLogs(echo=echo_logs)  # each function's output in its CloudWatch log group (logs.py)
        self._async_retry_delays = tuple(async_retry_delays)
        self._dead_letters: dict[tuple[str, str, str], str] = {}
        self._stopping = threading.Event()
        # Entered while a handler runs: the runtime's clock stands still during real work.
        self._work_in_progress = work_in_progress or contextlib.nullcontext
        self._router = WeightedRouter(routing_seed)
        self._code: dict[tuple[str, str, str], FunctionCode] = {}
        # Every code a function was deployed with, by its CodeSha256: a published version keeps
        # the code it was published from after a redeploy changed $LATEST's.
        self._code_by_digest: dict[tuple[str, str, str, str], Path] = {}
        self._layers: dict[str, Path] = {}
        self._environments: dict[tuple[Any, ...], _Environment] = {}
        self._env_lock = threading.Lock()
        self._load_lock = threading.RLock()
        self._history: dict[str, deque[InvocationRecord]] = {}
        self._history_size = history_size
        self._history_lock = threading.Lock()
        self._async_threads: set[threading.Thread] = set()
        self._async_lock = threading.Lock()
        self._patches: contextlib.ExitStack | None = None
        self._extracted: dict[str, Path] = {}
        self._added_paths: list[str] = []
        # Injected failures by function and attempt (faults.py): tests arm them, invoke applies them.
        self.faults = FaultInjector()

    # ------------------------------------------------------------------ registration
    def register_function(self, *, account_id: str, region: str, function_name: str, code: FunctionCode) -> None:
        self._code[(account_id, region, function_name)] = code
        if code.placeholder_sha256 is not None:
            self._code_by_digest[(account_id, region, function_name, code.placeholder_sha256)] = code.code_dir

    def register_layer(self, layer_version_arn: str, content_dir: Path) -> None:
        self._layers[layer_version_arn] = content_dir

    def set_dead_letter_target(
        self, *, account_id: str, region: str, function_name: str, target_arn: str | None
    ) -> None:
        """The function's ``DeadLetterConfig.TargetArn`` (an SQS queue ARN), or None to remove it."""
        key = (account_id, region, function_name)
        if not target_arn:
            self._dead_letters.pop(key, None)
            return
        if not _SQS_ARN_RE.match(target_arn):
            raise ValueError(
                f"{function_name}: dead-letter target {target_arn!r} is not an SQS queue ARN "
                "(the local runtime delivers dead letters to SQS only)"
            )
        self._dead_letters[key] = target_arn

    # ------------------------------------------------------------------ patching
    def install(self) -> None:
        """Patch moto's Lambda invoke path; idempotent per instance."""
        if self._patches is not None:
            return
        self._stopping.clear()
        from moto.awslambda.models import LambdaFunction
        from moto.awslambda.responses import LambdaResponse
        from moto.awslambda_simple.models import LambdaSimpleBackend

        runtime = self
        original_response_invoke = LambdaResponse.invoke

        def response_invoke(response: Any) -> Any:
            # moto reads "qualifier"; botocore sends "Qualifier".
            qualifier = response.querystring.get("Qualifier")
            if qualifier and "qualifier" not in response.querystring:
                response.querystring["qualifier"] = qualifier
            return original_response_invoke(response)

        def backend_invoke(backend: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: dict[str, Any]) -> bytes:
            result = runtime.invoke(
                account_id=backend.account_id,
                region=backend.region_name,
                function=function_name,
                qualifier=qualifier,
                payload=body,
                invocation_type=_header(headers, "X-Amz-Invocation-Type") or "RequestResponse",
            )
            response_headers["X-Amz-Executed-Version"] = result.executed_version
            if result.function_error:
                response_headers["X-Amz-Function-Error"] = result.function_error
            response_headers["Content-Length"] = str(len(result.payload))
            return result.payload

        def get_layers_data(function: Any, layer_version_arns: list[str]) -> list[dict[str, Any]]:
            from moto.awslambda.exceptions import UnknownLayerVersionException
            from moto.awslambda.utils import get_backend

            backend = get_backend(function.account_id, function.region)
            versions = [backend.layers_versions_by_arn(arn) for arn in layer_version_arns]
            found = [lv for lv in versions if lv is not None]
            if len(found) != len(versions):
                raise UnknownLayerVersionException(layer_version_arns)
            return [{"Arn": lv.arn, "CodeSize": lv.code_size} for lv in found]

        stack = contextlib.ExitStack()
        stack.enter_context(mock.patch.object(LambdaResponse, "invoke", response_invoke))
        stack.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke", backend_invoke))
        stack.enter_context(mock.patch.object(LambdaFunction, "_get_layers_data", get_layers_data))
        environ.install()
        stack.callback(environ.uninstall)
        handler_time.install()
        stack.callback(handler_time.uninstall)
        self.logs.install()
        stack.callback(self.logs.uninstall)
        self._patches = stack

    def uninstall(self) -> None:
        """Restore moto, wait briefly for async invocations, forget loaded modules."""
        self._stopping.set()  # pending async retries give up now
        self.wait_for_async(timeout=5.0)
        if self._patches is not None:
            self._patches.close()
            self._patches = None
        with self._env_lock:
            for env in self._environments.values():
                sys.modules.pop(env.module.__name__, None)
            self._environments.clear()
        added = set(self._added_paths)
        _set_sys_path([p for p in sys.path if p not in added])
        self._added_paths.clear()
        for directory in self._extracted.values():
            shutil.rmtree(directory, ignore_errors=True)
        self._extracted.clear()

    # ------------------------------------------------------------------ invoke
    def invoke(
        self,
        *,
        account_id: str,
        region: str,
        function: str,
        qualifier: str | None,
        payload: bytes | str | None,
        invocation_type: str = "RequestResponse",
    ) -> InvokeResult:
        """Invoke like the Lambda service: resolve the version, run the handler, shape errors."""
        target = self._resolve(account_id, region, function, qualifier)
        body = payload.encode() if isinstance(payload, str) else (payload or b"")
        event = _parse_event(body)
        if invocation_type == "DryRun":
            return InvokeResult(204, b"", target.executed_version, str(uuid.uuid4()))
        if invocation_type == "Event":
            request_id = str(uuid.uuid4())
            thread = threading.Thread(
                target=self._run_async,
                args=(target, event, body, request_id),
                name=f"lambda-event:{target.function_name}",
                daemon=True,
            )
            with self._async_lock:
                self._async_threads.add(thread)
            thread.start()
            return InvokeResult(202, b"", target.executed_version, request_id)
        if invocation_type != "RequestResponse":
            from moto.awslambda.exceptions import InvalidParameterValueException

            raise InvalidParameterValueException(f"Unsupported InvocationType {invocation_type!r}")
        request_id = str(uuid.uuid4())
        fault = self.faults.take(target.function_name, request_id)
        if fault is None:
            return self._execute(target, event, request_id, invocation_type)
        if not fault.transient:
            return self._execute(target, event, request_id, invocation_type, fault)
        LOG.warning("injected fault: Invoke of %s answers %s", target.invoked_arn, fault.error)
        if fault.after_handler:
            self._execute(target, event, request_id, invocation_type)  # it ran; its result is lost
        raise fault.invoke_error()

    def invoke_async(self, function_arn: str, payload: bytes) -> None:
        """Asynchronous invoke by ARN (EventBridge and other event sources deliver this way)."""
        match = _ARN_RE.match(function_arn)
        if not match:
            raise ValueError(f"not a Lambda function ARN: {function_arn}")
        self.invoke(
            account_id=match["account"],
            region=match["region"],
            function=function_arn,
            qualifier=None,
            payload=payload,
            invocation_type="Event",
        )

    def wait_for_async(self, timeout: float = 10.0) -> bool:
        """Wait until no asynchronous invocation is running; True if all finished."""
        deadline = time.monotonic() + timeout
        while True:
            with self._async_lock:
                threads = [t for t in self._async_threads if t.is_alive()]
                self._async_threads = set(threads)
            if not threads:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            threads[0].join(min(remaining, 0.1))

    def invocations(self, function_name: str) -> list[InvocationRecord]:
        """Invocations of one function, oldest first (the last ``history_size``)."""
        with self._history_lock:
            return list(self._history.get(function_name, ()))

    # ------------------------------------------------------------------ internals
    def _resolve(self, account_id: str, region: str, function: str, qualifier: str | None) -> _Target:
        from moto.awslambda.exceptions import (
            InvalidParameterValueException,
            UnknownFunctionException,
        )
        from moto.awslambda.utils import get_backend

        name, embedded = _split_function_ref(function)
        match = _ARN_RE.match(function)
        if match:
            account_id, region = match["account"], match["region"]
        if embedded and qualifier and embedded != qualifier:
            raise InvalidParameterValueException("The derived qualifier from the function name does not match the specified qualifier.")
        qualifier = embedded or qualifier
        backend = get_backend(account_id, region)
        latest = backend.get_function(name)  # raises ResourceNotFound for an unknown function
        base_arn = latest.function_arn
        resource = f"{name}:{qualifier}" if qualifier else None
        invoked_arn = f"{base_arn}:{qualifier}" if qualifier else base_arn
        if qualifier is None or qualifier == "$LATEST":
            return _Target(account_id, region, name, qualifier, "$LATEST", invoked_arn, resource, latest)
        if qualifier.isdigit():
            version_config = backend._lambdas._get_version(name, qualifier)
            if version_config is None:
                raise UnknownFunctionException(invoked_arn)
            return _Target(account_id, region, name, qualifier, qualifier, invoked_arn, resource, version_config)
        alias = backend.get_alias(qualifier, name)  # raises ResourceNotFound for an unknown alias
        routing: Any = alias.routing_config  # the RoutingConfig dict as Create/UpdateAlias sent it
        weights = (routing.get("AdditionalVersionWeights") if isinstance(routing, dict) else None) or {}
        version = self._router.pick(alias.arn, str(alias.function_version), weights)
        config = latest if version == "$LATEST" else backend._lambdas._get_version(name, version)
        if config is None:
            raise UnknownFunctionException(f"{base_arn}:{version}")
        weighted = any(v != str(alias.function_version) for v in weights)
        return _Target(account_id, region, name, qualifier, version, invoked_arn, resource, config, weighted)

    def _run_async(self, target: _Target, event: Any, body: bytes, request_id: str) -> None:
        """One asynchronous event: the first attempt, AWS's two retries, then the dead-letter queue."""
        attempts = 1 + len(self._async_retry_delays)
        for attempt in range(attempts):
            if attempt and self._stopping.wait(self._async_retry_delays[attempt - 1]):
                LOG.error(
                    "asynchronous invocation %s of %s dropped: the runtime stopped before its retry",
                    request_id,
                    target.invoked_arn,
                )
                return
            try:
                result = self._execute(target, event, request_id, "Event")
            except Exception:
                LOG.exception("asynchronous invocation of %s failed in the runtime", target.invoked_arn)
                raise
            if not result.function_error:
                return
            LOG.warning(
                "asynchronous invocation %s of %s failed (attempt %d of %d): %s",
                request_id,
                target.invoked_arn,
                attempt + 1,
                attempts,
                result.payload.decode("utf-8", "replace"),
            )
        dead_letter_arn = self._dead_letters.get((target.account_id, target.region, target.function_name))
        if dead_letter_arn is None:
            LOG.error(
                "asynchronous invocation %s of %s DROPPED after %d attempts (no dead-letter queue)",
                request_id,
                target.invoked_arn,
                attempts,
            )
            return
        try:
            _send_dead_letter(dead_letter_arn, body, request_id, result.payload)
        except Exception:
            # AWS counts this in the DeadLetterErrors metric and deletes the event.
            LOG.exception(
                "asynchronous invocation %s of %s: dead-letter queue %s unreachable",
                request_id,
                target.invoked_arn,
                dead_letter_arn,
            )
            return
        LOG.error(
            "asynchronous invocation %s of %s failed %d times: sent to %s",
            request_id,
            target.invoked_arn,
            attempts,
            dead_letter_arn,
        )

    def _execute(
        self, target: _Target, event: Any, request_id: str, invocation_type: str, fault: Fault | None = None
    ) -> InvokeResult:
        started_at = datetime.now(timezone.utc)
        start = time.monotonic()
        cold_start = False
        duration_ms: float | None = None  # the handler's time (handler_time.py), once it ran
        try:
            with self._work_in_progress():
                env, cold_start = self._environment_for(target)
                body, error, duration_ms = self._call(target, env, event, request_id, start, fault)
        except _HandlerError as exc:  # the runtime could not load the handler
            body, error = b"", (exc.error_type, str(exc), exc.stack)
        if error is not None:
            error_type, error_message, stack = error
            body = _dumps({"errorMessage": error_message, "errorType": error_type, "requestId": request_id, "stackTrace": stack})
        result = InvokeResult(200, body, target.executed_version, request_id, "Unhandled" if error else None)
        if duration_ms is None:  # no handler ran: the (failed) init's real time
            duration_ms = (time.monotonic() - start) * 1000.0
        self._record(
            InvocationRecord(
                request_id=request_id,
                function_name=target.function_name,
                qualifier=target.qualifier,
                executed_version=target.executed_version,
                invocation_type=invocation_type,
                started_at=started_at,
                duration_ms=duration_ms,
                cold_start=cold_start,
                error_type=error[0] if error else None,
                error_message=error[1] if error else None,
            )
        )
        if self._metrics_sink is not None:
            try:
                self._metrics_sink(
                    account_id=target.account_id,
                    region=target.region,
                    function_name=target.function_name,
                    resource=target.resource,
                    executed_version=target.executed_version,
                    duration_ms=duration_ms,
                    error=error is not None,
                    timestamp=started_at,
                    weighted_alias=target.weighted_alias,
                )
            except Exception:
                LOG.exception("emitting Lambda metrics for %s failed", target.invoked_arn)
                raise
        return result

    def _call(
        self, target: _Target, env: _Environment, event: Any, request_id: str, start: float, fault: Fault | None = None
    ) -> tuple[bytes, tuple[str, str, list[str]] | None, float]:
        """Run the handler (with an injected function error, if any); (JSON result, None) or
        (b"", (errorType, errorMessage, stackTrace)), and its duration in handler milliseconds."""
        timeout = float(target.config.timeout or 3)
        context = LambdaContext(
            function_name=target.function_name,
            function_version=target.executed_version,
            invoked_function_arn=target.invoked_arn,
            memory_limit_in_mb=int(target.config.memory_size),
            aws_request_id=request_id,
            log_group_name=log_group_name(target.function_name),
            log_stream_name=env.log_stream_name,
            deadline=start + timeout,
        )
        variables = self._variables(target, env.log_stream_name)
        capture = self.logs.invocation(context, account_id=target.account_id, region=target.region)
        principal = iam.function_principal(target.config.role, target.function_name)
        outcome = _run_with_timeout(
            capture.wrap(env.handler if fault is None else fault.wrap(env.handler)),
            event,
            context,
            variables,
            timeout,
            f"lambda:{target.function_name}:{request_id}",
            principal,
        )
        result = self._shape(target, outcome, request_id, timeout)
        duration_ms = outcome.handler_seconds * 1000.0
        capture.finish(
            duration_ms=duration_ms,
            error=result[1],
            timed_out_after=timeout if outcome.timed_out else None,
        )
        return result[0], result[1], duration_ms

    @staticmethod
    def _shape(
        target: _Target, outcome: _Outcome, request_id: str, timeout: float
    ) -> tuple[bytes, tuple[str, str, list[str]] | None]:
        if isinstance(outcome.error, InjectedTimeout):
            # An injected timeout (faults.Fault.timed_out) is the function's timeout from here on:
            # the same error, and the log's "Task timed out" line (the caller reads outcome.timed_out).
            # Its Duration is the Timeout, as a real timeout's is.
            outcome.error, outcome.timed_out, outcome.handler_seconds = None, True, timeout
        if outcome.timed_out:
            LOG.warning("%s timed out after %.2f s; its thread is left to finish", target.invoked_arn, timeout)
            return b"", ("Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds", [])
        if outcome.error is not None:
            raised = outcome.error
            error_type = "Runtime.ExitError" if isinstance(raised, SystemExit) else type(raised).__name__
            return b"", (error_type, str(raised), _stack(raised))
        try:
            return _dumps(outcome.value), None
        except (TypeError, ValueError) as exc:
            return b"", ("Runtime.MarshalError", f"Unable to marshal response: {exc}", [])

    def _variables(self, target: _Target, log_stream_name: str) -> dict[str, str]:
        """The function's environment plus the variables the Lambda runtime sets."""
        config = target.config
        code = self._code_dir(target)
        variables = {str(k): str(v) for k, v in (config.environment_vars or {}).items()}
        trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
        variables.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": target.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": target.executed_version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
                "AWS_LAMBDA_LOG_GROUP_NAME": log_group_name(target.function_name),
                "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name,
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_REGION": target.region,
                "AWS_DEFAULT_REGION": target.region,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.run_time or 'python3.12'}",
                "LAMBDA_TASK_ROOT": str(code),
                "_HANDLER": str(config.handler),
                "_X_AMZN_TRACE_ID": trace,
            }
        )
        return variables

    def _code_dir(self, target: _Target) -> Path:
        config = target.config
        registered = self._code.get((target.account_id, target.region, target.function_name))
        digest = getattr(config, "code_sha_256", None)
        deployed = self._code_by_digest.get((target.account_id, target.region, target.function_name, str(digest)))
        if deployed is not None:
            return deployed
        if registered is not None and registered.placeholder_sha256 is None:
            return registered.code_dir
        code_bytes = getattr(config, "code_bytes", None)
        if not code_bytes:
            raise _HandlerError(
                "Runtime.ImportModuleError",
                f"no local code for function {target.function_name}: it was not deployed from a template and has no zip",
                [],
            )
        return self._extract(str(digest), code_bytes)

    def _extract(self, digest: str, code_bytes: bytes) -> Path:
        with self._load_lock:
            if digest not in self._extracted:
                directory = Path(tempfile.mkdtemp(prefix="modelgate-lambda-"))
                with zipfile.ZipFile(io.BytesIO(code_bytes)) as archive:
                    archive.extractall(directory)
                self._extracted[digest] = directory
            return self._extracted[digest]

    def _layer_dirs(self, target: _Target) -> list[Path]:
        dirs = []
        for layer in target.config.layers or []:
            arn = layer["Arn"] if isinstance(layer, dict) else str(layer)
            directory = self._layers.get(arn)
            if directory is None:
                LOG.warning("layer %s of %s has no local content; its modules are not importable", arn, target.function_name)
                continue
            python_dir = directory / "python"  # a built layer keeps Python packages under python/
            dirs.append(python_dir if python_dir.is_dir() else directory)
        return dirs

    def _environment_for(self, target: _Target) -> tuple[_Environment, bool]:
        config = target.config
        code_dir = self._code_dir(target)
        layer_dirs = self._layer_dirs(target)
        fingerprint = hashlib.sha256(
            json.dumps(
                [str(code_dir), config.handler, sorted((config.environment_vars or {}).items()), [str(d) for d in layer_dirs]],
                default=str,
            ).encode()
        ).hexdigest()[:12]
        key = (target.account_id, target.region, target.function_name, target.executed_version, fingerprint)
        warm = self._warm(key)
        if warm is not None:
            return warm, False
        with self._load_lock:
            warm = self._warm(key)
            if warm is not None:
                return warm, False
            new_dirs = [str(d) for d in layer_dirs if str(d) not in sys.path]
            if new_dirs:
                _set_sys_path([*sys.path, *new_dirs])
                self._added_paths.extend(new_dirs)
            safe = re.sub(r"\W", "_", f"{target.function_name}_{target.executed_version}")
            module_name = f"_modelgate_lambda_{safe}_{fingerprint}"
            stream = f"{datetime.now(timezone.utc):%Y/%m/%d}/[{target.executed_version}]{uuid.uuid4().hex}"
            # Module-level code runs at cold start with the function's environment, as on AWS.
            principal = iam.function_principal(target.config.role, target.function_name)
            with (
                environ.overlay(self._variables(target, stream)),
                iam.acting_as(principal),
                self.logs.init_phase(stream, runtime=str(config.run_time)),
            ):
                module, handler = _load_handler(code_dir, str(config.handler), module_name)
            env = _Environment(handler=handler, module=module, log_stream_name=stream, invocations=1)
            with self._env_lock:
                self._environments[key] = env
            return env, True

    def _warm(self, key: tuple[Any, ...]) -> _Environment | None:
        with self._env_lock:
            env = self._environments.get(key)
            if env is not None:
                env.invocations += 1
            return env

    def _record(self, record: InvocationRecord) -> None:
        with self._history_lock:
            history = self._history.setdefault(record.function_name, deque(maxlen=self._history_size))
            history.append(record)


# ---------------------------------------------------------------------- helpers
@dataclasses.dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    handler_seconds: float = 0.0  # the invocation's handler time (its Timeout when it timed out)
    hung: bool = False  # timed out by the real-time hang guard, not by handler time


def _run_with_timeout(
    handler: Callable[[Any, Any], Any],
    event: Any,
    context: LambdaContext,
    variables: Mapping[str, str],
    timeout: float,
    name: str,
    principal: iam.Principal | None = None,
    *,
    hang_guard: float | None = None,
) -> _Outcome:
    """Run the handler in its own thread with its environment, as its execution role
    (``principal``, when IAM is enforced), until it returns or its handler time reaches
    ``timeout`` seconds.

    Handler time (``handler_time.py``) is the CPU time of the handler's threads plus the time
    it deliberately waits (``time.sleep``, a synchronous invocation of another function): time
    lost waiting for the GIL, a CPU or the emulator's locks does not count, so a handler that
    needs a fraction of its Timeout does not time out on a busy machine. A handler that
    finished past its Timeout in handler time timed out too (Lambda would have stopped it),
    whenever this thread noticed. AWS: "Timeout is the maximum amount of time in seconds that
    a Lambda function can run" ("Configure Lambda function timeout",
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html).

    ``hang_guard`` (real seconds; default :func:`handler_time.hang_guard_seconds`, 20 x
    Timeout and at least 120 s): a handler blocked on something that never happens gains no
    handler time, so without it its caller would wait for ever; AWS always ends an
    invocation, so it ends as timed out after this real time. If the calling thread counts
    for an invocation itself (one handler invoking another), the wait counts as this
    invocation's handler time."""
    if not timeout > 0:
        raise ValueError(f"{name}: the function timeout must be > 0 seconds, got {timeout}")
    guard = handler_time.hang_guard_seconds(timeout) if hang_guard is None else float(hang_guard)
    if not guard > 0:
        raise ValueError(f"{name}: the hang guard must be > 0 real seconds, got {hang_guard}")
    outcome = _Outcome()
    done = threading.Event()
    meter = handler_time.Meter()
    context.count_handler_time(meter.elapsed, timeout)

    def run() -> None:
        try:
            with meter.counting(), environ.overlay(variables), iam.acting_as(principal):
                outcome.value = handler(event, context)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller as the function error
            outcome.error = exc
        finally:
            done.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    with handler_time.waiting_for(meter):
        started = time.monotonic()
        thread.start()
        while True:
            finished = done.is_set()
            used = meter.elapsed()
            if used >= timeout:  # also when it finished: it ran past its Timeout
                meter.close()
                return _Outcome(timed_out=True, handler_seconds=timeout)
            if finished:
                outcome.handler_seconds = meter.close()
                return outcome
            real = time.monotonic() - started
            if real >= guard:
                meter.close()
                LOG.warning(
                    "%s: hang guard: no end after %.1f real seconds, %.2f s of handler time of its %.2f s Timeout;"
                    " ended as timed out",
                    name, real, used, timeout,
                )
                return _Outcome(timed_out=True, handler_seconds=timeout, hung=True)
            # Handler time grows at most as fast as real time: it can't reach the Timeout sooner.
            done.wait(min(max(timeout - used, handler_time.MIN_POLL_SECONDS), guard - real))


def _set_sys_path(entries: list[str]) -> None:
    """Give ``sys.path`` a new list rather than change the one it holds.

    Other threads of the process (other functions' invocations, the embedded AWS's own lazy
    imports) may be searching ``sys.path`` at that moment: the import system iterates the list
    object it read, and an entry removed from the front of that list while it iterates shifts
    the rest left, so the entry after the one being searched is skipped and an installed
    package is reported missing. A list that is never changed in place can't be skipped through.
    """
    sys.path = entries


def _load_handler(code_dir: Path, handler: str, module_name: str) -> tuple[ModuleType, Callable[[Any, Any], Any]]:
    """Import ``handler`` ("app.lambda_handler") from ``code_dir`` under ``module_name``.

    The code dir is first on sys.path only while the module executes (``_set_sys_path``), so sibling modules
    it imports resolve to this function's files; they are then dropped from sys.modules
    so another function's sibling of the same name is imported from its own directory.
    """
    module_path, _, function_name = handler.rpartition(".")
    if not module_path or not function_name:
        raise _HandlerError("Runtime.MalformedHandlerName", f"Bad handler '{handler}': not enough values to unpack", [])
    relative = Path(*module_path.split("."))
    candidates = [code_dir / relative.with_suffix(".py"), code_dir / relative / "__init__.py"]
    source = next((c for c in candidates if c.is_file()), None)
    if source is None:
        raise _HandlerError("Runtime.ImportModuleError", f"Unable to import module '{module_path}': No module named '{module_path}'", [])
    spec = importlib.util.spec_from_file_location(module_name, source)
    if spec is None or spec.loader is None:
        raise _HandlerError("Runtime.ImportModuleError", f"Unable to import module '{module_path}'", [])
    module = importlib.util.module_from_spec(spec)
    before = set(sys.modules)
    _set_sys_path([str(code_dir), *sys.path])
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise _HandlerError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_path}': {exc}", _stack(exc)
        ) from exc
    finally:
        path = list(sys.path)
        with contextlib.suppress(ValueError):
            path.remove(str(code_dir))
        _set_sys_path(path)
        root = code_dir.resolve()
        for name in set(sys.modules) - before - {module_name}:
            file = getattr(sys.modules.get(name), "__file__", None)
            if file and Path(file).resolve().is_relative_to(root):
                sys.modules.pop(name, None)
    handler_fn = getattr(module, function_name, None)
    if not callable(handler_fn):
        sys.modules.pop(module_name, None)
        raise _HandlerError(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_path}'", []
        )
    return module, handler_fn


def _send_dead_letter(queue_arn: str, body: bytes, request_id: str, error_payload: bytes) -> None:
    """The event as Lambda sends it to a dead-letter queue: the payload unchanged, why in attributes."""
    from moto.sqs.models import sqs_backends

    match = _SQS_ARN_RE.match(queue_arn)
    if not match:
        raise ValueError(f"not an SQS queue ARN: {queue_arn}")
    try:
        error = json.loads(error_payload)
        message = str(error.get("errorMessage") or error.get("errorType") or error_payload.decode("utf-8", "replace"))
    except (ValueError, AttributeError):
        message = error_payload.decode("utf-8", "replace")
    encoded = (message or "Unknown").encode("utf-8")[:DLQ_ERROR_MESSAGE_LIMIT]
    sqs_backends[match["account"]][match["region"]].send_message(
        queue_name=match["name"],
        message_body=body.decode("utf-8", "replace"),
        message_attributes={
            "RequestID": {"DataType": "String", "StringValue": request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {"DataType": "String", "StringValue": encoded.decode("utf-8", "ignore")},
        },
    )


def _split_function_ref(function: str) -> tuple[str, str | None]:
    match = _ARN_RE.match(function)
    if match:
        return match["name"], match["qualifier"]
    if ":" in function:
        name, _, qualifier = function.partition(":")
        return name, qualifier or None
    return function, None


def _parse_event(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        from moto.awslambda.exceptions import LambdaClientError

        raise LambdaClientError("InvalidRequestContentException", f"Could not parse request body into json: {exc}") from exc


def _json_default(value: Any) -> Any:
    # The Python runtime's marshaller serialises Decimal (e.g. DynamoDB numbers).
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _dumps(value: Any) -> bytes:
    return json.dumps(value, default=_json_default).encode("utf-8")


def _stack(exc: BaseException) -> list[str]:
    """Traceback lines as the Python runtime reports them, without this module's frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != _RUNTIME_FILE]
    return traceback.format_list(frames)


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return str(value)
    lowered = name.lower()
    for key, candidate in headers.items():
        if str(key).lower() == lowered:
            return str(candidate)
    return None
