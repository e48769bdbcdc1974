"""Step Functions on the embedded AWS: the real ASL runs, with the interpreter patches.

Timing tests assert order and lower bounds only (never skipped), no speed: at time factor 0.01
a nominal 100 s wait takes about 1 s; without the patch it would take 100 s and outlast the
real-second hang guard, however busy the machine.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from modelgate_emulator import LocalAWS
from modelgate_emulator.stepfunctions import (
    StepFunctionsPatches,
    decode_cause,
    failure_of,
    history_path,
    wait_for_execution,
)


def start(local: LocalAWS, machine_arn: str, payload: dict[str, Any], name: str | None = None) -> str:
    args: dict[str, Any] = {"stateMachineArn": machine_arn, "input": json.dumps(payload)}
    if name:
        args["name"] = name
    return str(local.client("stepfunctions").start_execution(**args)["executionArn"])


def machine(local: LocalAWS, definition: dict[str, Any]) -> str:
    """An ad-hoc state machine next to the stack's (same role)."""
    role = local.client("iam").get_role(RoleName=local.stack.physical_id("MachineRole"))["Role"]["Arn"]
    return str(
        local.client("stepfunctions").create_state_machine(
            name=f"adhoc-{uuid.uuid4().hex[:10]}", definition=json.dumps(definition), roleArn=role
        )["stateMachineArn"]
    )


def lambda_task(function_arn: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_arn, "Payload": payload},
        **extra,
    }


def token_task(local: LocalAWS, **extra: Any) -> dict[str, Any]:
    """A ``.waitForTaskToken`` task handing TokenFunction its task token; it ends the execution."""
    return {
        **lambda_task(local.stack.function("TokenFunction").arn, {"token.$": "$$.Task.Token"}, End=True, **extra),
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
    }


# A hang guard in real seconds, not a speed limit: the scaled runs below take about 1 s, an
# unscaled one 100 s or more, so only a wait the time factor failed to scale reaches it.
HANG_GUARD_SECONDS = 60.0


def timed_run(
    local: LocalAWS, machine_arn: str, payload: dict[str, Any], timeout: float = HANG_GUARD_SECONDS
) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    arn = start(local, machine_arn, payload)
    description = local.wait_for_execution(arn, timeout=timeout)
    return description, time.monotonic() - started


# ------------------------------------------------------------------ the machine runs
def test_definition_substitutions_are_applied(local_aws: LocalAWS) -> None:
    definition = local_aws.client("stepfunctions").describe_state_machine(
        stateMachineArn=local_aws.stack.physical_id("Machine")
    )["definition"]
    assert local_aws.stack.function("EchoFunction").arn in definition
    assert "${" not in definition
    assert '"$$.Task.Token"' in definition


def test_the_state_machine_executes_real_lambda_tasks(local_aws: LocalAWS) -> None:
    # When an execution takes the default branch
    arn = start(local_aws, local_aws.stack.outputs["MachineArn"], {"mode": "echo", "n": 1})
    description = local_aws.wait_for_execution(arn)
    # Then it succeeded through the Echo task, whose handler really ran
    assert description["status"] == "SUCCEEDED"
    assert json.loads(description["output"]) == {"echo": {"mode": "echo", "n": 1}}
    assert local_aws.history_path(arn) == ["Route", "Echo"]


def test_a_domain_error_is_caught_by_its_name(local_aws: LocalAWS) -> None:
    # When the Lambda task raises GateFailed
    arn = start(local_aws, local_aws.stack.outputs["MachineArn"], {"mode": "gate", "accuracy": 0.4})
    description = local_aws.wait_for_execution(arn)
    # Then the ASL's Catch on "GateFailed" took it, with the runtime's error payload as cause
    assert description["status"] == "SUCCEEDED"
    output = json.loads(description["output"])
    assert output["outcome"] == "rejected"
    assert output["failure"]["Error"] == "GateFailed"
    assert decode_cause(output["failure"]["Cause"])["errorMessage"] == "accuracy 0.4 below 0.9"
    assert history_path(local_aws.client("stepfunctions"), arn) == ["Route", "Judge", "Rejected"]


