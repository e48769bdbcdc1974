"""Canary stage: shift traffic per rollout step, arm the bake (an alarm already firing ends
it), judge the step (alarms, then candidate vs stable), send synthetic traffic, fail a bake
when an alarm fires."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from modelgate import clock
from modelgate.canary_judge import JudgePolicy
from modelgate.errors import CanaryAlarm, CanaryRegression, NotEnoughEvidence
from modelgate.pipeline.canary import (
    SYNTHETIC_RESERVE_MS,
    check_canary,
    on_alarm,
    send_synthetic,
    shift_traffic,
    start_bake,
)
from modelgate.policy import ReleasePolicy

RELEASE = "support-bot-abc1234def0-0123456789"
ALARM = f"test-canary-{RELEASE}-errors"


def canary_ctx(world, *, step: int | None = 0, policy: ReleasePolicy | None = None, **fields):
    """A release whose candidate (version 2) takes the given rollout step beside live (version 1),
    holding its service's lease."""
    policy = policy or ReleasePolicy()
    generation = world.ledger.acquire_lock("support-bot", RELEASE, 3600)
    values = {"live_version": "1", "candidate_version": "2", "canary_alarms": [ALARM], "policy": policy,
              "lease_generation": generation}
    if step is not None:
        values["step"] = policy.step_plan()[step]
    values.update(fields)
    return world.context(RELEASE, **values)


def baked(world, *, policy: ReleasePolicy | None = None, step: int = 0, minutes: int = 10, **fields):
    """A release at the end of a step's bake that started ``minutes`` ago, alarm quiet, bake token kept."""
    world.put_alarm(ALARM)
    world.ledger.put_token(RELEASE, "bake", "bake-token")
    started = (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat()
    return canary_ctx(world, policy=policy, step=step, step_started_at=started, canary_started_at=started, **fields)


def traffic(world, *, candidate: tuple[int, int], stable: tuple[int, int]) -> None:
    """What Lambda reported during the bake: (invocations, errors) per side, two minutes ago."""
    at = datetime.now(timezone.utc) - timedelta(minutes=2)
    world.lambda_traffic("2", invocations=candidate[0], errors=candidate[1], at=at)
    world.lambda_traffic("1", invocations=stable[0], errors=stable[1], at=at)


# ---------------------------------------------------------------------- shift_traffic
def test_the_first_step_creates_the_alarms_on_the_candidate_and_sets_its_weight(world):
    # Given a candidate (version 2) published beside live (version 1), no step taken yet
    world.service_function()
    world.publish(RELEASE)
    ctx = canary_ctx(world, step=None, canary_alarms=[])
    # When traffic shifts
    out = shift_traffic(world.deps, ctx)
    # Then live sends 10% to the candidate
    assert world.alias() == ("1", {"2": 0.1})
    # And the policy's alarm watches the candidate alone, owned by this release
    [alarm] = world.deps.cloudwatch.describe_alarms()["MetricAlarms"]
    assert alarm["AlarmName"] == ALARM and out.canary_alarms == [ALARM]
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]}["ExecutedVersion"] == "2"
    assert world.ledger.alarm_owner(ALARM)["release_id"] == RELEASE
    # And the state and the ledger are at step 1
    assert (out.step.index, out.step.weight, out.step.is_final) == (0, 0.1, False)
    assert out.canary_started_at and out.step_started_at
    assert world.ledger.get(RELEASE)["status"] == "Canary"


