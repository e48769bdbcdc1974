"""Fault injection, per task of the release pipeline (issue #10).

For every Lambda task of statemachine/release_pipeline.asl.json:
- a **transient** fault (Invoke throttled, then a ServiceException after the handler ran
  and its result was lost) is retried by the task's Retry, and the release ends exactly as
  without the fault: same path through the states, Promoted, live on the candidate (every
  task's transient faults are armed in one release: each state's Retry is its own);
- a **permanent** fault (the handler raises an unhandled exception on every attempt) ends
  the release in a final ledger status whose reason names the failing task, with the
  service's lock free and the live alias exactly as before.

Faults are keyed by function and attempt (modelgate_emulator.faults), never by time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import HANG_GUARD_SECONDS, JUMP_WHEN_IDLE
from modelgate_emulator import Fault, LocalAWS
from modelgate_emulator.stepfunctions import execution_history
from modelgate_harness.control import Control, update_policy
from modelgate_harness.driver import ReleaseDriver, ReleaseRun, sample_stack

from modelgate.adapters.lambda_alias import alias_state
from modelgate.ledger import FINAL_STATUSES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "support-bot"
TIME_FACTOR = 0.002  # as in conftest.py
SEED = 20261130
SERVICE = "support-bot"


@dataclass(frozen=True)
class Task:
    function: str  # the task's function (logical id in template.yaml)
    state: str  # the ASL state that invokes it
    callback: bool = False  # a .waitForTaskToken task
    traffic: bool = False  # runs after traffic moved: a failure rolls back


TASKS = {
    "validate": Task("ValidateFunction", "Validate"),
    "acquire_lock": Task("AcquireLockFunction", "AcquireLock"),
    "publish_candidate": Task("PublishCandidateFunction", "PublishCandidate"),
    "plan_evaluation": Task("PlanEvaluationFunction", "PlanEvaluation"),
    "evaluate": Task("EvaluateFunction", "Evaluate"),  # the Distributed Map's shard task
    "reduce_evaluation": Task("ReduceEvaluationFunction", "ReduceEvaluation"),
    "gate": Task("GateFunction", "Gate"),
    "register": Task("RegisterFunction", "Register"),
    "request_approval": Task("RequestApprovalFunction", "WaitForApproval", callback=True),
    "shift_traffic": Task("ShiftTrafficFunction", "ShiftTraffic", traffic=True),
    "start_bake": Task("StartBakeFunction", "Bake", callback=True, traffic=True),
    "check_canary": Task("CheckCanaryFunction", "CheckCanary", traffic=True),
    "send_synthetic": Task("SendSyntheticFunction", "SendSynthetic", traffic=True),
    "promote": Task("PromoteFunction", "Promote", traffic=True),
}

# The release every test starts from: manual approval, then all traffic at once, watched
# (at 100% the alarms decide: no live callers are needed), then promoted.
HAPPY_PATH = [
    "Validate", "AcquireLock", "PublishCandidate", "PlanEvaluation", "EvaluationMode", "Evaluate", "ReduceEvaluation",
    "Gate",
    "Register", "ApprovalMode", "WaitForApproval",
    "ShiftTraffic", "BakeOrJudge", "Bake", "CheckCanary", "NextStep", "Promote", "Attest", "Promoted",
]
# SendSynthetic runs only when a canary step lacks live callers and the policy says so: a
# 50% canary with nobody calling, judged on the synthetic calls. How many rounds it takes
# depends on how the weighted alias routes them (at random, as on AWS), so tests of it
# check where the release ends, not the exact path.
SYNTHETIC_POLICY = {"rollout": None, "canary_weight": 0.5, "min_canary_invocations": 3,
                    "judge": {"on_not_enough_evidence": "synthetic"}}


@dataclass
class Stack:
    """One sample stack for the whole module, released on again and again: a fresh stack per
    test would pay every pipeline function's cold start each time (about 15 s a test here).
    Each test leaves it as it found it (asserted): no lock, no open record, no fault armed."""

    local: LocalAWS
    control: Control
    driver: ReleaseDriver
    function: str
    label: str = ""  # the running test's name: its release's commit
    mark: int = 0  # how many faults had fired before the running test
    sdk_mark: int = 0  # how many SDK throttles had fired before the running test (``throttles``)

    def set_policy(self, **overrides: Any) -> None:
        update_policy(self.control, SERVICE, **overrides)

    def live(self) -> tuple[str, dict]:
        return alias_state(self.control.client("lambda"), self.function, "live")

    def alarms(self) -> list[str]:
        return [a["AlarmName"] for a in self.control.client("cloudwatch").describe_alarms()["MetricAlarms"]]

    def release(self, label: str) -> ReleaseRun:
        commit = hashlib.sha1(f"{SERVICE} faults {label}".encode()).hexdigest()
        return self.driver.release(EXAMPLES / "v1", commit=commit, decision="approve")


@pytest.fixture(scope="module")
def stack():
    with sample_stack(ROOT / "template.yaml", time_factor=TIME_FACTOR, seed=SEED, jump_when_idle=JUMP_WHEN_IDLE,
                      run_schedules=False) as (local, control):
        yield Stack(local, control, ReleaseDriver(control, timeout=900), local.stack.outputs["SampleServiceFunctionName"])


@pytest.fixture
def faulty(stack, request):
    """The module's stack with the policy that walks HAPPY_PATH; no fault outlives the test."""
    stack.set_policy(approval="manual", rollout="AllAtOnce", post_promotion_watch_seconds=60,
                     canary_weight=0.1, min_canary_invocations=20, judge={})
    stack.label = request.node.name
    stack.mark = len(stack.local.runtime.faults.fired())
    try:
        yield stack
    finally:
        stack.local.runtime.faults.clear()


