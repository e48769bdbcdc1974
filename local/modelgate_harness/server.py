"""`modelgate local up`: the local runtime as a server, so the CLI's own commands (submit,
status, approve, reject, rollback, dataset) run against it from another shell, exactly as
they run against AWS.

The stack is deployed into moto in this process (with every shim of this package) and
moto's server answers on loopback from the same backends; Lambda handlers, Step Functions
executions and alarms run here. A state file tells the CLI where the endpoint is and what
the stack's outputs are (on AWS the CLI reads them from CloudFormation instead).
"""

from __future__ import annotations

import json
import signal
import threading
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
    from modelgate_harness.driver import EXAMPLES, sample_stack
    from modelgate_harness.traffic import TrafficGenerator
    from moto.server import ThreadedMotoServer

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    with sample_stack(template_path, time_factor=time_factor) as (local, control):
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
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
            }
            state_file.write_text(json.dumps(state, indent=2) + "\n")
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


def control_from_state(state_file: Path) -> Any:
    """A `Control` for the CLI against a running `modelgate local up`."""
    from functools import lru_cache

    import boto3
    from modelgate_harness.control import Control

    if not state_file.is_file():
        raise SystemExit(f"modelgate: no local runtime is running ({state_file} not found): run `modelgate local up`")
    state = json.loads(state_file.read_text())
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=state["region"]
    )
    endpoint = state["endpoint_url"]

    @lru_cache(maxsize=None)
    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint)

    def resource(service: str) -> Any:
        return session.resource(service, endpoint_url=endpoint)

    return Control(state["stack_name"], state["outputs"], client, resource)
