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
  ``AdditionalVersionWeights`` route invocations with smooth weighted round robin, per alias
  (deterministic: 1000 invokes at weight 0.1 send exactly 100 to the extra version), and
  the response carries ``X-Amz-Executed-Version``.
- no AWS/Lambda metrics are emitted; here every invocation calls the metrics sink
  (``cloudwatch.emit_lambda_metrics`` in ``LocalAWS``).
- ``LambdaFunction._get_layers_data`` looks layers up in the Docker backend even when the
  simple backend is in use, so a function with Layers can't be created; patched to use the
  backend moto itself selected.

Design choices (documented where they differ from AWS):
- each (function, version, configuration) gets its own module instance, loaded from its
  code directory under a unique module name (every function names its module ``app``):
  the first invocation is a cold start, later ones are warm. Concurrent invocations of
  one version share that instance (AWS would start more sandboxes).
- the function's environment applies only to its invocation: see ``environ.py``.
- the function's ``Timeout`` is enforced in real seconds (the Step Functions time factor
  does not apply: handlers do real work at real speed). A timed-out handler thread can't
  be killed; it is left to finish in the background and its result is discarded.
- ``InvocationType=Event`` runs the handler in a background thread and returns 202;
  failed async invocations are logged and recorded, not retried (AWS retries twice).
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

from modelgate_emulator import environ, iam

LOG = logging.getLogger(__name__)

_ARN_RE = re.compile(r"^arn:[^:]+:lambda:(?P<region>[^:]+):(?P<account>\d+):function:(?P<name>[^:]+)(?::(?P<qualifier>[^:]+))?$")
_RUNTIME_FILE = str(Path(__file__).resolve())


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

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return f"LambdaContext({self.function_name}:{self.function_version} {self.aws_request_id})"


