"""Drive releases end to end the way CI and an approver do (the demo and the tests use it).

Submits through `control.submit` (the CLI's code), waits for the pipeline the way a person
watching `modelgate status` would, and decides through `control.decide` (the CLI's code).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelgate_emulator.stepfunctions import history_path
from modelgate_harness.control import Control, decide, submit
from modelgate_harness.polling import wait_until

__all__ = ["EXAMPLES", "ReleaseDriver", "ReleaseRun", "sample_stack", "wait_until"]


@dataclass
class ReleaseRun:
    release_id: str
    execution_arn: str
    execution: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)
    path: list[str] = field(default_factory=list)

    @property
    def status(self) -> str | None:
        return self.record.get("status")


@dataclass
class ReleaseDriver:
    control: Control
    timeout: float = 120.0

    def submit(self, folder: Path, *, commit: str, branch: str = "main", author: str | None = None) -> ReleaseRun:
        submission = submit(self.control, folder, commit=commit, branch=branch, author=author)
        ledger = self.control.ledger()
        record = wait_until(
            lambda: (r := ledger.get(submission.release_id)) and r.get("execution_arn") and r,
            self.timeout,
            f"the intake of {submission.release_id}",
            progress=lambda: (ledger.get(submission.release_id) or {}).get("status", "no ledger record"),
        )
        return ReleaseRun(submission.release_id, record["execution_arn"])

    def wait_for_decision_point(self, run: ReleaseRun) -> bool:
        """True when the release waits for an approver; False when it ended before that."""
        ledger = self.control.ledger()
        sfn = self.control.client("stepfunctions")

        def state() -> str | None:
            record = ledger.get(run.release_id) or {}
            if record.get("status") == "PendingManualApproval" and ledger.get_token(run.release_id, "approval"):
                return "waiting"
            if sfn.describe_execution(executionArn=run.execution_arn)["status"] != "RUNNING":
                return "ended"
            if record.get("status") in ("Approved", "Canary", "Baking"):
                return "past"
            return None

        return wait_until(
            state, self.timeout, f"{run.release_id} to ask for approval",
            progress=lambda: (ledger.get(run.release_id) or {}).get("status"),
        ) == "waiting"

    def decide(self, run: ReleaseRun, decision: str, comment: str = "") -> dict:
        return decide(self.control, run.release_id, decision, comment)

    def finish(self, run: ReleaseRun) -> ReleaseRun:
        sfn = self.control.client("stepfunctions")
        run.execution = wait_until(
            lambda: (d := sfn.describe_execution(executionArn=run.execution_arn))["status"] != "RUNNING" and d,
            self.timeout,
            f"execution {run.execution_arn} to end",
            progress=lambda: f"still RUNNING in {(history_path(sfn, run.execution_arn) or ['no state'])[-1]}",
        )
        run.path = history_path(sfn, run.execution_arn)
        run.record = self.control.ledger().get(run.release_id) or {}
        return run

    def release(self, folder: Path, *, commit: str, decision: str | None = "approve", comment: str = "") -> ReleaseRun:
        """Submit, decide when asked (None: never decide), and wait for the end."""
        run = self.submit(folder, commit=commit)
        if decision and self.wait_for_decision_point(run):
            self.decide(run, decision, comment)
        return self.finish(run)


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "support-bot"


# The pipeline's callback states that the stack answers itself: a canary bake ends by its
# timeout or by the on_alarm function (an alarm); a person answers WaitForApproval.
INTERNAL_CALLBACKS = ("Bake",)


@contextmanager
def sample_stack(
    template_path: Path,
    *,
    time_factor: float,
    seed: int | None = None,
    jump_when_idle: bool = False,
    run_schedules: bool = True,
    stack_name: str = "modelgate-local",
    **parameters: str,
) -> Iterator[tuple[Any, Control]]:
    """The stack on the local runtime with the sample service's dataset uploaded:
    what the demo, the benchmarks and the state-machine tests start from. ``seed`` makes
    weighted-alias routing (and generated names) repeatable. ``jump_when_idle``: nominal
    time jumps over waits when everything waits (``LocalAWS(jump_when_idle=True)``, with
    the bakes as :data:`INTERNAL_CALLBACKS`); only for callers that wait through
    :func:`wait_until` or the runtime (an operator acting from another process is not seen).
    ``run_schedules``: the stack's EventBridge Scheduler schedules fire (monitor, drift check; on as on AWS)."""
    import boto3
    from modelgate_emulator import LocalAWS
    from modelgate_harness.control import put_dataset

    from modelgate.adapters import clients as aws

    params = {"ModelProvider": "local", "LogLevel": "WARNING", **parameters}
    with LocalAWS(
        template_path,
        parameters=params,
        stack_name=stack_name,
        time_factor=time_factor,
        seed=seed,
        jump_when_idle=jump_when_idle,
        internal_callbacks=INTERNAL_CALLBACKS,
        run_schedules=run_schedules,
    ) as local:
        control = Control(local.stack_name, local.stack.outputs, aws.client, boto3.resource, act_as=local.acting_as,
                          call_url=local.call_function_url)
        put_dataset(control, "support-bot", EXAMPLES / "dataset.jsonl")
        yield local, control
