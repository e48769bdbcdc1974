"""SageMaker Model Registry, optional per service: each release a model package version with its
evaluation, its approval status mirrored as the release ends."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from modelgate_emulator.sagemaker import model_registry_as_aws

from modelgate.adapters.model_registry import client_token, metadata_value
from modelgate.contract import EvaluationSummary, TaskError
from modelgate.errors import ConfigurationError
from modelgate.pipeline.approval import register
from modelgate.pipeline.model_registry import check_group, mirror_status
from modelgate.pipeline.outcome import record_outcome
from modelgate.policy import ReleasePolicy

GROUP = "test-support-bot"  # the unit world's stack is "test"


@pytest.fixture
def registry_world(world):
    with model_registry_as_aws():  # moto as AWS: an update keeps the metadata it was not given
        yield world


def evaluated(world, **policy):
    summary = EvaluationSummary(
        n_cases=40, sides={"candidate": {"accuracy": 0.975, "error_rate": 0.0}, "live": {"accuracy": 0.675}},
        deltas={"accuracy_delta": 0.3}, report_key="reports/support-bot/r1/report.json", dataset_key="datasets/d",
        dataset_version="1", shards=1, baseline="live",
    )
    return world.context(policy=ReleasePolicy(model_registry={"group": GROUP}, **policy), evaluation=summary,
                         branch="feature/#42")


def package(world, arn):
    return world.client("sagemaker").describe_model_package(ModelPackageName=arn)


def test_without_the_policy_nothing_is_registered(registry_world):
    out = register(registry_world.deps, registry_world.context(policy=ReleasePolicy()))
    assert out.model_package_arn is None
    assert registry_world.client("sagemaker").list_model_package_groups()["ModelPackageGroupSummaryList"] == []


def test_a_release_is_registered_pending_with_its_evaluation_in_a_group_created_for_it(registry_world):
    # Given a service whose policy names a group that does not exist yet
    ctx = evaluated(registry_world)
    # When the release is registered
    out = register(registry_world.deps, ctx)
    # Then the group exists and holds the release as version 1, waiting for approval
    assert out.model_package_arn.endswith(f":model-package/{GROUP}/1")
    found = package(registry_world, out.model_package_arn)
    assert found["ModelApprovalStatus"] == "PendingManualApproval" and found["ModelPackageGroupName"] == GROUP
    assert "InferenceSpecification" not in found  # a Bedrock or local model has no SageMaker container
    # with the evaluation: the report as the model-quality statistics, the numbers as metadata
    assert found["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json", "S3Uri": "s3://artefacts/reports/support-bot/r1/report.json"}
    metadata = found["CustomerMetadataProperties"]
    assert metadata["candidate:accuracy"] == "0.975" and metadata["live:accuracy"] == "0.675"
    assert metadata["delta:accuracy"] == "0.3" and metadata["modelgate:release"] == ctx.release_id
    assert metadata["modelgate:branch"] == "feature/_42"  # "#" is not a metadata character; the ledger has it exact
    record = registry_world.ledger.get(ctx.release_id)
    assert record["model_package_arn"] == out.model_package_arn and record["model_package_status"] == "PendingManualApproval"


def test_registering_again_creates_no_second_version(registry_world):
    # Given a Register whose answer was lost after the package was created (the ASL retries it)
    ctx = evaluated(registry_world)
    first = register(registry_world.deps, ctx)
    # When it runs again from the same input / Then the same version comes back (ClientToken)
    again = register(registry_world.deps, ctx)
    assert again.model_package_arn == first.model_package_arn
    listed = registry_world.client("sagemaker").list_model_packages(ModelPackageGroupName=GROUP)
    assert len(listed["ModelPackageSummaryList"]) == 1


def test_a_rejected_release_is_mirrored_rejected_with_its_reason_and_keeps_its_metadata(registry_world):
    ctx = register(registry_world.deps, evaluated(registry_world))
    ended = ctx.model_copy(update={"error": TaskError(Error="ApprovalRejected", Cause="prompt too long")})
    record_outcome(registry_world.deps, ended)
    found = package(registry_world, ctx.model_package_arn)
    assert found["ModelApprovalStatus"] == "Rejected" and "prompt too long" in found["ApprovalDescription"]
    assert found["CustomerMetadataProperties"]["candidate:accuracy"] == "0.975"
    assert registry_world.ledger.get(ctx.release_id)["model_package_status"] == "Rejected"


def test_a_status_that_cannot_be_mirrored_is_recorded_not_raised(registry_world):
    # Given a release whose package was deleted in SageMaker meanwhile
    ctx = register(registry_world.deps, evaluated(registry_world))
    gone = ctx.model_copy(update={"model_package_arn": ctx.model_package_arn.replace("/1", "/9")})
    # When its promotion is mirrored / Then the release goes on, the ledger says what was not mirrored
    mirror_status(registry_world.deps, gone, "Approved", "promoted")
    assert registry_world.ledger.get(ctx.release_id)["model_package_status"] == "Approved not mirrored: ValidationException"


def test_a_group_outside_the_stacks_prefix_is_refused_naming_it():
    with pytest.raises(ConfigurationError, match="model_registry.group 'other-team' must start with 'test-'"):
        check_group(ReleasePolicy(model_registry={"group": "other-team"}), "test")
    with pytest.raises(ValueError, match="model_registry.group"):
        ReleasePolicy(model_registry={"group": "bad_name!"})


def test_metadata_values_and_tokens_are_what_sagemaker_accepts():
    assert metadata_value("a#b,c(d)") == "a_b_c_d_" and metadata_value("") is None
    assert metadata_value("naïve 1:0/x=y+z-@") == "naïve 1:0/x=y+z-@"
    assert len(metadata_value("x" * 300)) == 256
    token = client_token("support-bot-" + "a" * 100)
    assert len(token) == 36 and token.isalnum()


def test_the_emulator_refuses_metadata_aws_refuses(registry_world):
    sm = registry_world.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    with pytest.raises(ClientError, match="CustomerMetadataProperties value of 'branch'"):
        sm.create_model_package(ModelPackageGroupName=GROUP, CustomerMetadataProperties={"branch": "a#b"})
    with pytest.raises(ClientError, match="has 51 entries"):
        sm.create_model_package(ModelPackageGroupName=GROUP, CustomerMetadataProperties={f"k{i}": "v" for i in range(51)})


def _registered_release(world, release_id: str, **fields) -> str:
    """A release the ledger knows, with a model package registered for it; the package's ARN."""
    sm = world.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    arn = sm.create_model_package(ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval")[
        "ModelPackageArn"]
    world.ledger.receive(release_id, "manifest uploaded", service="support-bot", commit="c0ffee0",
                         artifact={"bucket": "artefacts", "key": f"releases/support-bot/{release_id}/model-config.json",
                                   "version_id": "v"})
    world.ledger.set_fields(release_id, model_package_arn=arn, **fields)
    return arn