def use_policy_for(pipeline, name: str) -> None:
    if name == "send_synthetic":
        pipeline.set_policy(**SYNTHETIC_POLICY)


def inject(pipeline, function: str, fault: Fault, **attempts) -> str:
    return pipeline.local.inject_fault(function, fault, **attempts)


def fired(pipeline, name: str) -> list[int]:
    """The attempts of ``name`` that failed in this test (faults are cleared after each)."""
    return [f.attempt for f in pipeline.local.runtime.faults.fired()[pipeline.mark:] if f.function_name == name]


def scheduled(pipeline, run, state: str) -> int:
    """How many times the state's task was scheduled (every entry, 1 + its retries each)."""
    count, inside = 0, False
    for event in execution_history(pipeline.control.client("stepfunctions"), run.execution_arn):
        if "stateEnteredEventDetails" in event:
            inside = event["stateEnteredEventDetails"]["name"] == state
        elif inside and event["type"] == "TaskScheduled":
            count += 1
    return count


def assert_nothing_left(pipeline, run: ReleaseRun, service: str = "support-bot") -> None:
    """No lock held, no release record of the service at a non-final status, no canary alarm
    of the release (a RollbackFailed release of an earlier test leaves its alarms, on purpose)."""
    ledger = pipeline.control.ledger()
    assert ledger.lock_holder(service) is None
    open_records = [(r["release_id"], r.get("status")) for r in ledger.list_releases(service=service, limit=200)
                    if r.get("status") not in FINAL_STATUSES]
    assert not open_records
    assert not [a for a in pipeline.alarms() if "-canary-" in a and run.release_id in a]


def transient_faults(task: Task) -> list[Fault]:
    """A throttle, then a 500 after the handler ran (its side effects happened, the result was
    lost), so the retry must be idempotent. A callback task's second fault comes before its
    handler: a handler that ran would have handed out a task token the retry replaces, and
    the approver (or the bake's alarm) would race the two tokens."""
    return [Fault.throttled(), Fault.service_error(after_handler=not task.callback)]


def test_the_release_without_faults_walks_the_happy_path(faulty):
    live_before, _ = faulty.live()
    run = faulty.release(faulty.label)
    assert run.path == HAPPY_PATH, run.record.get("reason")
    assert run.status == "Promoted"
    assert faulty.live() == (str(run.record["candidate_version"]), {}) != (live_before, {})
    assert_nothing_left(faulty, run)
    assert not faulty.local.runtime.faults.fired()[faulty.mark:]


