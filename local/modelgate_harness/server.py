"""`modelgate local up`: the local runtime as a server, so the CLI's own commands (submit,
status, approve, reject, rollback, dataset) run against it from another shell, exactly as
they run against AWS.

The stack is deployed into moto in this process (with every shim of this package) and
moto's server answers on loopback from the same backends; Lambda handlers, Step Functions
executions and alarms run here. A state file tells the CLI where the endpoint is and what
the stack's outputs are (on AWS the CLI reads them from CloudFormation instead).

Several stacks (a staging and a production stack, as the release workflow's jobs use them):
one `modelgate local up --stack NAME --port PORT` per stack, each its own process (the embedded
AWS is one moto per process, as separate accounts are on AWS), all naming the same state file.
The file holds one entry per running stack (``{"stacks": {NAME: {...}}}``); each server adds
its entry on start and removes it on exit, under an exclusive lock (``fcntl.flock``), and the
CLI's ``--stack`` chooses among them (``local_stack_state``).

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

from modelgate.errors import ModelgateError

DEFAULT_STATE_FILE = Path(".modelgate-local.json")
DEFAULT_STACK = "modelgate-local"


class LocalStateError(ModelgateError):
    """The state file can't say which running stack a command means, or a stack is served twice
    (the CLI prints it as one line, exit 2)."""


@contextlib.contextmanager
def _writers_lock(state_file: Path) -> Iterator[None]:
    """Serialise the servers that update one state file: an exclusive ``flock`` on its folder
    (Linux locks a directory like a file), so no lock file is left beside it."""
    import fcntl

    fd = os.open(state_file.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read_stacks(state_file: Path, text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        stacks = json.loads(text)["stacks"]
    except (ValueError, KeyError, TypeError):
        raise LocalStateError(f"{state_file} is not a state file of this `modelgate local up` (no \"stacks\"): "
                              "stop the runtime that wrote it and remove it") from None
    if not isinstance(stacks, dict):
        raise LocalStateError(f"{state_file}: \"stacks\" is not an object")
    return stacks


def _update_state(state_file: Path, change: Any) -> dict[str, Any]:
    """Apply ``change`` (stacks -> stacks) to the state file under the writers' lock. The new
    content replaces the file at once (``os.replace`` of a file written beside it, created 0600:
    it holds the principals' keys, readable by the owner only), so a reader never sees half of
    it; an empty result removes the file. Returns the stacks as written."""
    import tempfile

    state_file = state_file.absolute()
    with _writers_lock(state_file):
        stacks = change(_read_stacks(state_file, state_file.read_text() if state_file.exists() else ""))
        if not stacks:
            state_file.unlink(missing_ok=True)
            return {}
        fd, temporary = tempfile.mkstemp(dir=state_file.parent, prefix=f".{state_file.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps({"stacks": stacks}, indent=2) + "\n")
            os.replace(temporary, state_file)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return stacks


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _served_elsewhere(stacks: dict[str, Any], stack_name: str, state_file: Path) -> None:
    entry = stacks.get(stack_name)
    if entry is not None and entry.get("pid") != os.getpid() and _alive(entry.get("pid")):
        raise LocalStateError(f"stack {stack_name} is already served at {entry.get('endpoint_url')} (process "
                              f"{entry.get('pid')}, state file {state_file}): stop it first, or name another "
                              "stack with --stack")


def claim_stack(state_file: Path, stack_name: str) -> None:
    """Refuse to serve a stack the state file says another running server serves (checked
    again when the entry is added, ``add_stack``)."""
    if state_file.exists():
        _served_elsewhere(_read_stacks(state_file, state_file.read_text()), stack_name, state_file)


def add_stack(state_file: Path, stack_name: str, entry: dict[str, Any]) -> None:
    """Name this server's stack in the state file; entries left by servers that died (their
    pid is gone) are dropped."""

    def add(stacks: dict[str, Any]) -> dict[str, Any]:
        _served_elsewhere(stacks, stack_name, state_file)
        return {**{name: e for name, e in stacks.items() if _alive(e.get("pid"))}, stack_name: entry}

    _update_state(state_file, add)


def release_stack(state_file: Path, stack_name: str) -> None:
    """Remove this server's entry (the file goes with the last one)."""
    if not state_file.exists():
        return
    _update_state(state_file, lambda stacks: {
        name: e for name, e in stacks.items() if not (name == stack_name and e.get("pid") == os.getpid())})