# ------------------------------------------------------------------ callbacks
def test_send_task_failure_carries_the_cause(local_aws: LocalAWS, poll: Callable[..., Any], task_token: Callable[..., Any]) -> None:
    # Given an execution waiting on a task token
    arn = start(local_aws, local_aws.stack.outputs["MachineArn"], {"mode": "token", "raise": False})
    token = poll(lambda: task_token(local_aws, arn), what="the task token")
    # When the callback fails it with an error and a cause
    local_aws.client("stepfunctions").send_task_failure(taskToken=token, error="ApprovalRejected", cause="alice: prompt leaks PII")
    description = local_aws.wait_for_execution(arn)
    # Then the task failure and the execution both say why
    assert description["status"] == "FAILED"
    assert (description["error"], description["cause"]) == ("ApprovalRejected", "alice: prompt leaks PII")
    assert failure_of(local_aws.client("stepfunctions"), arn) == {"error": "ApprovalRejected", "cause": "alice: prompt leaks PII"}


def test_stopping_an_execution_that_waits_for_a_callback_aborts_it_at_once(
    local_aws: LocalAWS, poll: Callable[..., Any], task_token: Callable[..., Any]
) -> None:
    # Given an execution waiting on a task token (its timeout is 864 s real here)
    arn = start(local_aws, local_aws.stack.outputs["MachineArn"], {"mode": "token", "raise": False})
    poll(lambda: task_token(local_aws, arn), what="the task token")
    # When it is stopped
    local_aws.client("stepfunctions").stop_execution(executionArn=arn, error="Superseded", cause="newer release")
    # Then it ends ABORTED without running its Catch (which would go to a Fail state)
    description = local_aws.wait_for_execution(arn, timeout=10)
    assert description["status"] == "ABORTED"
    events = [e["type"] for e in local_aws.client("stepfunctions").get_execution_history(executionArn=arn)["events"]]
    assert "FailStateEntered" not in events and events[-1] == "ExecutionAborted"


def test_a_callback_lambda_that_raises_fails_the_task_at_once(local_aws: LocalAWS) -> None:
    # Given a waitForTaskToken task (TimeoutSeconds 86400 → 864 s real) whose Lambda raises
    started = time.monotonic()
    arn = start(local_aws, local_aws.stack.outputs["MachineArn"], {"mode": "token", "raise": True})
    description = local_aws.wait_for_execution(arn, timeout=20)
    # Then the task failed at once with the Lambda's errorType, not after the timeout
    assert time.monotonic() - started < 15
    assert description["status"] == "FAILED"
    assert description["error"] == "ApprovalRequestFailed"


def test_task_token_survives_fn_sub_in_an_inline_definition(
    local_aws: LocalAWS, poll: Callable[..., Any], task_token: Callable[..., Any]
) -> None:
    # Given InlineMachine, whose definition is a Fn::Sub with "$$.Task.Token" and "${!X}"
    machine_arn = local_aws.stack.physical_id("InlineMachine")
    definition = local_aws.client("stepfunctions").describe_state_machine(stateMachineArn=machine_arn)["definition"]
    assert '"token.$": "$$.Task.Token"' in definition
    assert '"literal": "${NotSubstituted}"' in definition
    # When it runs, the Lambda receives a real token, and the token completes the task
    arn = start(local_aws, machine_arn, {})
    token = poll(lambda: task_token(local_aws, arn), what="the task token")
    local_aws.client("stepfunctions").send_task_success(taskToken=token, output=json.dumps({"approved": True}))
    description = local_aws.wait_for_execution(arn)
    assert description["status"] == "SUCCEEDED"
    assert json.loads(description["output"]) == {"approved": True}


# ------------------------------------------------------------------ time factor
def test_a_wait_of_100_seconds_takes_about_one_second_at_factor_001(local_aws: LocalAWS) -> None:
    description, elapsed = timed_run(local_aws, local_aws.stack.outputs["MachineArn"], {"mode": "wait", "seconds": 100})
    assert description["status"] == "SUCCEEDED"
    assert elapsed >= 0.8  # scaled, never skipped
    assert local_aws.history_path(description["executionArn"]) == ["Route", "Pause", "Echo"]


