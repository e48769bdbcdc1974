"""Attest (an ended release: chained, signed, stored beside its report) and the promotion
across stages it enables (Validate accepts only what the upstream stage promoted)."""

from __future__ import annotations

import hashlib
import json

import pytest
from botocore.exceptions import ClientError
from modelgate_emulator.kms import digest_signing

from modelgate.attestation import (
    MANIFEST_SUBJECT,
    REVOCATION_PREDICATE_TYPE,
    AttestationInvalid,
    attestation_key,
    kms_signer,
    load_public_keys,
    public_key_pem,
    sign_envelope,
    statement,
    verify_envelope,
)
from modelgate.chain import LedgerChain, snapshot, verify_chain
from modelgate.errors import ManifestInvalid
from modelgate.manifest import MAX_MANIFEST_BYTES
from modelgate.pipeline.attest import CHUNK, ReleaseNotEnded, attest
from modelgate.pipeline.candidate import required_stages, validate
from modelgate.pipeline.deps import Deps
from modelgate.pipeline.intake import initial_context
from modelgate.pipeline.revocation import NotRevocable, revocation_key, revoke
from modelgate.pipeline.upstream import trust_parameter, upstream_attestation_key
from modelgate.policy import ReleasePolicy
from modelgate.settings import AttestSettings, ValidateSettings

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


class StreamOnlyS3:
    """The stages' S3 client, whose GetObject bodies may only be streamed (``iter_chunks``):
    reading one whole fails the test. Records the keys read and the largest chunk seen."""

    def __init__(self, real) -> None:
        self._real = real
        self.read_keys: list[str] = []
        self.largest_chunk = 0

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def get_object(self, **kwargs):
        response = self._real.get_object(**kwargs)
        self.read_keys.append(kwargs["Key"])
        body, outer = response["Body"], self

        class Body:
            def read(self, *args):
                raise AssertionError(f"{kwargs['Key']} was read whole, not streamed")

            def iter_chunks(self, size):
                for chunk in body.iter_chunks(size):
                    outer.largest_chunk = max(outer.largest_chunk, len(chunk))
                    yield chunk

        return {**response, "Body": Body()}


def test_a_report_is_hashed_by_streaming_it_never_read_whole(signing):
    ctx, _ = ended_release(signing)
    report = bytes(range(256)) * (3 * 4096 + 17)  # 3 MiB and a bit: several chunks
    key = f"reports/{SERVICE}/{ctx.release_id}/evaluation.json"
    version = signing.deps.s3.put_object(Bucket=BUCKET, Key=key, Body=report)["VersionId"]
    evaluation = {"n_cases": 36, "sides": {}, "report_key": key, "report_version": version, "dataset_key": "d",
                  "dataset_version": "v", "shards": 1, "baseline": "live"}
    ctx = ctx.model_validate({**ctx.dump(), "evaluation": evaluation})
    s3 = signing.use("s3", StreamOnlyS3(signing.client("s3")))
    attest(signing.attest_deps, ctx)
    s3_real = s3._real
    verified = verify_envelope(s3_real.get_object(Bucket=BUCKET, Key=attestation_key(SERVICE, ctx.release_id))[
        "Body"].read(), load_public_keys(signing.public_pem))
    assert verified.predicate["evaluation_report"][0]["digest"] == {"sha256": hashlib.sha256(report).hexdigest()}
    assert key in s3.read_keys and 0 < s3.largest_chunk <= CHUNK < len(report)


def refused_for_size(signing, body: bytes):
    """A release whose manifest ``body`` was uploaded and refused for its size: ended Invalid."""
    put = signing.deps.s3.put_object(Bucket=BUCKET, Key=PREFIX + "model-config.json", Body=body)
    ctx = initial_context(BUCKET, PREFIX + "model-config.json", put["VersionId"])
    signing.ledger.receive(ctx.release_id, "uploaded", service=SERVICE, commit=COMMIT)
    signing.ledger.record(ctx.release_id, "Invalid", "manifest too large", reason="too large")
    return ctx


def test_a_manifest_refused_for_its_size_is_attested_by_its_streamed_digest(signing):
    # Given a release refused for its manifest's size (Validate's cap, which it checks without reading), ended Invalid
    body = b'{"service": "support-bot", "padding": "' + b"x" * MAX_MANIFEST_BYTES + b'"}'
    ctx = refused_for_size(signing, body)
    s3 = signing.use("s3", StreamOnlyS3(signing.client("s3")))
    # When Attest runs
    attest(signing.attest_deps, ctx)
    # Then the refusal is chained and attested like any other, naming the oversize object's digest (streamed)
    records, _broken, _head = LedgerChain(signing.ledger.table).read(SERVICE)
    assert [(r.release_id, r.body["status"]) for r in records] == [(ctx.release_id, "Invalid")]
    envelope = s3._real.get_object(Bucket=BUCKET, Key=attestation_key(SERVICE, ctx.release_id))["Body"].read()
    verified = verify_envelope(envelope, load_public_keys(signing.public_pem))
    assert verified.subjects() == {MANIFEST_SUBJECT: hashlib.sha256(body).hexdigest()}
    assert verified.predicate["outcome"]["status"] == "Invalid"
    assert 0 < s3.largest_chunk <= CHUNK