def test_the_final_step_keeps_the_alias_weighted_at_99_99_percent(world):
    # Given a release past its canary step, its alarm created then
    world.service_function()
    world.publish(RELEASE)
    world.canary(stable="1", candidate="2")
    world.put_alarm(ALARM)
    ctx = canary_ctx(world, step=1, canary_started_at="2026-01-01T00:00:00+00:00")
    # When traffic shifts to the final step
    out = shift_traffic(world.deps, ctx)
    # Then the alias is still weighted (ExecutedVersion is documented for weighted aliases
    # only): stable as its version, the candidate as the additional version at 99.99%
    assert world.alias() == ("1", {"2": 0.9999})
    assert (out.step.weight, out.step.is_final) == (0.9999, True)
    # And the alarms are the same ones, on ExecutedVersion (rollback still armed), the canary's start kept
    assert world.alarm_names() == [ALARM]
    assert out.canary_started_at == "2026-01-01T00:00:00+00:00"
    # And the ledger says what the alias routes, not 100%
    record = world.ledger.get(RELEASE)
    assert record["status"] == "Watching"
    detail = record["history"][-1]["detail"]
    assert "99.99% of" in detail and "0.01% still on version 1" in detail and "100%" not in detail


def test_a_final_step_at_weight_1_from_an_older_plan_is_refused_not_made_unweighted(world):
    # Given a context planned before the final bake stayed weighted (its last step at 1.0)
    world.service_function()
    world.publish(RELEASE)
    world.canary(stable="1", candidate="2")
    world.put_alarm(ALARM)
    ctx = canary_ctx(world, step=1)
    ctx = ctx.model_copy(update={"step": ctx.step.model_copy(update={"weight": 1.0})})
    # When traffic shifts / Then it is refused, saying why, and the alias is untouched
    with pytest.raises(ValueError, match="rounds to 1.0"):
        shift_traffic(world.deps, ctx)
    assert world.alias() == ("1", {"2": 0.1})


# ---------------------------------------------------------------------- start_bake
def test_an_alarm_already_in_alarm_fails_the_bake_when_it_starts(world):
    # Given a canary alarm already in ALARM (no state change event will come)
    world.put_alarm(ALARM, state="ALARM", reason="5 errors")
    # When the bake starts, Then it fails at once, naming the alarm, and keeps no token
    with pytest.raises(CanaryAlarm, match=f"{ALARM} is in ALARM: 5 errors .*already firing"):
        start_bake(world.deps, canary_ctx(world), "token-1")
    assert world.ledger.get_token(RELEASE, "bake") is None


def test_a_quiet_alarm_arms_the_bake(world):
    # Given the canary's alarm quiet
    world.put_alarm(ALARM)
    # When the bake starts / Then its token is kept for the alarm handler
    assert start_bake(world.deps, canary_ctx(world), "token-1") == {"release_id": RELEASE, "armed": True}
    assert world.ledger.get_token(RELEASE, "bake") == "token-1"
    assert world.ledger.get(RELEASE)["status"] == "Baking"


# ---------------------------------------------------------------------- on_alarm
def test_an_alarm_event_fails_the_bake_with_the_reason_once(world):
    # Given a bake armed by a release owning the alarm
    world.put_alarm(ALARM)
    world.ledger.put_alarm_owner(ALARM, RELEASE, "support-bot")
    start_bake(world.deps, canary_ctx(world), "token-1")
    # When the alarm's state-change event arrives
    result = on_alarm(world.deps, ALARM, "Threshold Crossed")
    # Then the bake task fails with the alarm and its reason
    assert result["action"] == "bake failed"
    assert world.sfn.sent == [("send_task_failure", {
        "taskToken": "token-1", "error": "CanaryAlarm", "cause": f"alarm {ALARM} is in ALARM: Threshold Crossed"})]
    # And a second event for the same alarm finds no bake waiting: nothing is sent twice
    assert on_alarm(world.deps, ALARM, "again")["action"] == "none"
    assert len(world.sfn.sent) == 1


def test_an_alarm_nobody_owns_is_ignored(world):
    assert on_alarm(world.deps, "someone-elses-alarm", "x") == {
        "alarm": "someone-elses-alarm", "action": "ignored", "why": "no release owns this alarm"}
    assert world.sfn.sent == []