def test_the_synthetic_release_without_faults_sends_synthetic_traffic_and_is_promoted(faulty):
    use_policy_for(faulty, "send_synthetic")
    run = faulty.release(faulty.label)
    assert run.status == "Promoted", run.record.get("reason")
    assert "SendSynthetic" in run.path and run.path[-3:] == ["Promote", "Attest", "Promoted"]
    assert_nothing_left(faulty, run)


@dataclass
class TransientRun:
    """One release with every task's transient faults armed at once, and what fired."""

    run: ReleaseRun
    fired: dict[str, list[int]]  # function name -> its attempts that failed
    functions: dict[str, str]  # task name -> its function's name
    live: tuple[str, dict]  # the live alias right after the release


@pytest.fixture(scope="module")
def all_transient(stack):
    """A transient fault in every task of HAPPY_PATH, all armed for one release: each task's
    Retry is its own (per state), so the faults don't interact, and one release serves every
    task's test below instead of one release each. SendSynthetic runs only under another
    policy, so it gets a release of its own (``synthetic_transient``)."""
    yield _transient_release(stack, [name for name in TASKS if name != "send_synthetic"], "transient in every task")


@pytest.fixture(scope="module")
def synthetic_transient(stack):
    yield _transient_release(stack, ["send_synthetic"], "transient in send_synthetic")


def _transient_release(stack, names: list[str], label: str) -> TransientRun:
    stack.set_policy(approval="manual", rollout="AllAtOnce", post_promotion_watch_seconds=60,
                     canary_weight=0.1, min_canary_invocations=20, judge={})
    if names == ["send_synthetic"]:
        stack.set_policy(**SYNTHETIC_POLICY)
    mark = len(stack.local.runtime.faults.fired())
    functions = {}
    try:
        for name in names:
            first, second = transient_faults(TASKS[name])
            functions[name] = inject(stack, TASKS[name].function, first, attempts=[1])
            inject(stack, TASKS[name].function, second, attempts=[2])
        run = stack.release(label)
        fired: dict[str, list[int]] = {}
        for fault in stack.local.runtime.faults.fired()[mark:]:
            fired.setdefault(fault.function_name, []).append(fault.attempt)
        return TransientRun(run, fired, functions, stack.live())
    finally:
        stack.local.runtime.faults.clear()


@pytest.mark.parametrize("name", TASKS)
def test_a_transient_fault_is_retried_and_the_release_ends_as_without_it(faulty, name, request):
    # Given the task's function failed its first two invocations transiently (in one release
    # with every task's faults armed; SendSynthetic's in a release of its own)
    task = TASKS[name]
    transient = request.getfixturevalue("synthetic_transient" if name == "send_synthetic" else "all_transient")
    run, function = transient.run, transient.functions[name]
    # Then both faults happened, the task's Retry absorbed them, and nothing else changed
    assert transient.fired.get(function) == [1, 2]
    assert run.execution["status"] == "SUCCEEDED" and run.status == "Promoted", run.record.get("reason")
    if name == "send_synthetic":
        assert task.state in run.path
    else:
        assert run.path == HAPPY_PATH
    if name not in ("evaluate", "send_synthetic"):  # evaluate: the shards run as child executions
        assert scheduled(faulty, run, task.state) == HAPPY_PATH.count(task.state) + 2
    assert transient.live == (str(run.record["candidate_version"]), {})
    assert_nothing_left(faulty, run)


@pytest.mark.parametrize("name", TASKS)
def test_a_permanent_fault_ends_the_release_with_the_failing_task_named_and_live_untouched(faulty, name):
    # Given the task's function fails on every invocation (an unhandled exception)
    task = TASKS[name]
    use_policy_for(faulty, name)
    live_before = faulty.live()
    function = inject(faulty, task.function, Fault.unhandled("InjectedFault", "disk full"), from_attempt=1)
    # When the release runs
    run = faulty.release(faulty.label)
    # Then it failed at its first invocation and was not retried (not transient); a task
    # after traffic moved rolls back, one before it records the outcome
    assert fired(faulty, function) == [1]
    closing = ["Rollback"] if task.traffic else ["RecordOutcome"]
    if name == "promote":  # the ledger is read first: not promoted, so Promote's failure rolls back
        closing = ["CheckPromoted", "PromotedAnyway", "Rollback"]
    assert run.path[-3 - len(closing):] == [task.state, *closing, "AttestEnd", "ReleaseFailed"], run.path
    # (a failed shard fails the Distributed Map's run: its error is the Map Run's)
    error = "ExceedToleratedFailureThreshold" if name == "evaluate" else "InjectedFault"
    assert run.execution["status"] == "FAILED" and run.execution.get("error") == error
    # And the ledger's final status says why, naming the failing task
    assert run.status == ("RolledBack" if task.traffic else "Failed")
    assert run.record["reason"].startswith(f"the {task.state} step failed: "), run.record["reason"]
    assert ("1 of 1 items failed" if name == "evaluate" else "InjectedFault: disk full") in run.record["reason"]
    # And the lock is free and the live alias exactly as before
    assert faulty.live() == live_before
    assert_nothing_left(faulty, run)


