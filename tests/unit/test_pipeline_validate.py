"""Validate: every bad artefact is refused with an error that names the problem."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest

from modelgate.errors import ManifestInvalid, ServiceNotRegistered
from modelgate.ledger import Ledger
from modelgate.manifest import parse_release_key
from modelgate.pipeline.candidate import validate
from modelgate.pipeline.deps import Deps
from modelgate.pipeline.intake import initial_context
from modelgate.contract import TaskError
from modelgate.pipeline.outcome import record_outcome
from modelgate.policy import ReleasePolicy, ServiceConfig
from modelgate.settings import Settings

COMMIT = "a" * 40
PROMPT = b"You are a support bot.\nQ: how do I reset my password? A: Use Settings > Security.\n"


@pytest.fixture
def deps(ledger_table):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="artefacts")
    s3.put_bucket_versioning(Bucket="artefacts", VersioningConfiguration={"Status": "Enabled"})
    ssm = boto3.client("ssm")
    ssm.put_parameter(
        Name="/modelgate/test/services/support-bot",
        Type="String",
        Value=ServiceConfig(service="support-bot", function_name="fn", dataset_key="d.jsonl").model_dump_json(),
    )
    settings = Settings(
        LEDGER_TABLE="ledger", ARTIFACT_BUCKET="artefacts", SERVICES_PREFIX="/modelgate/test/services/",
        APPROVAL_TOPIC_ARN="arn:aws:sns:us-east-1:123456789012:t", STACK_NAME="test",
    )
    clients = {"s3": s3, "ssm": ssm}
    return Deps(settings, lambda name: clients.get(name) or boto3.client(name), Ledger(ledger_table))


def upload(deps, *, service="support-bot", model_id="local.retrieval-small-v1:0", prompt=PROMPT,
           digest=None, upload_prompt=True, raw=None):
    prefix = f"releases/{service}/{COMMIT}/"
    if upload_prompt:
        deps.s3.put_object(Bucket="artefacts", Key=prefix + "prompts/system.txt", Body=prompt)
    body = raw if raw is not None else json.dumps({
        "service": "support-bot",
        "model": {"provider": "local", "model_id": model_id},
        "prompts": [{"name": "system", "file": "prompts/system.txt",
                     "sha256": digest or hashlib.sha256(PROMPT).hexdigest()}],
        "source": {"commit": COMMIT, "branch": "main"},
    })
    put = deps.s3.put_object(Bucket="artefacts", Key=prefix + "model-config.json", Body=body)
    return initial_context("artefacts", prefix + "model-config.json", put["VersionId"])


def test_a_good_artefact_is_validated_with_its_policy_and_pinned_prompt_versions(deps):
    ctx = validate(deps, upload(deps))
    assert ctx.manifest.model.model_id == "local.retrieval-small-v1:0"
    assert ctx.policy == ReleasePolicy()
    assert ctx.function_name == "fn" and ctx.alias == "live" and ctx.branch == "main"
    assert set(ctx.prompt_versions) == {"prompts/system.txt"}
    assert deps.ledger.get(ctx.release_id)["status"] == "Validated"


def test_the_manifest_is_read_at_its_uploaded_version(deps):
    ctx = upload(deps)
    upload(deps, model_id="local.retrieval-large-v1:0")  # a later upload of the same key
    assert validate(deps, ctx).manifest.model.model_id == "local.retrieval-small-v1:0"


def test_an_unpinned_model_is_refused(deps):
    with pytest.raises(ManifestInvalid, match="model.model_id.*not pinned"):
        validate(deps, upload(deps, model_id="anthropic.claude-latest"))


def test_a_missing_prompt_file_is_named(deps):
    with pytest.raises(ManifestInvalid, match=r"prompt 'system': .*prompts/system.txt is missing"):
        validate(deps, upload(deps, upload_prompt=False))


def test_a_prompt_whose_digest_differs_is_named_with_both_digests(deps):
    with pytest.raises(ManifestInvalid, match="sha256 of .*prompts/system.txt is .* manifest says 0000"):
        validate(deps, upload(deps, digest="0" * 64))


def test_malformed_json_is_refused(deps):
    with pytest.raises(ManifestInvalid, match="is invalid"):
        validate(deps, upload(deps, raw="{not json"))


def test_an_unregistered_service_is_refused(deps):
    ctx = upload(deps).model_copy(update={"service": "other-bot"})
    with pytest.raises(ManifestInvalid, match="names service 'support-bot' but was uploaded under 'other-bot'"):
        validate(deps, ctx)
    deps.ssm.delete_parameter(Name="/modelgate/test/services/support-bot")
    with pytest.raises(ServiceNotRegistered, match="support-bot"):
        validate(deps, upload(deps))


@pytest.mark.parametrize("key", ["releases/x/model-config.json", "other/svc/abc/model-config.json",
                                 "releases/svc/abc/prompts/system.txt"])
def test_keys_that_are_not_release_manifests_are_refused(key):
    with pytest.raises(ManifestInvalid, match="not a release manifest key"):
        parse_release_key(key)


def test_record_outcome_says_why_and_releases_the_lock(deps):
    ctx = validate(deps, upload(deps))
    deps.ledger.acquire_lock("support-bot", ctx.release_id, 3600)
    cause = json.dumps({"errorType": "GateFailed", "errorMessage": "accuracy_drop: 0.61 vs 0.86"})
    failed = ctx.model_copy(update={"error": TaskError(Error="GateFailed", Cause=cause)})
    out = record_outcome(deps, failed).dump()
    assert out["outcome"] == {"status": "GateFailed", "error": "GateFailed",
                              "reason": "GateFailed: accuracy_drop: 0.61 vs 0.86"}
    record = deps.ledger.get(ctx.release_id)
    assert record["status"] == "GateFailed" and "0.61 vs 0.86" in record["reason"]
    assert deps.ledger.lock_holder("support-bot") is None