def test_an_alarm_before_the_bake_is_armed_is_left_to_start_bake(world):
    # Given a release owning the alarm but not baking (no token yet)
    world.ledger.put_alarm_owner(ALARM, RELEASE, "support-bot")
    # When the alarm fires / Then nothing is sent: start_bake reads the alarm's state itself
    assert on_alarm(world.deps, ALARM, "x")["why"] == "not baking"
    assert world.sfn.sent == []


def test_an_orphaned_alarm_of_a_release_that_ended_is_deleted_when_it_fires(world):
    # Given the alarm of a release that ended (superseded) without deleting it, holding no lease
    world.put_alarm(ALARM)
    world.ledger.put_alarm_owner(ALARM, RELEASE, "support-bot")
    world.ledger.record(RELEASE, "Superseded", "by a newer one")
    # When it fires / Then it is deleted with its owner, and nothing is sent
    result = on_alarm(world.deps, ALARM, "x")
    assert result["action"] == "orphan deleted" and "ended Superseded and holds no lease" in result["why"]
    assert world.alarm_names() == [] and world.ledger.alarm_owner(ALARM) is None
    assert world.sfn.sent == []


@pytest.mark.parametrize("status", ["Canary", "Promoted"])
def test_an_alarm_of_a_release_in_flight_or_holding_its_lease_is_kept(world, status):
    # Given the alarm of a release in its canary, or one that ended but still holds its lease (Promote running)
    world.put_alarm(ALARM)
    world.ledger.put_alarm_owner(ALARM, RELEASE, "support-bot")
    world.ledger.acquire_lock("support-bot", RELEASE, 3600)
    world.ledger.record(RELEASE, status, "x")
    # When it fires outside a bake / Then it is left alone
    assert on_alarm(world.deps, ALARM, "x")["why"] == "not baking"
    assert world.alarm_names() == [ALARM]


def test_an_alarm_after_the_bake_task_ended_does_nothing(world):
    # Given a bake token whose task already ended (timed out into CheckCanary)
    world.ledger.put_alarm_owner(ALARM, RELEASE, "support-bot")
    world.ledger.put_token(RELEASE, "bake", "token-1")
    world.sfn.gone = "TaskTimedOut"
    # When the alarm fires / Then it says the task already ended, and the token is used up
    assert on_alarm(world.deps, ALARM, "x") == {
        "alarm": ALARM, "release_id": RELEASE, "action": "none", "why": "task already ended"}
    assert world.ledger.get_token(RELEASE, "bake") is None


# ---------------------------------------------------------------------- check_canary
def test_an_alarm_firing_at_the_end_of_the_bake_is_a_canary_alarm(world):
    # Given a bake that ends with its alarm in ALARM (and healthy-looking numbers)
    ctx = baked(world)
    world.deps.cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="3 errors")
    traffic(world, candidate=(100, 0), stable=(900, 0))
    # When the canary is checked / Then the alarm decides, naming itself
    with pytest.raises(CanaryAlarm, match=f"alarm {ALARM} is in ALARM: 3 errors"):
        check_canary(world.deps, ctx)
    # And the bake's token is used up (a late alarm event sends nothing)
    assert world.ledger.get_token(RELEASE, "bake") is None


def test_a_candidate_measurably_worse_than_stable_is_a_regression(world):
    # Given 20 errors in 100 candidate calls against none in 900 stable calls
    ctx = baked(world)
    traffic(world, candidate=(100, 20), stable=(900, 0))
    # When the canary is checked / Then the judge's numbers are in the regression
    with pytest.raises(CanaryRegression, match=r"candidate 20/100 .* vs stable 0/900"):
        check_canary(world.deps, ctx)
    record = world.ledger.get(RELEASE)
    assert record["status"] == "CanaryJudged" and record["verdict"]["verdict"] == "fail"