# ------------------------------------------------------------------ the closing steps
def test_a_transient_fault_in_rollback_is_retried_and_the_release_is_rolled_back(faulty):
    # Given the canary's judge fails for good, and Rollback's first two invocations fail transiently
    live_before = faulty.live()
    inject(faulty, "CheckCanaryFunction", Fault.unhandled("InjectedFault", "judge crashed"), from_attempt=1)
    rollback = inject(faulty, "RollbackFunction", Fault.throttled(), attempts=[1])
    inject(faulty, "RollbackFunction", Fault.service_error(after_handler=True), attempts=[2])
    # When the release runs
    run = faulty.release(faulty.label)
    # Then Rollback was retried and did its work: rolled back, live as before
    assert fired(faulty, rollback) == [1, 2]
    assert run.path[-4:] == ["CheckCanary", "Rollback", "AttestEnd", "ReleaseFailed"]
    assert scheduled(faulty, run, "Rollback") == 3
    assert run.status == "RolledBack" and "InjectedFault: judge crashed" in run.record["reason"]
    assert faulty.live() == live_before
    assert_nothing_left(faulty, run)


def test_a_permanent_fault_in_rollback_ends_rollback_failed_through_the_last_resort(faulty):
    # Given the canary's judge and Rollback both fail for good
    live_before = faulty.live()
    inject(faulty, "CheckCanaryFunction", Fault.unhandled("InjectedFault", "judge crashed"), from_attempt=1)
    inject(faulty, "RollbackFunction", Fault.unhandled("InjectedFault", "rollback crashed"), from_attempt=1)
    # When the release runs
    run = faulty.release(faulty.label)
    # Then the last resort closed it (the ledger read first found no rollback recorded): RollbackFailed,
    # naming Rollback and why it was rolling back
    assert run.path[-10:] == ["CheckCanary", "Rollback", "CheckRolledBack", "RolledBackAnyway", "RollbackStepFailed",
                              "LastResortRecord",
                             "LastResortUnlock", "LastResortAlert", "LastResortAttest", "LastResortFailed"]
    assert scheduled(faulty, run, "Rollback") == 1
    assert run.execution.get("error") == "RollbackFailed"
    assert run.status == "RollbackFailed"
    assert run.record["reason"].startswith("the rollback step failed: Rollback ended with InjectedFault")
    assert "the rollback was for InjectedFault" in run.record["reason"]
    # And the lock is free and no record is left open; the candidate's traffic is what the
    # alert tells humans to undo (without the Rollback function nothing moves the alias back)
    assert faulty.control.ledger().lock_holder("support-bot") is None
    assert all(r["status"] in FINAL_STATUSES for r in faulty.control.ledger().list_releases(service="support-bot"))
    assert faulty.live() != live_before
    # When the operator runs what the alert names (`modelgate rollback support-bot`), which also
    # leaves the module's next release a clean start whatever order the tests run in
    from modelgate.pipeline.outcome import rollback_service

    with faulty.control.acting("operator"):
        result = rollback_service(faulty.control.deps(), "support-bot", "operator", "after RollbackFailed")
    # Then live is back where it was before the release, the release's canary alarms are gone,
    # and the release is recorded rolled back by hand
    assert faulty.live() == live_before and result["release_id"] == run.release_id
    assert not [a for a in faulty.alarms() if run.release_id in a]
    assert faulty.control.ledger().get(run.release_id)["status"] == "RolledBack"


