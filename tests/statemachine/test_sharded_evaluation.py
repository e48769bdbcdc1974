"""A dataset too large for one invocation is sharded by the state machine and reduced
into one report (Distributed Map locally on moto's interpreter, as on AWS). `make test` runs it on
400 cases; the 5,000-case run is marked slow (`make test-slow`). The tests share one stack
(``shared_pipeline``): what a test changes (the service's dataset, the state machine's role) is
put back after it."""

from __future__ import annotations

import json

import pytest
from conftest import EXAMPLES, SERVICE
from modelgate_harness.control import put_dataset

from modelgate.evaluation.comparison import EvaluationReport
from modelgate.evaluation.dataset import parse_dataset


@pytest.fixture
def dataset_restored(shared_pipeline):
    """The test's pipeline; the service's dataset is the sample's again after the test."""
    yield shared_pipeline
    put_dataset(shared_pipeline.control, SERVICE, EXAMPLES / "dataset.jsonl")


@pytest.mark.parametrize(("replicas", "shard_size", "shards"), [
    # 400 cases in 10 shards, the last one short (9 x 42 + 22): every property below at a
    # tenth of the scale's cost
    (10, 42, 10),
    # the scale run: 5,000 cases in shards of 500 (`make test-slow`)
    pytest.param(125, 500, 10, marks=pytest.mark.slow),
])
def test_a_large_dataset_is_sharded_and_reduced_into_one_report(dataset_restored, tmp_path, replicas, shard_size,
                                                                shards):
    pipeline = dataset_restored
    # Given the 40-case dataset replicated, in shards that do not line up with the replicas
    base = [json.loads(line) for line in (pipeline.examples / "dataset.jsonl").read_text().splitlines() if line.strip()]
    cases = [dict(case, id=f"{case['id']}-{i}") for i in range(replicas) for case in base]
    n_cases = len(base) * replicas
    assert len(cases) == n_cases and -(-n_cases // shard_size) == shards
    big = tmp_path / "big.jsonl"
    big.write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    put_dataset(pipeline.control, SERVICE, big)
    pipeline.set_policy(eval_shard_size=shard_size, eval_concurrency=16, approval_timeout_seconds=60)

    # When a release is submitted (nobody approves it: it stops after the gate)
    run = pipeline.driver.release(pipeline.examples / "v1", commit=pipeline.commit_for(f"v1 in {shards} shards"),
                                  decision=None)

    # Then the evaluation ran as that many shards and was reduced into one report of all cases
    assert run.path[:8] == ["Validate", "AcquireLock", "PublishCandidate", "PlanEvaluation", "EvaluationMode",
                            "Evaluate", "ReduceEvaluation", "Gate"]
    summary = run.record["evaluation"]
    assert summary["shards"] == shards and summary["n_cases"] == n_cases
    s3 = pipeline.control.client("s3")
    report = EvaluationReport.model_validate_json(
        s3.get_object(Bucket=pipeline.control.bucket, Key=summary["report_key"])["Body"].read()
    )
    assert len({r.case_id for r in report.results}) == n_cases
    # And the merged numbers are those of the 40 distinct cases (each repeated)
    small = parse_dataset((pipeline.examples / "dataset.jsonl").read_text())
    passed = {r.case_id.rsplit("-", 1)[0] for r in report.results if r.score == 1.0}
    assert report.sides["candidate"].accuracy == len(passed) / len(small)
    failed = {r.case_id.rsplit("-", 1)[0] for r in report.results if r.score != 1.0}
    assert not passed & failed  # every replica of a case scored alike, whichever shard ran it


def _without_action(document: dict, action: str) -> tuple[dict, int]:
    """The policy document with ``action`` taken out of every statement (and the count taken)."""
    removed = 0
    statements = []
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        kept = [a for a in actions if a != action]
        removed += len(actions) - len(kept)
        if kept:
            statements.append({**statement, "Action": kept})
    return {**document, "Statement": statements}, removed


@pytest.fixture
def machine_role(shared_pipeline):
    """(pipeline, the state machine's role, its inline policies): the policies as they were are put
    back after the test."""
    iam = shared_pipeline.local.client("iam")
    sfn = shared_pipeline.local.client("stepfunctions")
    machine = shared_pipeline.control.outputs["ReleasePipelineArn"]
    role = sfn.describe_state_machine(stateMachineArn=machine)["roleArn"].rsplit("/", 1)[-1]
    policies = {}
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        policies[name] = json.loads(document) if isinstance(document, str) else document
    yield shared_pipeline, role, policies
    for name, document in policies.items():
        iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))


def test_shards_do_not_start_without_start_execution_on_the_state_machine(machine_role):
    # Given the state machine's role without states:StartExecution (its Distributed Map's children)
    pipeline, role, policies = machine_role
    iam = pipeline.local.client("iam")
    machine = pipeline.control.outputs["ReleasePipelineArn"]
    removed = 0
    for name, document in policies.items():
        changed, count = _without_action(document, "states:StartExecution")
        if count and changed["Statement"]:
            iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(changed))
        elif count:  # a policy of that grant alone (IAM refuses an empty Statement): goes
            iam.delete_role_policy(RoleName=role, PolicyName=name)
        removed += count
    assert removed == 1  # SAM's StepFunctionsExecutionPolicy grant, and nothing else, gave it

    # When a release is evaluated
    run = pipeline.driver.release(pipeline.examples / "v1", commit=pipeline.commit_for("v1 without shards"),
                                  decision=None)

    # Then the Evaluate Map fails when it starts its first shard: IAM's AccessDenied on the
    # state machine's ARN, for the state machine's role, ends the release before the gate
    assert run.path[:6] == ["Validate", "AcquireLock", "PublishCandidate", "PlanEvaluation", "EvaluationMode",
                            "Evaluate"]
    assert "Gate" not in run.path and run.path[6] == "RecordOutcome", run.path
    assert run.record["status"] == "Failed", run.record
    assert run.execution["status"] == "FAILED"
    reason = run.record["reason"]
    assert "States.Runtime" in reason and f"is not authorized to perform: states:StartExecution on resource: {machine}" \
        in reason, reason
    denied = [r for r in pipeline.local.enforcer.denied() if r.action == "states:StartExecution"]
    assert denied and {r.resource for r in denied} == {machine}
    assert all(r.role_arn and r.role_arn.endswith("/" + role) for r in denied)
