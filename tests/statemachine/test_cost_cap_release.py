"""The cost cap (policy ``max_cost_usd``) through the public path: an S3 upload to the embedded AWS.

One module stack: v2 is released and promoted under a generous cap (the estimate is in the
ledger), then v3 is uploaded under a cap its evaluation would break: the release ends Failed at
PlanEvaluation with the estimate and the cap in its reason, before any model call.
"""

from __future__ import annotations

import json

import pytest
from conftest import (
    EXAMPLES,
    HANG_GUARD_SECONDS,
    JUMP_WHEN_IDLE,
    ROOT,
    ROUTING_SEED,
    SERVICE,
    SETUP_BAKE_SECONDS,
    TIME_FACTOR,
    commit_for,
)
from modelgate_harness.control import update_policy
from modelgate_harness.driver import ReleaseDriver, sample_stack
from modelgate_harness.traffic import TrafficGenerator

from modelgate.adapters.lambda_alias import alias_state


@pytest.fixture(scope="module")
def stack():
    """One stack, its live alias serving v2, released under a cap of one dollar (with the
    set-up releases' shorter bakes: the cap, not the canary, is this module's subject)."""
    with sample_stack(ROOT / "template.yaml", time_factor=TIME_FACTOR, seed=ROUTING_SEED, jump_when_idle=JUMP_WHEN_IDLE,
                      run_schedules=False) as (local, control):
        update_policy(control, SERVICE, approval="auto", min_canary_invocations=3, max_cost_usd=1.0,
                      bake_seconds=SETUP_BAKE_SECONDS, post_promotion_watch_seconds=SETUP_BAKE_SECONDS)
        function = local.stack.outputs["SampleServiceFunctionName"]
        requests = [{"inputs": json.loads(line)} for line in (EXAMPLES / "traffic.jsonl").read_text().splitlines() if line]
        traffic = TrafficGenerator(lambda_client=control.client("lambda"), function_name=function, qualifier="live",
                                   requests=requests, rate_per_second=0.3, clock=local.clock)
        traffic.start()
        try:
            run = ReleaseDriver(control, timeout=HANG_GUARD_SECONDS).release(
                EXAMPLES / "v2", commit=commit_for("v2"), decision=None)
        finally:
            traffic.stop()
        assert run.status == "Promoted", run.record.get("reason")
        yield local, control, run


def test_a_release_within_the_cap_records_its_estimate(stack):
    _, _, run = stack
    # Then the plan's ledger entry says what the evaluation was estimated to cost, within the cap
    [planned] = [h["detail"] for h in run.record["history"] if h["status"] == "EvaluationPlanned"]
    assert "estimated evaluation cost: $" in planned and "within max_cost_usd $1.0000" in planned, planned


def test_a_release_over_the_cap_fails_before_any_model_call(stack):
    local, control, _ = stack
    function = local.stack.outputs["SampleServiceFunctionName"]
    lam = control.client("lambda")
    live_before = alias_state(lam, function, "live")
    # Given a cap of a hundredth of a cent
    update_policy(control, SERVICE, approval="auto", max_cost_usd=0.0001)
    # When CI uploads v3
    run = ReleaseDriver(control, timeout=HANG_GUARD_SECONDS).release(
        EXAMPLES / "v3", commit=commit_for("v3"), decision=None)
    # Then it ended Failed with the estimate, both sides and the cap in the ledger's reason
    assert run.status == "Failed", run.record
    reason = run.record["reason"]
    assert "OverBudget" in reason and "max_cost_usd $0.0001" in reason, reason
    assert "candidate:" in reason and "live:" in reason and "local.retrieval-small-v1:0" in reason, reason
    # And nothing was evaluated: the execution went from the plan straight to its outcome
    history = control.client("stepfunctions").get_execution_history(executionArn=run.execution_arn, maxResults=1000)
    entered = [e["stateEnteredEventDetails"]["name"] for e in history["events"] if "stateEnteredEventDetails" in e]
    assert entered[-4:] == ["PlanEvaluation", "RecordOutcome", "AttestEnd", "ReleaseFailed"], entered
    assert "Evaluate" not in entered
    # And live is as it was, its lock released
    assert alias_state(lam, function, "live") == live_before
    assert control.ledger().lock_holder(SERVICE) is None