def test_a_wait_until_a_timestamp_is_scaled(local_aws: LocalAWS) -> None:
    # Timestamps are in the runtime's nominal time (what the pipeline's code reads)
    when = (local_aws.clock.datetime() + timedelta(seconds=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine_arn = machine(local_aws, {"StartAt": "Until", "States": {"Until": {"Type": "Wait", "Timestamp": when, "End": True}}})
    description, elapsed = timed_run(local_aws, machine_arn, {})
    assert description["status"] == "SUCCEEDED"
    assert elapsed >= 0.5  # never skipped


def test_retry_intervals_are_scaled(local_aws: LocalAWS) -> None:
    fail_arn = local_aws.stack.function("FailFunction").arn
    task = lambda_task(
        fail_arn,
        {"kind": "flaky"},
        Retry=[{"ErrorEquals": ["Flaky"], "IntervalSeconds": 100, "MaxAttempts": 1, "BackoffRate": 1.0}],
        End=True,
    )
    machine_arn = machine(local_aws, {"StartAt": "Flaky", "States": {"Flaky": task}})
    description, elapsed = timed_run(local_aws, machine_arn, {})
    assert (description["status"], description["error"]) == ("FAILED", "Flaky")
    assert elapsed >= 0.8  # never skipped
    assert len([r for r in local_aws.invocations("FailFunction") if r.error_type == "Flaky"]) >= 2


def test_a_callback_timeout_is_scaled_and_reports_states_timeout(local_aws: LocalAWS) -> None:
    task = token_task(local_aws, TimeoutSeconds=100)
    description, elapsed = timed_run(local_aws, machine(local_aws, {"StartAt": "Ask", "States": {"Ask": task}}), {})
    assert (description["status"], description["error"]) == ("FAILED", "States.Timeout")
    assert elapsed >= 0.8  # never skipped


def test_heartbeat_expiry_is_scaled_and_reports_states_heartbeat_timeout(local_aws: LocalAWS) -> None:
    task = token_task(local_aws, TimeoutSeconds=100_000, HeartbeatSeconds=100)
    description, elapsed = timed_run(local_aws, machine(local_aws, {"StartAt": "Ask", "States": {"Ask": task}}), {})
    assert (description["status"], description["error"]) == ("FAILED", "States.HeartbeatTimeout")
    assert elapsed >= 0.8  # never skipped


def test_the_machine_timeout_is_scaled(local_aws: LocalAWS) -> None:
    definition = {"TimeoutSeconds": 100, "StartAt": "Long", "States": {"Long": {"Type": "Wait", "Seconds": 100_000, "End": True}}}
    description, elapsed = timed_run(local_aws, machine(local_aws, definition), {})
    assert description["status"] == "TIMED_OUT"
    assert elapsed >= 0.8  # never skipped


def test_a_lambda_task_timeout_is_not_scaled_below_real_work(local_aws: LocalAWS) -> None:
    # A 2 s task timeout would be 0.02 s at factor 0.01: shorter than the handler's real 0.3 s.
    task = lambda_task(local_aws.stack.function("EchoFunction").arn, {"sleep": 0.3}, TimeoutSeconds=2, End=True)
    description, _ = timed_run(local_aws, machine(local_aws, {"StartAt": "Work", "States": {"Work": task}}), {})
    assert description["status"] == "SUCCEEDED"


def test_a_lambda_task_timeout_is_scaled_above_the_floor(fixture_template: Any) -> None:
    # With a 0.1 s floor, TimeoutSeconds 100 is 1 s real: a 3 s handler times the task out.
    with LocalAWS(fixture_template, stack_name="floor", work_timeout_floor=0.1) as local:
        task = lambda_task(local.stack.function("EchoFunction").arn, {"sleep": 3}, TimeoutSeconds=100, End=True)
        description, elapsed = timed_run(local, machine(local, {"StartAt": "Work", "States": {"Work": task}}), {})
    # (the 3 s handler would have succeeded had the timeout not been 1 s)
    assert (description["status"], description["error"]) == ("FAILED", "States.Timeout")
    assert elapsed >= 0.8


def test_a_timestamp_wait_is_measured_in_utc(local_aws: LocalAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    # moto compared the UTC timestamp with local time: 5 h off in a UTC-5 zone
    monkeypatch.setenv("TZ", "EST5")
    time.tzset()
    try:
        when = (local_aws.clock.datetime() + timedelta(seconds=100)).strftime("%Y-%m-%dT%H:%M:%SZ")
        machine_arn = machine(local_aws, {"StartAt": "Until", "States": {"Until": {"Type": "Wait", "Timestamp": when, "End": True}}})
        description, _ = timed_run(local_aws, machine_arn, {})
    finally:
        monkeypatch.undo()
        time.tzset()
    assert description["status"] == "SUCCEEDED"  # 5 h off would outlast the hang guard


def test_patches_reject_a_factor_that_would_skip_waits() -> None:
    with pytest.raises(ValueError):
        StepFunctionsPatches(0)


# ------------------------------------------------------------------ executions
def test_unnamed_executions_get_unique_names(local_aws: LocalAWS) -> None:
    machine_arn = local_aws.stack.outputs["MachineArn"]
    sfn = local_aws.client("stepfunctions")
    first = sfn.start_execution(stateMachineArn=machine_arn, input="{}")["executionArn"]
    second = sfn.start_execution(stateMachineArn=machine_arn, input="{}")["executionArn"]
    assert first != second
    names = [arn.rsplit(":", 1)[1] for arn in (first, second)]
    assert all(str(uuid.UUID(name)) == name for name in names)
    for arn in (first, second):
        local_aws.wait_for_execution(arn)


def test_execution_names_are_validated(local_aws: LocalAWS) -> None:
    with pytest.raises(ClientError):
        start(local_aws, local_aws.stack.outputs["MachineArn"], {}, name="has spaces in it")


def test_wait_for_execution_times_out_with_the_last_state(local_aws: LocalAWS) -> None:
    arn = start(local_aws, local_aws.stack.outputs["MachineArn"], {"mode": "wait", "seconds": 100_000})
    with pytest.raises(TimeoutError, match="Pause"):
        wait_for_execution(local_aws.client("stepfunctions"), arn, timeout=0.3)
    local_aws.client("stepfunctions").stop_execution(executionArn=arn)
    assert local_aws.wait_for_execution(arn, timeout=5)["status"] == "ABORTED"


def test_a_definition_is_parsed_once_and_every_execution_gets_its_own_program() -> None:
    from modelgate_emulator.stepfunctions import parse_definition
    from moto.stepfunctions.parser.asl.parse.asl_parser import ASLParserException

    definition = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    first, tree = parse_definition(definition)
    second, same_tree = parse_definition(definition)
    assert same_tree is tree
    assert second is not first and second.start_at.start_at_name == first.start_at.start_at_name == "P"
    broken = '{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}'
    for _ in range(2):  # a syntax error is never kept: it is raised every time
        with pytest.raises(ASLParserException):
            parse_definition(broken)


# ------------------------------------------------------------------ task timeouts on a busy machine
# A busy machine leaves the emulator's threads waiting for a CPU: real seconds pass while no work
# runs. Simulated here deterministically by a thread that waits (no CPU) where it would have run.
STALL_SECONDS = 1.5  # longer than each task's TimeoutSeconds below, in real seconds


def test_a_lambda_task_timeout_counts_its_work_not_a_busy_machine(local_aws: LocalAWS, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a Lambda task of TimeoutSeconds 1 whose invocation is not scheduled for 1.5 real s
    # (its work takes milliseconds: the CheckCanary of a long bake at load ~15 rolled back this way)
    invoke = local_aws.runtime.invoke

    def descheduled_invoke(*args: Any, **kwargs: Any) -> Any:
        threading.Event().wait(STALL_SECONDS)
        return invoke(*args, **kwargs)

    monkeypatch.setattr(local_aws.runtime, "invoke", descheduled_invoke)
    task = lambda_task(local_aws.stack.function("EchoFunction").arn, {"n": 1}, TimeoutSeconds=1, End=True)
    # When it runs
    description, elapsed = timed_run(local_aws, machine(local_aws, {"StartAt": "Work", "States": {"Work": task}}), {})
    # Then it succeeded: the real seconds nobody worked are no task time
    assert elapsed >= STALL_SECONDS
    assert description["status"] == "SUCCEEDED", description.get("error")
    assert json.loads(description["output"])["Payload"]["event"] == {"n": 1}


def test_a_lambda_task_that_works_past_its_timeout_still_times_out(local_aws: LocalAWS) -> None:
    # A handler that sleeps 3 s (deliberate waiting: task time) in a task of TimeoutSeconds 1
    task = lambda_task(local_aws.stack.function("EchoFunction").arn, {"sleep": 3}, TimeoutSeconds=1, End=True)
    description, _ = timed_run(local_aws, machine(local_aws, {"StartAt": "Work", "States": {"Work": task}}), {})
    assert (description["status"], description["error"]) == ("FAILED", "States.Timeout")


def test_a_callback_task_waits_its_timeout_on_the_clock_while_real_work_holds_it(
    local_aws: LocalAWS, poll: Callable[..., Any], task_token: Callable[..., Any]
) -> None:
    # Given a callback task of TimeoutSeconds 1 (nominal) while real work holds the clock for
    # 1.5 real s, as slow live requests do during a canary bake on a busy machine
    task = token_task(local_aws, TimeoutSeconds=1)
    machine_arn = machine(local_aws, {"StartAt": "Ask", "States": {"Ask": task}})
    with local_aws.clock.hold():
        arn = start(local_aws, machine_arn, {})
        token = poll(lambda: task_token(local_aws, arn), what="the task token")
        threading.Event().wait(STALL_SECONDS)
        # When the callback comes after 1.5 real s but no nominal time
        local_aws.client("stepfunctions").send_task_success(taskToken=token, output=json.dumps({"ok": True}))
    # Then the task had not timed out: its timeout is nominal time, which stood still
    description = local_aws.wait_for_execution(arn)
    assert description["status"] == "SUCCEEDED", description.get("error")
    assert json.loads(description["output"]) == {"ok": True}


def test_a_task_that_gains_no_task_time_ends_after_the_hang_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelgate_emulator import handler_time
    from modelgate_emulator.stepfunctions import _TaskTime

    # A hang guard of 0.3 real s for a task of 1 s (AWS's always ends a task; 20 x, at least 120 s, here)
    monkeypatch.setattr(handler_time, "HANG_GUARD_FACTOR", 0.3)
    monkeypatch.setattr(handler_time, "HANG_GUARD_MIN_SECONDS", 0.0)
    release, done = threading.Event(), threading.Event()
    # A worker blocked on something that never happens: no CPU, no deliberate wait
    task = _TaskTime()
    worker = threading.Thread(target=task.counting(lambda: (release.wait(), done.set())), daemon=True)
    worker.start()
    try:
        assert task.wait(done, limit=1.0) is False
        used, real = task.elapsed()
        assert used < 1.0 and real >= 0.3  # ended by the guard, not by task time
    finally:
        release.set()
        worker.join()


def test_a_callback_wait_is_neither_task_time_nor_hang_time() -> None:
    from modelgate_emulator.stepfunctions import _TaskTime

    answered, waiting, done = threading.Event(), threading.Event(), threading.Event()
    task = _TaskTime()

    def worker_run() -> None:
        with _TaskTime.callback_wait():  # a callback wait (on the clock, which ends it)
            waiting.set()
            answered.wait()
        done.set()

    worker = threading.Thread(target=task.counting(worker_run), daemon=True)
    worker.start()
    waiting.wait()
    before = task.elapsed()
    threading.Event().wait(0.05)  # real time passes inside the callback wait
    after = task.elapsed()
    assert after[1] == pytest.approx(before[1], abs=1e-6)  # no hang time
    assert after[0] == pytest.approx(before[0], abs=1e-3)  # no task time (a blocked thread)
    answered.set()
    assert task.wait(done, limit=60.0) is True
    worker.join()