def test_a_transient_fault_in_record_outcome_is_retried_and_the_release_is_recorded(faulty):
    # Given the gate fails for good, and RecordOutcome's first two invocations fail transiently
    live_before = faulty.live()
    inject(faulty, "GateFunction", Fault.unhandled("InjectedFault", "gate crashed"), from_attempt=1)
    outcome = inject(faulty, "RecordOutcomeFunction", Fault.throttled(), attempts=[1])
    inject(faulty, "RecordOutcomeFunction", Fault.service_error(after_handler=True), attempts=[2])
    # When the release runs
    run = faulty.release(faulty.label)
    # Then RecordOutcome was retried and recorded the failure itself (no last resort)
    assert fired(faulty, outcome) == [1, 2]
    assert run.path[-4:] == ["Gate", "RecordOutcome", "AttestEnd", "ReleaseFailed"]
    assert scheduled(faulty, run, "RecordOutcome") == 3
    assert run.status == "Failed" and "InjectedFault: gate crashed" in run.record["reason"]
    assert all(entry["actor"] != "state machine (last resort)" for entry in run.record["history"])
    assert faulty.live() == live_before
    assert_nothing_left(faulty, run)


def test_a_permanent_fault_in_record_outcome_is_closed_by_the_last_resort(faulty):
    # Given the gate and RecordOutcome both fail for good
    live_before = faulty.live()
    inject(faulty, "GateFunction", Fault.unhandled("InjectedFault", "gate crashed"), from_attempt=1)
    inject(faulty, "RecordOutcomeFunction", Fault.unhandled("InjectedFault", "ledger crashed"), from_attempt=1)
    # When the release runs
    run = faulty.release(faulty.label)
    # Then the last resort wrote the final status (DynamoDB directly), freed the lock and alerted
    assert run.path[-10:] == ["Gate", "RecordOutcome", "CheckRecorded", "RecordedAnyway", "OutcomeStepFailed",
                              "LastResortRecord",
                             "LastResortUnlock", "LastResortAlert", "LastResortAttest", "LastResortFailed"]
    assert run.execution.get("error") == "RecordOutcomeFailed"
    assert run.status == "Failed"
    assert run.record["reason"].startswith("the outcome step failed: RecordOutcome ended with InjectedFault")
    assert "ending with InjectedFault" in run.record["reason"]
    assert run.record["history"][-1]["actor"] == "state machine (last resort)"
    assert faulty.live() == live_before
    assert_nothing_left(faulty, run)


# ------------------------------------------------------------------ a function timeout (Sandbox.Timedout)
def last_resort_entries(run: ReleaseRun) -> list[dict]:
    return [entry for entry in run.record["history"] if entry["actor"] == "state machine (last resort)"]


def assert_attested(pipeline, run: ReleaseRun) -> None:
    """The release is chained and its attestation signed and valid (modelgate verify passes)."""
    from modelgate_harness.trail import verify_release

    assert not run.record.get("attestation_error")
    report = verify_release(pipeline.control, run.release_id)
    assert [(name, detail) for name, ok, detail in report.checks if not ok] == []


def test_a_promote_that_times_out_after_its_write_every_time_ends_promoted_without_a_rollback(faulty):
    # Given Promote's function does its work and then times out, on every attempt (the first
    # writes Promoted, its retries find it so; every one reports Sandbox.Timedout)
    promote = inject(faulty, "PromoteFunction", Fault.timed_out(after_handler=True), from_attempt=1)
    # When the release runs
    run = faulty.release(faulty.label)
    # Then the timeout was retried twice, then the ledger read found the release promoted: no
    # Rollback, no last resort, and the execution ends as a promotion does, attested
    assert fired(faulty, promote) == [1, 2, 3]
    assert scheduled(faulty, run, "Promote") == 3
    assert run.path == [*HAPPY_PATH[:-2], "CheckPromoted", "PromotedAnyway", "EndedUnlock", "EndedThen",
                        "Attest", "Promoted"], run.path
    assert run.execution["status"] == "SUCCEEDED" and run.status == "Promoted", run.record.get("reason")
    assert not last_resort_entries(run) and "RollbackFailed" not in str(run.record)
    assert_attested(faulty, run)
    # And live serves the candidate alone; no lock, no canary alarm, no open record is left
    assert faulty.live() == (str(run.record["candidate_version"]), {})
    assert_nothing_left(faulty, run)


