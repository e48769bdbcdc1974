"""`modelgate local up`: the local runtime as a server, so the CLI's own commands (submit,
status, approve, reject, rollback, dataset) run against it from another shell, exactly as
they run against AWS.

The stack is deployed into moto in this process (with every shim of this package) and
moto's server answers on loopback from the same backends; Lambda handlers, Step Functions
executions and alarms run here. A state file tells the CLI where the endpoint is and what
the stack's outputs are (on AWS the CLI reads them from CloudFormation instead).

IAM holds over HTTP too: every request must be SigV4-signed with the session keys of a named
principal (``ci``, ``approver``, ``operator``: each holds the template's managed policy for it),
which the state file hands to the CLI (readable by its owner only); the server authorises each
request as that principal before moto answers it (``modelgate_emulator.http_iam``).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_STATE_FILE = Path(".modelgate-local.json")


def serve(
    template_path: Path,
    *,
    port: int = 4566,
    time_factor: float = 0.01,
    state_file: Path = DEFAULT_STATE_FILE,
    traffic_rate: float = 0.0,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run until SIGINT / SIGTERM (or ``stop`` is set)."""
    from modelgate_emulator import http_iam
    from modelgate_emulator.runtime import CLI_PRINCIPALS
    from modelgate_harness.driver import EXAMPLES, sample_stack
    from modelgate_harness.traffic import TrafficGenerator

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    with sample_stack(template_path, time_factor=time_factor) as (local, control):
        credentials = http_iam.mint_credentials(local, CLI_PRINCIPALS)
        server = _AuthorizingServer(
            port, credentials, enforcer=lambda: local.enforcer,
            # the stack's Function URLs (`modelgate approve|reject` signs for the decision URL)
            function_urls=lambda principal, url, method, body, headers: local.call_function_url(
                url, body, headers, method=method, caller=principal),
        )
        server.start()
        traffic = None
        try:
            state = {
                "endpoint_url": f"http://127.0.0.1:{port}",
                "region": local.region,
                "stack_name": local.stack_name,
                "outputs": local.stack.outputs,
                "functions": {f.logical_id: f.function_name for f in local.stack.functions.values()},
                "time_factor": time_factor,
                "principals": {name: c.for_state_file() for name, c in credentials.items()},
            }
            # the principals' keys: readable by the owner only (created so, never widened)
            state_file.unlink(missing_ok=True)
            fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(state, indent=2) + "\n")
            if traffic_rate > 0:
                requests = [
                    {"inputs": json.loads(line)}
                    for line in (EXAMPLES / "traffic.jsonl").read_text().splitlines()
                    if line.strip()
                ]
                traffic = TrafficGenerator(
                    lambda_client=control.client("lambda"),
                    function_name=local.stack.outputs["SampleServiceFunctionName"],
                    qualifier="live",
                    requests=requests,
                    rate_per_second=traffic_rate,
                )
                traffic.start()
            print(f"modelgate local runtime: stack {local.stack_name} at {state['endpoint_url']} "
                  f"(time factor {time_factor}); state in {state_file}", flush=True)
            if ready is not None:
                ready.set()
            stop.wait()
        finally:
            if traffic is not None:
                traffic.stop()
            server.stop()
            state_file.unlink(missing_ok=True)


class _AuthorizingServer:
    """moto's WSGI app behind :class:`http_iam.HttpAuthorizer`, served on loopback in a thread
    (what ``moto.server.ThreadedMotoServer`` does, with the authoriser in front)."""

    def __init__(self, port: int, credentials: Any, *, enforcer: Any, function_urls: Any = None) -> None:
        from modelgate_emulator.http_iam import HttpAuthorizer
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        app = HttpAuthorizer(DomainDispatcherApplication(create_backend_app), credentials=credentials,
                             enforcer=enforcer, function_urls=function_urls)
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="modelgate-local-up", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


def control_from_state(state_file: Path) -> Any:
    """A `Control` for the CLI against a running `modelgate local up`: each command's calls
    are signed with the keys of the principal it runs as (`Control.acting`)."""
    from functools import cache

    import boto3
    from modelgate_harness.control import Control

    if not state_file.is_file():
        raise SystemExit(f"modelgate: no local runtime is running ({state_file} not found): run `modelgate local up`")
    state = json.loads(state_file.read_text())
    principals = state.get("principals") or {}
    if not principals:
        raise SystemExit(f"modelgate: {state_file} holds no principals' keys (written by an older `modelgate local "
                         "up`): restart it")
    endpoint = state["endpoint_url"]
    acting: contextvars.ContextVar[str | None] = contextvars.ContextVar("modelgate_local_principal", default=None)

    def current() -> str:
        name = acting.get()
        if name is None:
            raise RuntimeError("a call to the local runtime outside Control.acting(...): every local call runs as "
                               f"a named principal ({', '.join(sorted(principals))})")
        if name not in principals:
            raise SystemExit(f"modelgate: {state_file} has no keys for principal {name!r} "
                             f"(it has {', '.join(sorted(principals))})")
        return name

    @cache
    def session(name: str) -> Any:
        keys = principals[name]
        return boto3.Session(
            aws_access_key_id=keys["aws_access_key_id"],
            aws_secret_access_key=keys["aws_secret_access_key"],
            aws_session_token=keys["aws_session_token"],
            region_name=state["region"],
        )

    @cache
    def principal_client(name: str, service: str) -> Any:
        return session(name).client(service, endpoint_url=endpoint)

    def client(service: str) -> Any:
        return principal_client(current(), service)

    def resource(service: str) -> Any:
        return session(current()).resource(service, endpoint_url=endpoint)

    @contextlib.contextmanager
    def act_as(name: str) -> Iterator[str]:
        token = acting.set(name)
        try:
            yield name
        finally:
            acting.reset(token)

    def call_url(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        from modelgate_harness.control import signed_post

        return signed_post(session(current()), url, body, headers, connect_to=endpoint)

    return Control(state["stack_name"], state["outputs"], client, resource, act_as=act_as, call_url=call_url)