def test_a_superseded_release_is_mirrored_rejected(registry_world):
    from modelgate.lease import Lease
    from modelgate.pipeline.candidate import cancel_release
    from modelgate.pipeline.fencing import Fence

    # Given a release waiting for approval, registered, whose lease a newer release took over
    arn = _registered_release(registry_world, "support-bot-older-1")
    registry_world.ledger.acquire_lock("support-bot", "support-bot-older-1", 3600)
    generation = registry_world.ledger.take_over_lock("support-bot", "support-bot-older-1", "support-bot-newer-2", 3600)
    # When it is cancelled as superseded
    cancel_release(registry_world.deps, "support-bot-older-1", "Superseded", "superseded by support-bot-newer-2",
                   fence=Fence(registry_world.deps, Lease("support-bot", "support-bot-newer-2", generation)))
    # Then its package says so
    found = package(registry_world, arn)
    assert found["ModelApprovalStatus"] == "Rejected" and "superseded by support-bot-newer-2" in found["ApprovalDescription"]
    assert registry_world.ledger.get("support-bot-older-1")["model_package_status"] == "Rejected"


def test_a_promoted_release_rolled_back_by_hand_is_mirrored_rejected(registry_world):
    from modelgate.pipeline.outcome import rollback_service

    # Given release R promoted version 2 over version 1, its package Approved
    world = registry_world
    world.register()
    world.service_function()
    world.publish("support-bot-r-2")
    world.deps.lambda_.update_alias(FunctionName="test-svc-support-bot", Name="live", FunctionVersion="2")
    arn = _registered_release(world, "support-bot-r-2")
    world.ledger.record("support-bot-r-2", "Promoted", "promoted", candidate_version="2", live_version="1")
    world.client("sagemaker").update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    # When an operator rolls the service back
    rollback_service(world.deps, "support-bot", "alice", "bad answers")
    # Then R's package is Rejected, saying who and why
    found = package(world, arn)
    assert found["ModelApprovalStatus"] == "Rejected" and "manual rollback by alice: bad answers" in found["ApprovalDescription"]