def test_too_little_traffic_after_every_extension_is_not_enough_evidence(world):
    # Given a bake already extended twice (the policy's maximum), and 5 candidate calls
    ctx = baked(world, extensions_used=2)
    traffic(world, candidate=(5, 0), stable=(45, 0))
    # When the canary is checked / Then it rolls back: missing evidence is never a pass
    with pytest.raises(NotEnoughEvidence, match="already extended 2 of 2 times"):
        check_canary(world.deps, ctx)


def test_a_policy_failing_on_little_evidence_rolls_back_at_once(world):
    ctx = baked(world, policy=ReleasePolicy(judge=JudgePolicy(on_not_enough_evidence="fail")))
    traffic(world, candidate=(5, 0), stable=(45, 0))
    with pytest.raises(NotEnoughEvidence, match="policy: not enough evidence fails the canary"):
        check_canary(world.deps, ctx)


@pytest.mark.parametrize("action", ["wait", "synthetic"])
def test_too_little_traffic_returns_the_policys_action(world, action):
    # Given a policy that extends the bake (or sends synthetic traffic) when evidence is short
    ctx = baked(world, policy=ReleasePolicy(judge=JudgePolicy(on_not_enough_evidence=action)))
    traffic(world, candidate=(5, 0), stable=(45, 0))
    # When the canary is checked
    out = check_canary(world.deps, ctx)
    # Then NextStep is told to do that, the extension counted, the step unchanged
    assert (out.judge_action, out.extensions_used) == (action, 1)
    assert out.step == ctx.step


def test_a_healthy_step_proceeds_to_the_next_planned_step(world):
    # Given a Linear rollout at its first step, and a healthy candidate
    policy = ReleasePolicy(rollout="Linear10PercentEvery1Minute")
    ctx = baked(world, policy=policy, step=0, extensions_used=1)
    traffic(world, candidate=(100, 0), stable=(900, 0))
    # When the canary is checked
    out = check_canary(world.deps, ctx)
    # Then the release proceeds to the second planned step (20%), extensions reset
    assert out.judge_action == "proceed" and out.extensions_used == 0
    assert out.step == policy.step_plan()[1] and out.step.weight == 0.2
    assert world.ledger.get(RELEASE)["verdict"]["verdict"] == "pass"


@pytest.mark.parametrize(("delay", "judged"), [(60, "pass"), (0, "fail")])
def test_the_judge_window_ends_the_policys_metrics_delay_before_now(world, delay, judged):
    # Given the clock at 12:00:30, a healthy bake until 11:58, and candidate errors at
    # 11:59:45, which a 60 s metrics delay says are not complete yet
    now = datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC)
    uninstall = clock.install(lambda: now)
    try:
        policy = ReleasePolicy(metrics_delay_seconds=delay)
        world.put_alarm(ALARM)
        world.ledger.put_token(RELEASE, "bake", "bake-token")
        started = (now - timedelta(minutes=15)).isoformat()
        ctx = canary_ctx(world, policy=policy, step=0, step_started_at=started, canary_started_at=started)
        world.lambda_traffic("2", invocations=100, errors=0, at=now - timedelta(minutes=3))
        world.lambda_traffic("1", invocations=900, errors=0, at=now - timedelta(minutes=3))
        world.lambda_traffic("2", invocations=100, errors=30, at=now - timedelta(seconds=45))
        # When the canary is checked
        if judged == "fail":
            with pytest.raises(CanaryRegression):
                check_canary(world.deps, ctx)
        else:
            check_canary(world.deps, ctx)
    finally:
        uninstall()
    # Then with the delay the window ends at 11:59 and the late minute is left to the next
    # judgement (and the alarms); with none it is counted
    assert world.ledger.get(RELEASE)["verdict"]["verdict"] == judged


def test_after_the_final_step_no_step_is_left(world):
    # Given the final bake (99.99% on the candidate: too little stable traffic to judge against)
    ctx = baked(world, step=1)
    # When the canary is checked with its alarm quiet / Then nothing is left but promotion
    out = check_canary(world.deps, ctx)
    assert out.judge_action == "proceed" and out.step is None


