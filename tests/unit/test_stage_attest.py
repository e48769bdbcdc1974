"""Attest (an ended release: chained, signed, stored beside its report) and the promotion
across stages it enables (Validate accepts only what the upstream stage promoted)."""

from __future__ import annotations

import hashlib
import json

import pytest
from botocore.exceptions import ClientError
from modelgate_emulator.kms import digest_signing

from modelgate.attestation import attestation_key, load_public_keys, public_key_pem, verify_envelope
from modelgate.chain import LedgerChain, verify_chain
from modelgate.errors import ManifestInvalid
from modelgate.pipeline.attest import ReleaseNotEnded, attest
from modelgate.pipeline.candidate import validate
from modelgate.pipeline.deps import Deps
from modelgate.pipeline.intake import initial_context
from modelgate.pipeline.upstream import trust_parameter, upstream_attestation_key
from modelgate.policy import ReleasePolicy
from modelgate.settings import AttestSettings

BUCKET, SERVICE, STACK = "artefacts", "support-bot", "test"  # the world's (tests/unit/conftest.py)
COMMIT = "c" * 40
PREFIX = f"releases/{SERVICE}/{COMMIT}/"
PROMPT = b"You are a support bot.\nQ: how do I reset my password? A: Use Settings > Security.\n"


@pytest.fixture
def signing(world):
    """The world with the stack's signing key (the embedded KMS signs digests as AWS does)."""
    with digest_signing():
        key = world.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        settings = AttestSettings(**world.settings.model_dump(by_alias=True), SIGNING_KEY_ID=key, STAGE="staging")
        assert (settings.artifact_bucket, settings.stack_name) == (BUCKET, STACK)
        world.attest_deps = Deps(settings, world.client, world.ledger)
        world.public_pem = public_key_pem(world.client("kms"), key)
        world.register()
        yield world


def upload(world, prompt: bytes = PROMPT):
    world.deps.s3.put_object(Bucket=BUCKET, Key=PREFIX + "prompts/system.txt", Body=prompt)
    body = json.dumps({
        "service": SERVICE, "model": {"provider": "local", "model_id": "local.retrieval-small-v1:0"},
        "prompts": [{"name": "system", "file": "prompts/system.txt", "sha256": hashlib.sha256(prompt).hexdigest()}],
        "source": {"commit": COMMIT, "branch": "main"},
    }).encode()
    put = world.deps.s3.put_object(Bucket=BUCKET, Key=PREFIX + "model-config.json", Body=body)
    return initial_context(BUCKET, PREFIX + "model-config.json", put["VersionId"]), body


def ended_release(world, status: str = "Promoted", prompt: bytes = PROMPT):
    """A release validated and ended ``status`` (what the closing steps leave for Attest)."""
    ctx, body = upload(world, prompt)
    ctx = validate(world.deps, ctx)
    world.ledger.record(ctx.release_id, status, f"ended {status}", reason="the test ended it", candidate_version="2",
                        live_version="1")
    return ctx, body


def envelope_of(world, ctx) -> bytes:
    key = attestation_key(SERVICE, ctx.release_id)
    return world.deps.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


# ---------------------------------------------------------------------- attest
def test_an_ended_release_is_chained_and_its_signed_attestation_stored_beside_its_report(signing):
    # Given a release that ended promoted
    ctx, manifest = ended_release(signing)
    # When Attest runs
    attest(signing.attest_deps, ctx)
    # Then its record is the chain's first, intact
    records, broken, head = LedgerChain(signing.ledger.table).read(SERVICE)
    assert [(r.seq, r.release_id, r.body["status"]) for r in records] == [(1, ctx.release_id, "Promoted")]
    assert verify_chain(SERVICE, records, head, broken).intact
    # and its attestation verifies with the public key alone, naming the artefact and the record
    verified = verify_envelope(envelope_of(signing, ctx), load_public_keys(signing.public_pem))
    assert verified.subjects() == {"model-config.json": hashlib.sha256(manifest).hexdigest(),
                                   "prompts/system.txt": hashlib.sha256(PROMPT).hexdigest()}
    predicate = verified.predicate
    assert predicate["ledger"] == {"chain": f"CHAIN#{SERVICE}", "seq": 1, "record_sha256": records[0].record_hash}
    assert predicate["outcome"] == {"status": "Promoted", "error": None, "reason": "the test ended it"}
    assert (predicate["stage"], predicate["service"], predicate["release_id"]) == ("staging", SERVICE, ctx.release_id)
    assert (predicate["candidate_version"], predicate["live_version"], predicate["commit"]) == ("2", "1", COMMIT)