def test_a_manifest_over_the_hashing_cap_is_chained_not_read_and_not_attested(signing, monkeypatch):
    # Given a manifest larger than Attest hashes (the cap lowered so the test needn't upload 64 MiB)
    monkeypatch.setattr("modelgate.pipeline.attest.MAX_RESULTS_BYTES", 1024)
    ctx = refused_for_size(signing, b"x" * 1025)
    s3 = signing.use("s3", StreamOnlyS3(signing.client("s3")))
    # When Attest runs / Then the release is chained, its manifest not read at all, and no attestation is signed
    attest(signing.attest_deps, ctx)
    records, _broken, _head = LedgerChain(signing.ledger.table).read(SERVICE)
    assert [(r.release_id, r.body["status"]) for r in records] == [(ctx.release_id, "Invalid")]
    assert s3.read_keys == []
    assert "Contents" not in s3._real.list_objects_v2(Bucket=BUCKET, Prefix=attestation_key(SERVICE, ctx.release_id))
    # and its chain record says why (the release item too, which verify compares with it)
    why = "its manifest is 1,025 bytes, over the 1,024 bytes Attest hashes: it has no digest to attest, nothing is signed"
    assert records[0].body["unattested"] == why and signing.ledger.get(ctx.release_id)["unattested"] == why
    # Attest again (a retry): the same single record, the reason written once
    attest(signing.attest_deps, ctx)
    assert [r.body["unattested"] for r in LedgerChain(signing.ledger.table).read(SERVICE)[0]] == [why]


class SparseManifestS3(StreamOnlyS3):
    """S3 whose object ``key`` is ``size`` zero bytes, never allocated: HeadObject reports the
    size (the real object is a few bytes), GetObject streams 1 MiB of zeros over and over."""

    def __init__(self, real, key: str, size: int) -> None:
        super().__init__(real)
        self.key, self.size = key, size

    def head_object(self, **kwargs):
        head = self._real.head_object(**kwargs)
        return {**head, "ContentLength": self.size} if kwargs["Key"] == self.key else head

    def get_object(self, **kwargs):
        if kwargs["Key"] != self.key:
            return super().get_object(**kwargs)
        self.read_keys.append(kwargs["Key"])
        response = self._real.get_object(**kwargs)
        size, outer = self.size, self

        class Body:
            def read(self, *args):
                raise AssertionError(f"{kwargs['Key']} was read whole, not streamed")

            def iter_chunks(self, chunk_size):
                for chunk in zeros(size, chunk_size):
                    outer.largest_chunk = max(outer.largest_chunk, len(chunk))
                    yield chunk

        return {**response, "Body": Body()}


def zeros(size: int, chunk_size: int = CHUNK):
    block = bytes(chunk_size)  # one chunk's worth, reused
    for start in range(0, size, chunk_size):
        yield block[: min(chunk_size, size - start)]


@pytest.mark.parametrize("over", [0, 1])
def test_the_64_mib_hashing_cap_on_both_sides_without_allocating_it(signing, over):
    # Given a refused release whose manifest is exactly the cap, or one byte more (S3 reports the size, the bytes
    # are streamed zeros: nothing of 64 MiB is allocated)
    from modelgate.adapters.s3 import MAX_RESULTS_BYTES

    size = MAX_RESULTS_BYTES + over
    ctx = refused_for_size(signing, b"{}")
    s3 = signing.use("s3", SparseManifestS3(signing.client("s3"), ctx.artifact.key, size))
    # When Attest runs
    attest(signing.attest_deps, ctx)
    record = LedgerChain(signing.ledger.table).read(SERVICE)[0][0]
    key = attestation_key(SERVICE, ctx.release_id)
    if not over:
        # Then at the cap it is hashed, streamed, and attested: nothing says unattested
        digest = hashlib.sha256()
        for chunk in zeros(size):
            digest.update(chunk)
        verified = verify_envelope(s3._real.get_object(Bucket=BUCKET, Key=key)["Body"].read(),
                                   load_public_keys(signing.public_pem))
        assert verified.subjects() == {MANIFEST_SUBJECT: digest.hexdigest()}
        assert "unattested" not in record.body and "unattested" not in signing.ledger.get(ctx.release_id)
        assert s3.read_keys == [ctx.artifact.key] and s3.largest_chunk == CHUNK
    else:
        # Then one byte over it is not read, nothing is signed, and the record says so: the size and the cap
        assert s3.read_keys == []
        assert "Contents" not in s3._real.list_objects_v2(Bucket=BUCKET, Prefix=key)
        assert record.body["unattested"] == (
            "its manifest is 67,108,865 bytes, over the 67,108,864 bytes Attest hashes: it has no digest to attest, "
            "nothing is signed")


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