def local_stack_state(state_file: Path, stack: str | None = None) -> dict[str, Any]:
    """The entry of the running stack a command means: ``stack`` (the CLI's ``--stack``), or
    the only one when none is named; a clear error naming the stacks running otherwise."""
    if not state_file.is_file():
        raise LocalStateError(f"no local runtime is running ({state_file} not found): run `modelgate local up`")
    stacks = _read_stacks(state_file, state_file.read_text())
    running = ", ".join(sorted(stacks)) or "none"
    if stack is None:
        if len(stacks) != 1:
            raise LocalStateError(f"{state_file} names {len(stacks)} running stacks ({running}): choose one with "
                                  "--stack (or $MODELGATE_STACK)")
        return next(iter(stacks.values()))
    if stack not in stacks:
        raise LocalStateError(f"stack {stack} is not running locally ({state_file} names {running}): start it with "
                              f"`modelgate local up --stack {stack}`")
    return stacks[stack]


SIGNAL_POLL_SECONDS = 0.2


def stop_on_signals() -> list[int]:
    """SIGINT and SIGTERM ask the server to stop: the list they are appended to (empty until then).

    The handlers only append: ``Event.set`` takes the event's lock, which the main thread may hold
    at the moment Python runs the handler (in ``Event.wait``), and a second acquire would never
    return. Off the main thread no handler can be installed, and the list stays empty."""
    signalled: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, _frame: signalled.append(signum))
    return signalled


def wait_for_stop(stop: threading.Event, signalled: list[int]) -> None:
    """Until ``stop`` is set or a signal arrived, in short waits rather than one.

    A signal sent to the process is delivered to any of its threads, and Python runs the handler
    in the main thread, the next time that thread runs bytecode ("Python signal handlers are always
    executed in the main Python thread ... even if the signal was received in another thread",
    https://docs.python.org/3/library/signal.html). A main thread blocked in one ``Event.wait()``
    for ever never gets there when the signal went to another thread (a handler's, the traffic's):
    `modelgate local up` then ignored SIGTERM (seen in a test's teardown)."""
    while not stop.is_set() and not signalled:
        stop.wait(SIGNAL_POLL_SECONDS)


def serve(
    template_path: Path,
    *,
    port: int = 4566,
    time_factor: float = 0.01,
    state_file: Path = DEFAULT_STATE_FILE,
    traffic_rate: float = 0.0,
    stack_name: str = DEFAULT_STACK,
    parameters: dict[str, str] | None = None,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run until SIGINT / SIGTERM (or ``stop`` is set). ``parameters``: template parameter
    overrides (``Stage=staging``...)."""
    from modelgate_emulator import http_iam
    from modelgate_emulator.runtime import CLI_PRINCIPALS
    from modelgate_harness.driver import EXAMPLES, sample_stack
    from modelgate_harness.traffic import TrafficGenerator

    stop = stop or threading.Event()
    signalled = stop_on_signals()
    claim_stack(state_file, stack_name)  # before the deploy: a stack served twice is refused at once
    with sample_stack(template_path, time_factor=time_factor, stack_name=stack_name,
                      **(parameters or {})) as (local, control):
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
                "pid": os.getpid(),
            }
            add_stack(state_file, local.stack_name, state)
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
            wait_for_stop(stop, signalled)
        finally:
            if traffic is not None:
                traffic.stop()
            server.stop()
            release_stack(state_file, stack_name)


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


def control_from_state(state_file: Path, stack: str | None = None) -> Any:
    """A `Control` for the CLI against a running `modelgate local up` (``stack``: which of the
    state file's, see ``local_stack_state``): each command's calls are signed with the keys of
    the principal it runs as (`Control.acting`)."""
    from functools import cache

    import boto3
    from modelgate_harness.control import Control

    state = local_stack_state(state_file, stack)
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