# ---------------------------------------------------------------------- send_synthetic
class LiveAlias:
    """The service's live alias as synthetic traffic calls it (answers, or fails every n-th call).

    ``together``: the first that many calls wait for each other (a barrier) before answering,
    so they can only finish if they were in flight at the same time. ``hold``: every call
    waits for this event. ``error``: every call raises it (Invoke itself failed).
    ``on_call``: run at each call (e.g. to spend the caller's time)."""

    def __init__(self, fail_every: int = 0, *, together: int = 0, hold: threading.Event | None = None,
                 error: Exception | None = None, on_call=None) -> None:
        self.calls: list[tuple[str, str, dict]] = []
        self.fail_every = fail_every
        self.barrier = threading.Barrier(together) if together else None
        self.hold, self.error, self.on_call = hold, error, on_call
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0

    def invoke(self, *, FunctionName, Qualifier, Payload):
        with self.lock:
            self.calls.append((FunctionName, Qualifier, json.loads(Payload)))
            number = len(self.calls)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.on_call:
                self.on_call()
            if self.barrier and number <= self.barrier.parties:
                self.barrier.wait(timeout=60)  # a hang guard: a sequential sender breaks the barrier
            if self.hold:
                self.hold.wait()
            if self.error:
                raise self.error
            failed = bool(self.fail_every) and number % self.fail_every == 0
            body = {"errorType": "RuntimeError", "errorMessage": "boom"} if failed else {"output": "ok"}
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(body).encode()),
                    **({"FunctionError": "Unhandled"} if failed else {})}
        finally:
            with self.lock:
                self.in_flight -= 1


class FunctionClock:
    """The Lambda context's remaining time: ``budget_ms`` beyond the sender's reserve, spent
    ``per_call_ms`` by each call (``spend``); never by real time, so no test depends on how
    fast the machine is."""

    def __init__(self, budget_ms: int, *, per_call_ms: int = 0) -> None:
        self.left_ms = SYNTHETIC_RESERVE_MS + budget_ms
        self.per_call_ms = per_call_ms

    def spend(self) -> None:
        self.left_ms -= self.per_call_ms

    def remaining_ms(self) -> int:
        return int(self.left_ms)


def dataset(world, cases: int = 3) -> None:
    world.deps.s3.put_object(Bucket="artefacts", Key="datasets/support-bot/dataset.jsonl", Body="\n".join(
        json.dumps({"id": f"c{i}", "inputs": {"question": f"q{i}"}, "expected": "x"}) for i in range(cases)).encode())


def synthetic_detail(world) -> str:
    return world.ledger.get(RELEASE)["history"][-1]["detail"]


def test_synthetic_traffic_sends_enough_dataset_inputs_through_the_alias_concurrently(world):
    # Given a 10% canary short of its 20-invocation minimum, a 3-case dataset, and a policy
    # sending 4 synthetic calls at a time
    dataset(world)
    alias = world.use("lambda", LiveAlias(fail_every=50, together=4))
    ctx = canary_ctx(world, policy=ReleasePolicy(synthetic_concurrency=4))
    # When synthetic traffic is sent with the function's whole timeout ahead
    send_synthetic(world.deps, ctx, FunctionClock(600_000).remaining_ms)
    # Then 201 calls (20 / 10% + 1) went through the live alias, cycling through the dataset's inputs
    assert len(alias.calls) == 201
    assert {(fn, qualifier) for fn, qualifier, _ in alias.calls} == {("test-svc-support-bot", "live")}
    questions = [payload["inputs"]["question"] for _, _, payload in alias.calls]
    assert {q: questions.count(q) for q in set(questions)} == {"q0": 67, "q1": 67, "q2": 67}
    # And four at a time: the first four met at the barrier, and never more than four were in flight
    assert alias.most_in_flight == 4
    # And the ledger counts them and their failures
    assert synthetic_detail(world) == (
        "201 of 201 synthetic requests through test-svc-support-bot:live, 4 at a time (4 failed)")