# ---------------------------------------------------------------------- revocation
def roll_back(world, ctx) -> None:
    """What `modelgate rollback` leaves of a promoted release: RolledBack, and its chain record."""
    record = world.ledger.record(ctx.release_id, "RolledBack", "manual rollback by ops: bad answers", actor="ops",
                                 reopen=True, reason="manual rollback by ops: bad answers", error="ManualRollback")
    LedgerChain(world.ledger.table).append(SERVICE, "manual-rollback", ctx.release_id, snapshot(record))


def staging_release(production):
    """The release the production fixture's staging promoted and attested."""
    (record,) = [r for r in LedgerChain(production.ledger.table).read(SERVICE)[0] if r.kind == "release"]
    return production.ledger.release(record.release_id)


def carry_revocation(world, envelope: bytes) -> None:
    world.deps.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}attestations/staging.revocation.intoto.json", Body=envelope)


def test_a_promoted_release_rolled_back_later_is_revoked_and_production_refuses_it(production):
    # Given staging rolled back the release it had promoted and attested
    staged = staging_release(production)
    roll_back(production, staged)
    # When staging's signer revokes it
    result = revoke(production.attest_deps, SERVICE, staged.release_id)
    # Then a revocation lies beside the attestation, signed by the same key, naming the same artefact,
    # the attestation it takes back (by its bytes) and the rollback's chain record
    assert result["revoked"] is True and result["key"] == revocation_key(SERVICE, staged.release_id)
    envelope = production.deps.s3.get_object(Bucket=BUCKET, Key=result["key"])["Body"].read()
    keys = load_public_keys(production.public_pem)
    revoked = verify_envelope(envelope, keys, predicate_type=REVOCATION_PREDICATE_TYPE)
    attested = verify_envelope(production.staging_envelope, keys)
    assert revoked.subjects() == attested.subjects()
    predicate = revoked.predicate
    assert (predicate["release_id"], predicate["stage"], predicate["actor"]) == (staged.release_id, "staging", "ops")
    assert predicate["attestation"]["digest"]["sha256"] == hashlib.sha256(production.staging_envelope).hexdigest()
    rollback_record = LedgerChain(production.ledger.table).recorded(SERVICE, "manual-rollback", staged.release_id)
    assert predicate["ledger"] == {"chain": f"CHAIN#{SERVICE}", "seq": rollback_record.seq,
                                   "record_sha256": rollback_record.record_hash}
    # and it can never pass for an attestation (nor the reverse)
    with pytest.raises(AttestationInvalid, match="predicateType"):
        verify_envelope(envelope, keys)
    # And production, given the attestation and the revocation (as CI carries them), refuses the artefact
    carry(production, production.staging_envelope)
    carry_revocation(production, envelope)
    ctx, _ = upload(production)
    with pytest.raises(ManifestInvalid, match=f"staging revoked its promotion of this artefact \\(release "
                                              f"{staged.release_id}\\): rolled back at .* by ops: manual rollback"):
        validate(production.deps, ctx)


def test_without_the_revocation_production_cannot_know(production):
    # The design's limit: production reads only what CI carries. Given a revoked release whose
    # attestation alone is carried, production accepts the artefact (the workflow's verify step
    # against staging is what refuses it there)
    staged = staging_release(production)
    roll_back(production, staged)
    revoke(production.attest_deps, SERVICE, staged.release_id)
    carry(production, production.staging_envelope)
    ctx, _ = upload(production)
    assert validate(production.deps, ctx).policy.requires_stage == "staging"


def test_only_a_promoted_release_the_chain_says_was_rolled_back_is_revoked(production):
    staged = staging_release(production)
    # a release still promoted
    with pytest.raises(NotRevocable, match="is Promoted, not RolledBack: nothing to revoke"):
        revoke(production.attest_deps, SERVICE, staged.release_id)
    # a ledger edited to say RolledBack, without the rollback's chain record
    production.ledger.record(staged.release_id, "RolledBack", "edited", reopen=True)
    with pytest.raises(NotRevocable, match="has no manual-rollback record in the chain"):
        revoke(production.attest_deps, SERVICE, staged.release_id)
    # another service's name
    with pytest.raises(NotRevocable, match="no release .* of service other-bot"):
        revoke(production.attest_deps, "other-bot", staged.release_id)
    assert not production.deps.s3.list_objects_v2(Bucket=BUCKET, Prefix=revocation_key(SERVICE, staged.release_id)
                                                  ).get("Contents")