def test_a_promote_that_times_out_before_its_handler_completes_is_retried_and_promoted(faulty):
    # Given Promote's first invocation times out without its handler completing (nothing written)
    promote = inject(faulty, "PromoteFunction", Fault.timed_out(), attempts=[1])
    # When the release runs
    run = faulty.release(faulty.label)
    # Then the retry promoted it: the happy path, Promote scheduled twice
    assert fired(faulty, promote) == [1]
    assert run.path == HAPPY_PATH, run.path
    assert scheduled(faulty, run, "Promote") == 2
    assert run.execution["status"] == "SUCCEEDED" and run.status == "Promoted"
    assert_attested(faulty, run)
    assert faulty.live() == (str(run.record["candidate_version"]), {})
    assert_nothing_left(faulty, run)


def test_a_record_outcome_that_times_out_after_its_write_every_time_ends_as_recorded(faulty):
    # Given PlanEvaluation fails for good (after AcquireLock took the service's lock), and
    # RecordOutcome's function records the failure and then times out, on every attempt
    live_before = faulty.live()
    inject(faulty, "PlanEvaluationFunction", Fault.unhandled("InjectedFault", "dataset unreadable"), from_attempt=1)
    outcome = inject(faulty, "RecordOutcomeFunction", Fault.timed_out(after_handler=True), from_attempt=1)
    # When the release runs
    run = faulty.release(faulty.label)
    # Then after RecordOutcome's retries the ledger read found the release closed by its write:
    # the execution ends as RecordOutcome would have ended it, with no last resort and no alert
    assert fired(faulty, outcome) == [1, 2, 3]
    assert run.path[-9:] == ["PlanEvaluation", "RecordOutcome", "CheckRecorded", "RecordedAnyway", "EndedUnlock",
                             "EndedThen", "EndedOutcome", "AttestEnd", "ReleaseFailed"], run.path
    assert (run.execution["status"], run.execution.get("error")) == ("FAILED", "InjectedFault")
    assert run.execution.get("cause") == run.record["reason"]
    # And the ledger says why, naming the failing step, as written by RecordOutcome itself
    assert run.status == "Failed" and not last_resort_entries(run)
    assert run.record["reason"] == "the PlanEvaluation step failed: InjectedFault: dataset unreadable"
    assert_attested(faulty, run)
    # And the lock is free, live untouched
    assert faulty.live() == live_before
    assert_nothing_left(faulty, run)


# ---------------------------------------------------------------------- throttled SDK calls in a handler
@pytest.fixture
def throttles(faulty, monkeypatch):
    """The module's stack; SDK throttles cleared after the test. botocore's backoff waits are
    recorded as it computes them and not slept (a persistent throttle's five waits would add up
    to 31 s): the retries themselves are botocore's own."""
    from botocore.retries.standard import ExponentialBackoff

    waits: list[float] = []
    original = ExponentialBackoff.delay_amount

    def delay_amount(self, context):
        waits.append(original(self, context))
        return 0.0

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", delay_amount)
    faulty.waits = waits
    faulty.sdk_mark = len(faulty.local.sdk_faults.fired())  # what fired in earlier tests stays recorded
    try:
        yield faulty
    finally:
        faulty.local.sdk_faults.clear()


def throttled(pipeline, service: str, operation: str) -> list:
    """The SDK throttles that fired during this test (``throttles`` marks where it began)."""
    fired = pipeline.local.sdk_faults.fired()[pipeline.sdk_mark:]
    return [f for f in fired if (f.service, f.operation) == (service, operation)]


def test_a_throttled_alias_update_in_shift_traffic_is_absorbed_by_the_sdks_retries(throttles):
    # Given Lambda throttles ShiftTraffic's first two UpdateAlias calls (TooManyRequestsException)
    live_before = throttles.live()
    shift = throttles.local.throttle_sdk("lambda", "UpdateAlias", times=2, function="ShiftTrafficFunction")
    # When the release runs
    run = throttles.release(throttles.label)
    # Then botocore retried inside the one invocation (no Step Functions retry, no fault reached the
    # ASL) and the release walked the happy path to Promoted
    assert [f.function for f in throttled(throttles, "lambda", "UpdateAlias")] == [shift.function] * 2
    assert run.path == HAPPY_PATH, run.record.get("reason")
    assert scheduled(throttles, run, "ShiftTraffic") == 1
    assert run.status == "Promoted" and throttles.live() != live_before
    assert_nothing_left(throttles, run)