def test_attest_again_adds_no_record(signing):
    ctx, _ = ended_release(signing)
    attest(signing.attest_deps, ctx)
    attest(signing.attest_deps, ctx)
    assert LedgerChain(signing.ledger.table).head(SERVICE).seq == 1


def test_a_release_still_running_is_not_attested(signing):
    ctx, _ = upload(signing)
    ctx = validate(signing.deps, ctx)
    with pytest.raises(ReleaseNotEnded, match="has not ended \\(status Validated\\)"):
        attest(signing.attest_deps, ctx)
    assert LedgerChain(signing.ledger.table).head(SERVICE) is None


def test_the_report_digest_is_attested(signing):
    ctx, _ = ended_release(signing)
    report = b'{"n_cases": 36}'
    version = signing.deps.s3.put_object(Bucket=BUCKET, Key=f"reports/{SERVICE}/{ctx.release_id}/evaluation.json",
                                         Body=report)["VersionId"]
    evaluation = {"n_cases": 36, "sides": {}, "report_key": f"reports/{SERVICE}/{ctx.release_id}/evaluation.json",
                  "report_version": version, "dataset_key": "d", "dataset_version": "v", "shards": 1,
                  "baseline": "live"}
    ctx = ctx.model_copy(update={"evaluation": ctx.model_validate({**ctx.dump(), "evaluation": evaluation}).evaluation})
    attest(signing.attest_deps, ctx)
    verified = verify_envelope(envelope_of(signing, ctx), load_public_keys(signing.public_pem))
    assert verified.predicate["evaluation_report"] == [{
        "name": "evaluation.json", "uri": f"s3://{BUCKET}/{ctx.evaluation.report_key}", "version_id": version,
        "digest": {"sha256": hashlib.sha256(report).hexdigest()},
    }]


# ---------------------------------------------------------------------- promotion across stages
@pytest.fixture
def production(signing):
    """Staging promoted the artefact and attested it; the production registration requires
    staging, and trusts staging's public key (the same world stands for both stacks)."""
    ctx, _ = ended_release(signing)
    attest(signing.attest_deps, ctx)
    signing.staging_envelope = envelope_of(signing, ctx)
    signing.register(ReleasePolicy(requires_stage="staging"))
    signing.client("ssm").put_parameter(Name=trust_parameter(STACK, "staging"), Type="String",
                                        Value=signing.public_pem.decode(), Overwrite=True)
    return signing


def carry(world, envelope: bytes) -> None:
    """What CI does: the staging attestation beside the artefact in production."""
    world.deps.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}attestations/staging.intoto.json", Body=envelope)


def test_the_artefact_staging_promoted_is_accepted_with_the_proof_in_the_ledger(production):
    carry(production, production.staging_envelope)
    ctx, _ = upload(production)
    validated = validate(production.deps, ctx)
    assert validated.policy.requires_stage == "staging"
    detail = production.ledger.get(ctx.release_id)["history"][-1]["detail"]
    assert "promoted in staging as release" in detail and "attestation signed by arn:aws:kms:" in detail


def test_an_artefact_that_skipped_staging_is_refused(production):
    ctx, _ = upload(production)
    with pytest.raises(ManifestInvalid, match="accepts only artefacts promoted in staging first.*does not exist"):
        validate(production.deps, ctx)