def test_a_release_rolled_back_that_was_never_promoted_has_nothing_to_revoke(signing):
    ctx, _ = ended_release(signing, "RollbackFailed")
    attest(signing.attest_deps, ctx)
    roll_back(signing, ctx)  # a canary withdrawn by `modelgate rollback` after its Rollback failed
    result = revoke(signing.attest_deps, SERVICE, ctx.release_id)
    assert result["revoked"] is False and "ended RollbackFailed, never promoted" in result["why"]


def test_a_revocation_that_does_not_verify_refuses_the_artefact(production):
    carry(production, production.staging_envelope)
    carry_revocation(production, b'{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": []}')
    ctx, _ = upload(production)
    with pytest.raises(ManifestInvalid, match="a staging revocation is carried beside this artefact .* and does not "
                                              "verify.*carries no signature"):
        validate(production.deps, ctx)


def test_a_revocation_of_another_release_of_the_same_artefact_does_not_refuse_it(production):
    # Given staging revoked an earlier release of this artefact, and promoted it again since
    staged = staging_release(production)
    attested = verify_envelope(production.staging_envelope, load_public_keys(production.public_pem))
    other = statement(attested.subjects(), {"service": SERVICE, "release_id": "support-bot-earlier-1",
                                            "stage": "staging"}, predicate_type=REVOCATION_PREDICATE_TYPE)
    with digest_signing():
        signed = sign_envelope(other, kms_signer(production.client("kms"), production.attest_deps.settings.signing_key_id))
    carry(production, production.staging_envelope)
    carry_revocation(production, json.dumps(signed).encode())
    # When production validates it / Then the revocation of the other release does not refuse it
    ctx, _ = upload(production)
    validate(production.deps, ctx)
    assert f"promoted in staging as release {staged.release_id}" in production.ledger.get(ctx.release_id)["history"][-1]["detail"]


# ---------------------------------------------------------------------- the stack's RequiresStage parameter
def validate_settings(world, requires_stage: str) -> ValidateSettings:
    return ValidateSettings(**world.settings.model_dump(by_alias=True), REQUIRES_STAGE=requires_stage)


def test_the_stacks_required_stage_binds_a_service_whose_policy_requires_none(production):
    # Given a stack whose RequiresStage is staging, and a service policy that requires nothing
    production.register(ReleasePolicy())
    deps = Deps(validate_settings(production, "staging"), production.client, production.ledger)
    # Then an artefact without staging's attestation is refused
    ctx, _ = upload(production)
    with pytest.raises(ManifestInvalid, match="accepts only artefacts promoted in staging first.*does not exist"):
        validate(deps, ctx)
    # and the one staging promoted is accepted, saying so
    carry(production, production.staging_envelope)
    ctx, _ = upload(production)
    validate(deps, ctx)
    assert "promoted in staging as release" in production.ledger.get(ctx.release_id)["history"][-1]["detail"]


@pytest.mark.parametrize(
    ("stack", "policy", "required"),
    [("", None, []), ("staging", None, ["staging"]), ("", "staging", ["staging"]),
     ("staging", "staging", ["staging"]), ("staging", "qa", ["staging", "qa"])],
)
def test_the_stack_and_the_policy_each_add_a_required_stage(world, stack, policy, required):
    assert required_stages(validate_settings(world, stack), ReleasePolicy(requires_stage=policy)) == required


def test_a_required_stage_that_is_not_a_stage_name_is_refused_naming_it(world):
    from modelgate.errors import ConfigurationError
    from modelgate.settings import load_settings

    env = {**world.settings.model_dump(by_alias=True), "REQUIRES_STAGE": "Staging!"}
    with pytest.raises(ConfigurationError, match="REQUIRES_STAGE"):
        load_settings(env, ValidateSettings)


def test_samconfig_prod_requires_staging_by_the_templates_parameter():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "samconfig.toml").read_text())
    template = (root / "template.yaml").read_text()
    for env in ("default", "staging", "prod"):
        overrides = dict(pair.split("=", 1) for pair in config[env]["deploy"]["parameters"]["parameter_overrides"].split())
        assert all(f"\n  {name}:\n    Type:" in template for name in overrides), (env, overrides)  # template parameters
        assert overrides.get("RequiresStage", "") == ("staging" if env == "prod" else ""), env


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
