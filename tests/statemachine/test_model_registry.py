"""SageMaker Model Registry on the embedded AWS: a service whose policy names a model package group
gets each release registered there with its evaluation, and its end mirrored (promoted: Approved;
rejected: Rejected). Two releases on one module stack, with the functions' IAM from template.yaml."""

from __future__ import annotations

import json

import pytest
from conftest import JUMP_WHEN_IDLE, SETUP_BAKE_SECONDS
from hostile_corpus import EXAMPLES, ROOT, SERVICE
from modelgate_harness.control import format_release, update_policy
from modelgate_harness.driver import ReleaseDriver, sample_stack
from modelgate_harness.traffic import TrafficGenerator

TIME_FACTOR = 0.002  # as the other state-machine tests (conftest.py)
ROUTING_SEED = 20261130
HANG_GUARD_SECONDS = 900  # a hang guard, no speed limit


@pytest.fixture(scope="module")
def registry():
    """One stack whose support-bot policy mirrors releases into <stack>-support-bot; v2 promoted, then v4 (passes the gate) rejected."""
    with sample_stack(ROOT / "template.yaml", time_factor=TIME_FACTOR, seed=ROUTING_SEED, jump_when_idle=JUMP_WHEN_IDLE,
                      run_schedules=False) as (local, control):
        group = f"{local.stack_name}-{SERVICE}"
        # (set-up bakes, as conftest's set-up promotions: 300 nominal s per step, not 900)
        update_policy(control, SERVICE, approval="auto", min_canary_invocations=3, model_registry={"group": group},
                      bake_seconds=SETUP_BAKE_SECONDS, post_promotion_watch_seconds=SETUP_BAKE_SECONDS)
        function = local.stack.outputs["SampleServiceFunctionName"]
        requests = [{"inputs": json.loads(line)} for line in (EXAMPLES / "traffic.jsonl").read_text().splitlines() if line]
        traffic = TrafficGenerator(lambda_client=control.client("lambda"), function_name=function, qualifier="live",
                                   requests=requests, rate_per_second=0.3, clock=local.clock)
        driver = ReleaseDriver(control, timeout=HANG_GUARD_SECONDS)
        traffic.start()
        try:
            promoted = driver.release(EXAMPLES / "v2", commit="2" * 40, decision=None)
        finally:
            traffic.stop()
        update_policy(control, SERVICE, approval="manual", min_canary_invocations=3, model_registry={"group": group})
        rejected = driver.release(EXAMPLES / "v4", commit="4" * 40, decision="reject", comment="not this one")
        yield control, group, promoted, rejected


def _package(control, arn: str) -> dict:
    return control.client("sagemaker").describe_model_package(ModelPackageName=arn)


def test_a_promoted_release_is_an_approved_model_package_with_its_evaluation(registry):
    control, group, promoted, _ = registry
    assert promoted.status == "Promoted", promoted.record.get("reason")
    # Then its package is version 1 of the group Register created, Approved as Promote mirrored it
    arn = promoted.record["model_package_arn"]
    assert arn.endswith(f":model-package/{group}/1") and promoted.record["model_package_status"] == "Approved"
    package = _package(control, arn)
    assert package["ModelApprovalStatus"] == "Approved" and "promoted" in package["ApprovalDescription"]
    # with the evaluation the gate judged: the report as model-quality statistics, its numbers as metadata
    evaluation = promoted.record["evaluation"]
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["S3Uri"] == f"s3://{control.bucket}/{evaluation['report_key']}"
    metadata = package["CustomerMetadataProperties"]
    assert float(metadata["candidate:accuracy"]) == pytest.approx(evaluation["sides"]["candidate"]["accuracy"], abs=1e-6)
    assert metadata["modelgate:release"] == promoted.release_id and metadata["modelgate:gate"] == "pass"
    assert metadata["modelgate:commit"] == "2" * 40
    # and `modelgate status` shows where it is
    assert f"registry  {arn} (Approved)" in format_release(promoted.record)


def test_a_rejected_release_is_a_rejected_model_package_beside_it(registry):
    control, group, _, rejected = registry
    assert rejected.status == "Rejected", rejected.record.get("reason")
    arn = rejected.record["model_package_arn"]
    assert arn.endswith(f":model-package/{group}/2") and rejected.record["model_package_status"] == "Rejected"
    package = _package(control, arn)
    assert package["ModelApprovalStatus"] == "Rejected" and "not this one" in package["ApprovalDescription"]
    # the group holds the two releases, each with its own status; the promoted one is still Approved
    listed = control.client("sagemaker").list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert sorted((p["ModelPackageVersion"], p["ModelApprovalStatus"]) for p in listed) == [(1, "Approved"), (2, "Rejected")]