def test_an_artefact_one_byte_different_is_refused_naming_the_file(production):
    carry(production, production.staging_envelope)
    ctx, _ = upload(production, PROMPT + b" ")
    with pytest.raises(ManifestInvalid) as refused:
        validate(production.deps, ctx)
    message = str(refused.value)
    assert "this artefact is not the one staging promoted" in message
    assert "prompts/system.txt: sha256" in message and "model-config.json: sha256" in message


def test_an_attestation_signed_by_an_untrusted_key_is_refused(production):
    carry(production, production.staging_envelope)
    other = production.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    production.client("ssm").put_parameter(Name=trust_parameter(STACK, "staging"), Type="String", Overwrite=True,
                                           Value=public_key_pem(production.client("kms"), other).decode())
    ctx, _ = upload(production)
    with pytest.raises(ManifestInvalid, match="is not valid: no signature of the envelope verifies"):
        validate(production.deps, ctx)


def test_without_a_trusted_key_nothing_is_accepted(production):
    carry(production, production.staging_envelope)
    production.client("ssm").delete_parameter(Name=trust_parameter(STACK, "staging"))
    ctx, _ = upload(production)
    with pytest.raises(ManifestInvalid, match="this stack trusts no staging signing key .*ParameterNotFound"):
        validate(production.deps, ctx)


def test_an_attestation_of_a_release_staging_rolled_back_is_refused(signing):
    ctx, _ = ended_release(signing, "RolledBack")
    attest(signing.attest_deps, ctx)
    signing.register(ReleasePolicy(requires_stage="staging"))
    signing.client("ssm").put_parameter(Name=trust_parameter(STACK, "staging"), Type="String",
                                        Value=signing.public_pem.decode())
    carry(signing, envelope_of(signing, ctx))
    again, _ = upload(signing)
    with pytest.raises(ManifestInvalid, match="the release it attests ended RolledBack, not Promoted"):
        validate(signing.deps, again)


def test_the_attestation_lies_beside_the_artefact():
    from modelgate.manifest import ArtifactRef

    art = ArtifactRef(bucket=BUCKET, key=PREFIX + "model-config.json", version_id="v")
    assert upstream_attestation_key(art, "staging") == PREFIX + "attestations/staging.intoto.json"


class _Denying:
    """An S3 client whose GetObject of ``key`` answers as S3 does to a role without the grant."""

    def __init__(self, s3, key: str, code: str) -> None:
        self._s3, self._key, self._code = s3, key, code

    def get_object(self, **kwargs):
        if kwargs["Key"] == self._key:
            raise ClientError({"Error": {"Code": self._code, "Message": f"{self._code} on {self._key}"}}, "GetObject")
        return self._s3.get_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._s3, name)


def _denying_deps(world, key: str, code: str) -> Deps:
    base = world.attest_deps
    return Deps(base.settings, lambda service: _Denying(base.client("s3"), key, code) if service == "s3"
                else base.client(service), base.ledger)


def test_a_denied_read_of_the_manifest_fails_attest_naming_the_error(signing):
    # A grant missing from Attest's role must not pass for an unreadable object (left out of
    # the attestation): the step fails with S3's AccessDenied, and nothing is stored.
    ctx, _ = ended_release(signing)
    with pytest.raises(ClientError, match="AccessDenied"):
        attest(_denying_deps(signing, ctx.artifact.key, "AccessDenied"), ctx)
    with pytest.raises(ClientError, match="NoSuchKey"):
        envelope_of(signing, ctx)


def test_a_manifest_gone_from_the_bucket_is_chained_not_attested(signing):
    ctx, _ = ended_release(signing)
    attest(_denying_deps(signing, ctx.artifact.key, "NoSuchVersion"), ctx)
    assert LedgerChain(signing.ledger.table).head(SERVICE).seq == 1
    with pytest.raises(ClientError, match="NoSuchKey"):
        envelope_of(signing, ctx)