def test_a_persistent_throttle_in_shift_traffic_ends_the_release_cleanly(throttles):
    # Given Lambda throttles every UpdateAlias ShiftTraffic makes (Rollback's own calls go through)
    live_before = throttles.live()
    throttles.local.throttle_sdk("lambda", "UpdateAlias", times=None, function="ShiftTrafficFunction")
    # When the release runs
    run = throttles.release(throttles.label)
    # Then ShiftTraffic's UpdateAlias was retried by the SDK (5 retries: 6 calls) before it gave up
    # (the exact count is not asserted: ShiftTraffic's fenced update may try again after the SDK gives
    # up, and a cut invocation makes fewer), and the release ended at a final status that names the
    # throttle, with live untouched and nothing left behind
    calls = throttled(throttles, "lambda", "UpdateAlias")
    assert len(calls) >= 6 and scheduled(throttles, run, "ShiftTraffic") >= 1, len(calls)
    assert run.status in FINAL_STATUSES and run.status != "Promoted", run.status
    assert "TooManyRequestsException" in run.record["reason"], run.record["reason"]
    assert throttles.live() == live_before
    assert_nothing_left(throttles, run)


def operations_inbox(pipeline):
    """What reaches the operations topic from now on: an SQS queue subscribed to it, read on demand."""
    import json

    sqs, sns = pipeline.control.client("sqs"), pipeline.control.client("sns")
    url = sqs.create_queue(QueueName=f"operations-inbox-{pipeline.label[:40]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=pipeline.control.outputs["OperationsTopicArn"], Protocol="sqs", Endpoint=arn)

    def read() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    return read


def test_a_persistent_kms_throttle_in_attest_leaves_the_release_promoted_unattested_and_alerts(throttles):
    from modelgate_harness.driver import wait_until
    from modelgate_harness.trail import verify_release

    from modelgate.attestation import attestation_key
    from modelgate.chain import LedgerChain

    # Given KMS throttles every Sign call the Attest function makes, and operations' inbox
    inbox = operations_inbox(throttles)
    throttles.local.throttle_sdk("kms", "Sign", times=None, function="AttestFunction")
    # When a release runs to its promotion
    run = throttles.release(throttles.label)
    # Then botocore retried Sign (6 calls) and Attest failed; the release stays promoted, and the
    # execution ends as a promotion does, through the attestation-failure path
    assert len(throttled(throttles, "kms", "Sign")) >= 6
    assert run.path == [*HAPPY_PATH[:-1], "AttestFailedRecord", "AttestFailedAlert", "AttestFailedThen", "Promoted"]
    assert run.execution["status"] == "SUCCEEDED" and run.status == "Promoted"
    # And the ledger says the attestation is missing, naming the error
    assert run.record["attestation_error"].startswith("missing: the attest step failed after its retries")
    assert "ThrottlingException" in run.record["attestation_error"]
    # And operations were told which release and why
    (alert,) = wait_until(inbox, HANG_GUARD_SECONDS, "the attestation alert")
    assert alert["Subject"] == "Modelgate: a release is not attested"
    assert run.release_id in alert["Message"] and "ThrottlingException" in alert["Message"]
    # And the release is chained (the append came before the signature) but has no attestation:
    # verify says so, and nothing else fails
    chained = [r for r in LedgerChain(throttles.control.ledger().table).read(SERVICE)[0] if r.release_id == run.release_id]
    assert [r.body["status"] for r in chained] == ["Promoted"]
    report = verify_release(throttles.control, run.release_id)
    failed = [(name, detail) for name, ok, detail in report.checks if not ok]
    assert [name for name, _ in failed] == ["attestation"]
    assert failed[0][1].startswith(f"no attestation at s3://{throttles.control.bucket}/"
                                   f"{attestation_key(SERVICE, run.release_id)}; the ledger says: missing: ")
    assert_nothing_left(throttles, run)
