"""A hostile or careless CI's uploads (hostile_corpus.CORPUS), each through the public path:
an S3 upload to the embedded AWS with CI's role. For every case the ledger ends the release
with a final record whose reason is bounded, readable and names the problem; no lock is
held; live, its versions and its alarms are untouched.

`python tests/statemachine/hostile_corpus.py` prints the corpus's table (case, status, reason).
"""

from __future__ import annotations

import json

import pytest
from conftest import JUMP_WHEN_IDLE, SETUP_BAKE_SECONDS
from hostile_corpus import CORPUS, EXAMPLES, ROOT, SERVICE, Case, run
from modelgate_harness.control import update_policy
from modelgate_harness.driver import ReleaseDriver, sample_stack
from modelgate_harness.traffic import TrafficGenerator
from modelgate_harness.trail import verify_release

from modelgate.adapters.lambda_alias import alias_state
from modelgate.errors import MAX_REASON_CHARS
from modelgate.ledger import FINAL_STATUSES

TIME_FACTOR = 0.002  # as the other state-machine tests (conftest.py)
ROUTING_SEED = 20261130
HANG_GUARD_SECONDS = 900  # a hang guard, no speed limit


@pytest.fixture(scope="module")
def stack():
    """One stack for the corpus, its live alias serving v2 (released and promoted first)."""
    with sample_stack(ROOT / "template.yaml", time_factor=TIME_FACTOR, seed=ROUTING_SEED, jump_when_idle=JUMP_WHEN_IDLE,
                      run_schedules=False) as (local, control):
        # (set-up bakes, as conftest's set-up promotions: 300 nominal s per step, not 900)
        update_policy(control, SERVICE, approval="auto", min_canary_invocations=3, bake_seconds=SETUP_BAKE_SECONDS,
                      post_promotion_watch_seconds=SETUP_BAKE_SECONDS)
        function = local.stack.outputs["SampleServiceFunctionName"]
        requests = [{"inputs": json.loads(line)} for line in (EXAMPLES / "traffic.jsonl").read_text().splitlines() if line]
        traffic = TrafficGenerator(lambda_client=control.client("lambda"), function_name=function, qualifier="live",
                                   requests=requests, rate_per_second=0.3, clock=local.clock)
        traffic.start()
        try:
            run_v2 = ReleaseDriver(control, timeout=HANG_GUARD_SECONDS).release(
                EXAMPLES / "v2", commit="2" * 40, decision=None)
        finally:
            traffic.stop()
        assert run_v2.status == "Promoted", run_v2.record.get("reason")
        yield local, control


def observable(control, function: str) -> dict:
    """Everything a refused upload must leave as it was."""
    lam, cloudwatch = control.client("lambda"), control.client("cloudwatch")
    versions = [v["Version"] for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=function)
                for v in page["Versions"]]
    return {
        "live": alias_state(lam, function, "live"),
        "versions": versions,
        "alarms": sorted(a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]),
    }


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_a_hostile_upload_ends_final_bounded_and_safe(stack, case):
    local, control = stack
    function = local.stack.outputs["SampleServiceFunctionName"]
    sfn = control.client("stepfunctions")
    machine = control.outputs["ReleasePipelineArn"]
    before = observable(control, function)
    executions_before = len(sfn.list_executions(stateMachineArn=machine)["executions"])
    # When CI uploads it
    outcome = run(control, case, timeout=HANG_GUARD_SECONDS)
    # Then the ledger has a final record, with a reason that names the problem
    assert outcome.status == case.status and outcome.status in FINAL_STATUSES, outcome.record
    assert case.expect in outcome.reason, outcome.reason
    # bounded and readable: one printable line, whatever the upload held
    assert len(outcome.reason) <= MAX_REASON_CHARS + 100 and outcome.reason.isprintable()
    assert all(entry["detail"].isprintable() for entry in outcome.record["history"])
    assert len(json.dumps(outcome.record)) < 64 * 1024
    # And the release never got past Validate (or never started, when its key alone refused it)
    if outcome.execution is None:
        assert outcome.release_id.split("-refused-")[0] in (SERVICE, "unknown") and "-refused-" in outcome.release_id
        assert len(sfn.list_executions(stateMachineArn=machine)["executions"]) == executions_before
        assert [entry["status"] for entry in outcome.record["history"]] == ["Invalid"]  # never Received
    else:
        assert outcome.execution["status"] == "FAILED"
        history = sfn.get_execution_history(executionArn=outcome.execution["executionArn"], maxResults=1000)["events"]
        entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
        assert entered == ["Validate", "RecordOutcome", "AttestEnd", "ReleaseFailed"]
    # And the refusal is chained in its service's trail and verifies (the execution's AttestEnd
    # signed it; an upload refused at intake is chained by intake, its record saying it is unsigned);
    # an upload whose key names no service belongs to no service's chain
    if outcome.release_id.startswith(f"{SERVICE}-"):
        report = verify_release(control, outcome.release_id)
        assert report.ok, report.lines()
        if outcome.execution is None:
            assert "none, by design: refused at intake" in {n: d for n, _, d in report.checks}["attestation"]
    # And no lock is held, live and everything about it are as they were
    ledger = control.ledger()
    assert ledger.lock_holder(SERVICE) is None and ledger.lock_holder("other-bot") is None
    assert observable(control, function) == before


def test_a_release_pinning_a_legacy_bedrock_model_ends_invalid_naming_the_model_and_its_status(stack):
    """monitoring.refuse_legacy_models end to end: the embedded Bedrock's GetFoundationModel answers
    LEGACY for the pinned model, Validate (with its ModelLifecycle grant) refuses the release."""
    local, control = stack
    function = local.stack.outputs["SampleServiceFunctionName"]
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    ssm = control.client("ssm")
    registration = json.loads(ssm.get_parameter(Name=control.outputs["ServicesPrefix"] + SERVICE)["Parameter"]["Value"])
    monitoring = registration["policy"]["monitoring"]

    def pin_bedrock(doc: dict) -> None:
        doc["model"] = {"provider": "bedrock", "model_id": model}

    case = Case("pins a LEGACY Bedrock model", "policy", f"model '{model}' is LEGACY on Bedrock", edit=pin_bedrock)
    before = observable(control, function)
    local.foundation_models.set_lifecycle(model, "LEGACY")
    update_policy(control, SERVICE, monitoring={**monitoring, "refuse_legacy_models": True})
    try:
        outcome = run(control, case, timeout=HANG_GUARD_SECONDS)
    finally:
        update_policy(control, SERVICE, monitoring=monitoring)
        local.foundation_models.set_lifecycle(model, "ACTIVE")
    assert outcome.status == "Invalid", outcome.record
    assert case.expect in outcome.reason and "refuse_legacy_models" in outcome.reason, outcome.reason
    history = control.client("stepfunctions").get_execution_history(
        executionArn=outcome.execution["executionArn"], maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert entered == ["Validate", "RecordOutcome", "AttestEnd", "ReleaseFailed"]
    assert control.ledger().lock_holder(SERVICE) is None
    assert observable(control, function) == before
