"""Evaluation by Bedrock batch inference, through the public path (an S3 upload) on the embedded AWS.

One module stack, the service's policy in batch mode (``evaluation.mode: batch``) and a
120-case dataset (the sample's 40 cases three times: the embedded AWS, like the policy's default,
wants at least 100 records per job). Four releases:

* v2 (a first release: no live side to compare) goes through SubmitBatch, the wait loop and
  ReduceBatch to the gate, a canary and promotion;
* v3 against live v2: both sides by batch; the gate fails it, and its verdict is the one the
  on-demand scoring path (``runner.evaluate``) gives on the same outputs; the sampled cases'
  on-demand answers are the batch's;
* a job that ends Failed, and one that ends PartiallyCompleted: the release ends Failed with
  Bedrock's reason in the ledger, live untouched, the lock released.
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
from modelgate_emulator.bedrock_batch import JobFault
from modelgate_harness.control import put_dataset, update_policy
from modelgate_harness.driver import ReleaseDriver, sample_stack
from modelgate_harness.traffic import TrafficGenerator

from modelgate.adapters.lambda_alias import alias_state
from modelgate.contract import GateVerdict
from modelgate.evaluation.comparison import EvaluationReport
from modelgate.evaluation.dataset import parse_dataset
from modelgate.evaluation.gate import evaluate_gate
from modelgate.evaluation.runner import evaluate

# 20 cases timed on demand: the sample registration's latency alarm needs 20 measured calls when
# live has none in CloudWatch (a first release), and the batch's 120 cases are no such evidence.
BATCH = {"mode": "batch", "latency_sample": 20, "poll_seconds": 60}


def dataset_text() -> str:
    lines = [json.loads(line) for line in (EXAMPLES / "dataset.jsonl").read_text().splitlines() if line.strip()]
    return "".join(json.dumps({**case, "id": f"{case['id']}-{n}"}) + "\n" for n in range(3) for case in lines)


def states(control, run) -> list[str]:
    history = control.client("stepfunctions").get_execution_history(executionArn=run.execution_arn, maxResults=1000)
    return [e["stateEnteredEventDetails"]["name"] for e in history["events"] if "stateEnteredEventDetails" in e]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The stack, its dataset 120 cases, v2 released through batch with live traffic (with the
    set-up releases' shorter bakes: the evaluation, not the canary, is this module's subject)."""
    with sample_stack(ROOT / "template.yaml", time_factor=TIME_FACTOR, seed=ROUTING_SEED, jump_when_idle=JUMP_WHEN_IDLE,
                      run_schedules=False) as (local, control):
        path = tmp_path_factory.mktemp("batch") / "dataset.jsonl"
        path.write_text(dataset_text())
        put_dataset(control, SERVICE, path)
        update_policy(control, SERVICE, approval="auto", min_canary_invocations=3, evaluation=BATCH,
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
        yield local, control, run


def report_of(control, record: dict) -> EvaluationReport:
    summary = record["evaluation"]
    body = control.client("s3").get_object(
        Bucket=control.bucket, Key=summary["report_key"], VersionId=summary["report_version"])["Body"].read()
    return EvaluationReport.model_validate_json(body)


def test_a_release_evaluated_by_batch_is_gated_and_promoted(stack):
    _, control, run = stack
    # Then v2 went through the batch states, not the shards' Map, and was promoted
    assert run.status == "Promoted", run.record.get("reason")
    entered = states(control, run)
    assert entered[:5] == ["Validate", "AcquireLock", "PublishCandidate", "PlanEvaluation", "EvaluationMode"], entered
    assert entered[5:7] == ["SubmitBatch", "WaitForBatch"] and "Evaluate" not in entered, entered
    assert entered.count("PollBatch") >= 2 and entered[entered.index("ReduceBatch") + 1] == "Gate", entered
    # And the ledger says how: the jobs, then the evaluation over every case with the sample's latency
    details = {h["status"]: h["detail"] for h in run.record["history"]}
    assert "by Bedrock batch inference" in details["EvaluationPlanned"], details
    assert "candidate: job arn:aws:bedrock:" in details["BatchSubmitted"], details
    assert "120 records, model local." in details["BatchSubmitted"], details
    assert "120 cases by Bedrock batch inference" in details["Evaluated"], details
    assert "latency from 20 case(s) on demand" in details["Evaluated"], details
    report = report_of(control, run.record)
    assert report.n_cases == 120 and report.sides["candidate"].latency_p95_ms is not None
    assert sum(1 for r in report.results if r.latency_ms > 0) == 20  # the sampled cases' calls were timed
    assert report.sides["candidate"].latency_samples == 20


def test_the_batch_verdict_is_the_on_demand_scoring_of_the_same_outputs(stack):
    local, control, _ = stack
    function = local.stack.outputs["SampleServiceFunctionName"]
    lam = control.client("lambda")
    live_before = alias_state(lam, function, "live")
    # When v3 (a worse prompt) is released against live v2, both sides by batch
    policy = update_policy(control, SERVICE, approval="auto", min_canary_invocations=3, evaluation=BATCH).policy
    run = ReleaseDriver(control, timeout=HANG_GUARD_SECONDS).release(
        EXAMPLES / "v3", commit=commit_for("v3"), decision=None)
    # Then the gate failed it and live is untouched
    assert run.status == "GateFailed", run.record
    assert alias_state(lam, function, "live") == live_before
    report = report_of(control, run.record)
    assert set(report.sides) == {"candidate", "live"}
    # And scoring the same outputs through the on-demand path gives the same verdict
    cases = parse_dataset(dataset_text())
    outputs: dict[str, dict[str, dict]] = {}
    for r in report.results:
        key = json.dumps(r.inputs, sort_keys=True)
        answer = {"output": r.output, "usage": {"input_tokens": r.input_tokens, "output_tokens": r.output_tokens},
                  "cost_usd": r.cost_usd}
        # the dataset repeats each case's inputs three times: the local model answers them alike
        assert outputs.setdefault(r.side, {}).setdefault(key, answer) == answer
    invokers = {side: (lambda inputs, by=by: by[json.dumps(inputs, sort_keys=True)]) for side, by in outputs.items()}
    on_demand = evaluate(cases, invokers, concurrency=4)
    recorded = GateVerdict.model_validate(run.record["gate"])
    replayed = evaluate_gate(on_demand, policy)
    assert not recorded.passed and not replayed.passed
    assert [(c.name, c.verdict, c.observed) for c in replayed.criteria] == [
        (c.name, c.verdict, c.observed) for c in recorded.criteria]
    # And the sampled cases' on-demand answers (the real function) are the batch's answers
    sample = json.loads(control.client("s3").get_object(
        Bucket=control.bucket,
        Key=run.record["evaluation"]["report_key"].rsplit("/", 1)[0] + "/batch/latency-sample.json",
    )["Body"].read())["results"]
    batch_output = {(r.side, r.case_id): r.output for r in report.results}
    assert len(sample) == 40 and all(s["output"] == batch_output[(s["side"], s["case_id"])] for s in sample)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (JobFault(status="Failed", message="Internal error while processing the job"),
         "ended Failed: Internal error while processing the job"),
        (JobFault(unanswered=5), "5 record(s) unanswered"),
    ],
)
def test_a_failed_or_partial_batch_job_fails_the_release_cleanly(stack, fault: JobFault, reason: str):
    local, control, _ = stack
    function = local.stack.outputs["SampleServiceFunctionName"]
    lam = control.client("lambda")
    live_before = alias_state(lam, function, "live")
    update_policy(control, SERVICE, approval="auto", min_canary_invocations=3, evaluation=BATCH)
    # Given the next batch job goes wrong
    local.batch_inference.inject(fault)
    # When CI uploads v3
    run = ReleaseDriver(control, timeout=HANG_GUARD_SECONDS).release(
        EXAMPLES / "v3", commit=commit_for("v3"), decision=None)
    # Then the release ended Failed with Bedrock's reason in the ledger, before the gate
    assert run.status == "Failed", run.record
    assert "EvaluationFailed" in run.record["reason"] and reason in run.record["reason"], run.record["reason"]
    entered = states(control, run)
    assert "Gate" not in entered and entered[-3:] == ["RecordOutcome", "AttestEnd", "ReleaseFailed"], entered
    # And live is as it was, the lock released
    assert alias_state(lam, function, "live") == live_before
    assert control.ledger().lock_holder(SERVICE) is None