class WeightedRouter:
    """Smooth weighted round robin over an alias's versions.

    AWS picks a version at random per request; a deterministic spread keeps local canary
    tests exact (1000 invokes at weight 0.1 → 100 on the extra version, evenly spaced).
    Weights are handled in integer millionths, so no float drift accumulates. State is
    per alias and resets whenever the alias's routing changes.
    """

    _SCALE = 1_000_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, tuple[tuple[Any, ...], dict[str, int]]] = {}

    def pick(self, alias_arn: str, primary: str, additional: Mapping[str, float]) -> str:
        extra = {v: round(float(w) * self._SCALE) for v, w in additional.items() if v != primary}
        if not extra:
            return primary
        weights = {primary: self._SCALE - sum(extra.values()), **extra}
        if weights[primary] < 0:
            raise ValueError(f"alias {alias_arn}: additional version weights exceed 1.0")
        key = (primary, tuple(sorted(extra.items())))
        with self._lock:
            previous = self._state.get(alias_arn)
            current = previous[1] if previous and previous[0] == key else dict.fromkeys(weights, 0)
            for version, weight in weights.items():
                current[version] += weight
            chosen = max(weights, key=lambda v: (current[v], v == primary))
            current[chosen] -= self._SCALE
            self._state[alias_arn] = (key, current)
        return chosen


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

    def __init__(self, *, metrics_sink: MetricsSink | None = None, history_size: int = 10_000) -> None:
        self._metrics_sink = metrics_sink
        self._router = WeightedRouter()
        self._code: dict[tuple[str, str, str], FunctionCode] = {}
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

    # ------------------------------------------------------------------ registration
    def register_function(self, *, account_id: str, region: str, function_name: str, code: FunctionCode) -> None:
        self._code[(account_id, region, function_name)] = code

    def register_layer(self, layer_version_arn: str, content_dir: Path) -> None:
        self._layers[layer_version_arn] = content_dir

    # ------------------------------------------------------------------ patching
    def install(self) -> None:
        """Patch moto's Lambda invoke path; idempotent per instance."""
        if self._patches is not None:
            return
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
        self._patches = stack

    def uninstall(self) -> None:
        """Restore moto, wait briefly for async invocations, forget loaded modules."""
        self.wait_for_async(timeout=5.0)
        if self._patches is not None:
            self._patches.close()
            self._patches = None
        with self._env_lock:
            for env in self._environments.values():
                sys.modules.pop(env.module.__name__, None)
            self._environments.clear()
        for added in self._added_paths:
            with contextlib.suppress(ValueError):
                sys.path.remove(added)
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
                target=self._run_async, args=(target, event, request_id), name=f"lambda-event:{target.function_name}", daemon=True
            )
            with self._async_lock:
                self._async_threads.add(thread)
            thread.start()
            return InvokeResult(202, b"", target.executed_version, request_id)
        if invocation_type != "RequestResponse":
            from moto.awslambda.exceptions import InvalidParameterValueException

            raise InvalidParameterValueException(f"Unsupported InvocationType {invocation_type!r}")
        return self._execute(target, event, str(uuid.uuid4()), invocation_type)

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
        return _Target(account_id, region, name, qualifier, version, invoked_arn, resource, config)

    def _run_async(self, target: _Target, event: Any, request_id: str) -> None:
        try:
            result = self._execute(target, event, request_id, "Event")
        except Exception:
            LOG.exception("asynchronous invocation of %s failed in the runtime", target.invoked_arn)
            raise
        if result.function_error:
            LOG.error(
                "asynchronous invocation %s of %s failed (not retried locally): %s",
                request_id,
                target.invoked_arn,
                result.payload.decode("utf-8", "replace"),
            )

    def _execute(self, target: _Target, event: Any, request_id: str, invocation_type: str) -> InvokeResult:
        started_at = datetime.now(timezone.utc)
        start = time.monotonic()
        cold_start = False
        try:
            env, cold_start = self._environment_for(target)
            body, error = self._call(target, env, event, request_id, start)
        except _HandlerError as exc:  # the runtime could not load the handler
            body, error = b"", (exc.error_type, str(exc), exc.stack)
        if error is not None:
            error_type, error_message, stack = error
            body = _dumps({"errorMessage": error_message, "errorType": error_type, "requestId": request_id, "stackTrace": stack})
        result = InvokeResult(200, body, target.executed_version, request_id, "Unhandled" if error else None)
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
                )
            except Exception:
                LOG.exception("emitting Lambda metrics for %s failed", target.invoked_arn)
                raise
        return result

    def _call(
        self, target: _Target, env: _Environment, event: Any, request_id: str, start: float
    ) -> tuple[bytes, tuple[str, str, list[str]] | None]:
        """Run the handler; (JSON result, None) or (b"", (errorType, errorMessage, stackTrace))."""
        timeout = float(target.config.timeout or 3)
        context = LambdaContext(
            function_name=target.function_name,
            function_version=target.executed_version,
            invoked_function_arn=target.invoked_arn,
            memory_limit_in_mb=int(target.config.memory_size),
            aws_request_id=request_id,
            log_group_name=f"/aws/lambda/{target.function_name}",
            log_stream_name=env.log_stream_name,
            deadline=start + timeout,
        )
        variables = self._variables(target, env.log_stream_name)
        principal = iam.function_principal(target.config.role, target.function_name)
        outcome = _run_with_timeout(
            env.handler, event, context, variables, timeout, f"lambda:{target.function_name}:{request_id}", principal
        )
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
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{target.function_name}",
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
        if registered is not None and (registered.placeholder_sha256 in (None, digest)):
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
            for directory in layer_dirs:
                if str(directory) not in sys.path:
                    sys.path.append(str(directory))
                    self._added_paths.append(str(directory))
            safe = re.sub(r"\W", "_", f"{target.function_name}_{target.executed_version}")
            module_name = f"_modelgate_lambda_{safe}_{fingerprint}"
            stream = f"{datetime.now(timezone.utc):%Y/%m/%d}/[{target.executed_version}]{uuid.uuid4().hex}"
            # Module-level code runs at cold start with the function's environment, as on AWS.
            principal = iam.function_principal(target.config.role, target.function_name)
            with environ.overlay(self._variables(target, stream)), iam.acting_as(principal):
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


def _run_with_timeout(
    handler: Callable[[Any, Any], Any],
    event: Any,
    context: LambdaContext,
    variables: Mapping[str, str],
    timeout: float,
    name: str,
    principal: iam.Principal | None = None,
) -> _Outcome:
    """Run the handler in its own thread with its environment, as its execution role
    (``principal``, when IAM is enforced); wait at most ``timeout`` s."""
    outcome = _Outcome()
    done = threading.Event()

    def run() -> None:
        try:
            with environ.overlay(variables), iam.acting_as(principal):
                outcome.value = handler(event, context)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller as the function error
            outcome.error = exc
        finally:
            done.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not done.wait(timeout):
        return _Outcome(timed_out=True)
    return outcome


def _load_handler(code_dir: Path, handler: str, module_name: str) -> tuple[ModuleType, Callable[[Any, Any], Any]]:
    """Import ``handler`` ("app.lambda_handler") from ``code_dir`` under ``module_name``.

    The code dir is first on sys.path only while the module executes, so sibling modules
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
    sys.path.insert(0, str(code_dir))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise _HandlerError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_path}': {exc}", _stack(exc)
        ) from exc
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(code_dir))
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