def test_synthetic_traffic_refuses_an_oversize_dataset_before_reading_it_or_calling_anything(world, monkeypatch):
    from modelgate.adapters import s3 as s3_adapter
    from modelgate.errors import DatasetInvalid

    # Given a dataset over the (made small) cap
    dataset(world)
    monkeypatch.setattr(s3_adapter, "MAX_DATASET_BYTES", 16)
    alias = world.use("lambda", LiveAlias(fail_every=50, together=1))
    # When synthetic traffic is to be sent / Then the dataset is refused by its size and nothing is called
    with pytest.raises(DatasetInvalid, match=r"dataset of support-bot \(s3://artefacts/datasets/support-bot/dataset\.jsonl"
                                             r" version \S+\) is \d+ bytes; at most 16 are read"):
        send_synthetic(world.deps, canary_ctx(world), FunctionClock(600_000).remaining_ms)
    assert alias.calls == []


def test_synthetic_traffic_stops_at_the_functions_time_budget(world):
    # Given 1 s of the function's time beyond the reserve, each call taking 100 ms of it
    dataset(world)
    clock = FunctionClock(1_000, per_call_ms=100)
    alias = world.use("lambda", LiveAlias(on_call=clock.spend))
    ctx = canary_ctx(world, policy=ReleasePolicy(synthetic_concurrency=1))
    # When synthetic traffic is sent
    send_synthetic(world.deps, ctx, clock.remaining_ms)
    # Then no call started once the budget was spent: 10 of the 201 wanted
    assert len(alias.calls) == 10
    assert synthetic_detail(world) == (
        "10 of 201 synthetic requests through test-svc-support-bot:live, 1 at a time (0 failed); "
        "stopped at the time budget (the function's remaining time less 5 s)")


def test_calls_still_running_at_the_budget_are_not_waited_for(world):
    # Given calls that hang, and a function whose time beyond the reserve runs out once two
    # calls are in flight (decided by the calls, not by how fast this machine starts them)
    dataset(world)
    hang = threading.Event()
    alias = world.use("lambda", LiveAlias(hold=hang))
    ctx = canary_ctx(world, policy=ReleasePolicy(synthetic_concurrency=2))

    def remaining_ms() -> int:
        return SYNTHETIC_RESERVE_MS + (300 if len(alias.calls) < 2 else -1)

    try:
        # When synthetic traffic is sent
        send_synthetic(world.deps, ctx, remaining_ms)
        # Then it returned with both calls in flight, counted as still running
        assert len(alias.calls) == 2
        assert synthetic_detail(world) == (
            "2 of 201 synthetic requests through test-svc-support-bot:live, 2 at a time "
            "(0 failed; 2 still running at the time budget); stopped at the time budget "
            "(the function's remaining time less 5 s)")
    finally:
        hang.set()


def test_no_time_left_sends_nothing_and_says_so(world):
    dataset(world)
    alias = world.use("lambda", LiveAlias())
    send_synthetic(world.deps, canary_ctx(world), FunctionClock(-1).remaining_ms)
    assert alias.calls == []
    assert synthetic_detail(world).startswith("0 of 201 synthetic requests")
    assert synthetic_detail(world).endswith("stopped at the time budget (the function's remaining time less 5 s)")


def test_synthetic_calls_that_can_not_be_made_fail_the_step(world):
    # Given an alias the sender may not invoke
    dataset(world)
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "Invoke")
    world.use("lambda", LiveAlias(error=denied))
    # When synthetic traffic is sent, Then the error is raised: no traffic is not a pass
    with pytest.raises(ClientError, match="AccessDeniedException"):
        send_synthetic(world.deps, canary_ctx(world), FunctionClock(600_000).remaining_ms)
