"""`modelgate verify` and `audit` (modelgate_harness.trail) against the unit world: every check
reported, and each kind of tampering caught by the check that names it."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json

import boto3
import pytest
from modelgate_emulator.kms import digest_signing
from modelgate_harness.control import Control
from modelgate_harness.trail import audit_rows, audit_text, verify_release

from modelgate.attestation import attestation_key, kms_signer, public_key_pem, sign_envelope, statement
from modelgate.chain import LedgerChain, snapshot
from modelgate.pipeline.attest import attest
from modelgate.pipeline.candidate import validate
from modelgate.pipeline.deps import Deps
from modelgate.pipeline.intake import initial_context, start_release
from modelgate.pipeline.revocation import revocation_key, revoke
from modelgate.settings import AttestSettings

BUCKET, SERVICE = "artefacts", "support-bot"  # the world's (tests/unit/conftest.py)
PROMPT = b"You are a support bot.\nQ: how do I reset my password? A: Use Settings > Security.\n"


@pytest.fixture
def trail(world):
    with digest_signing():
        kms = world.client("kms")
        key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        world.attest_deps = Deps(AttestSettings(**world.settings.model_dump(by_alias=True), SIGNING_KEY_ID=key,
                                                STAGE="staging"), world.client, world.ledger)
        world.control = Control("test", {"ArtifactBucketName": BUCKET, "LedgerTableName": world.ledger.table.name,
                                         "SigningKeyArn": key}, world.client, lambda name: boto3.resource(name))
        world.register()
        yield world


def release(world, label: str, status: str = "Promoted") -> str:
    """A release of ``label``'s commit, validated, ended ``status`` and attested."""
    commit = hashlib.sha1(label.encode()).hexdigest()
    prefix = f"releases/{SERVICE}/{commit}/"
    world.deps.s3.put_object(Bucket=BUCKET, Key=prefix + "prompts/system.txt", Body=PROMPT)
    body = json.dumps({
        "service": SERVICE, "model": {"provider": "local", "model_id": "local.retrieval-small-v1:0"},
        "prompts": [{"name": "system", "file": "prompts/system.txt", "sha256": hashlib.sha256(PROMPT).hexdigest()}],
        "source": {"commit": commit, "branch": "main"},
    })
    put = world.deps.s3.put_object(Bucket=BUCKET, Key=prefix + "model-config.json", Body=body)
    ctx = validate(world.deps, initial_context(BUCKET, prefix + "model-config.json", put["VersionId"]))
    world.ledger.record(ctx.release_id, status, f"ended {status}", candidate_version="2", live_version="1")
    attest(world.attest_deps, ctx)
    return ctx.release_id


def failed(report) -> dict[str, str]:
    return {name: detail for name, ok, detail in report.checks if not ok}


def test_an_attested_release_verifies_on_every_check(trail):
    release_id = release(trail, "r1")
    report = verify_release(trail.control, release_id)
    assert report.ok and [name for name, _, _ in report.checks] == [
        "chain of support-bot", "release chained", "attestation signature", "attestation names the chain record",
        "attested artefact", "not revoked"]
    # and with the public key given as a file's bytes: the same, without the KMS call
    pem = public_key_pem(trail.client("kms"), trail.control.outputs["SigningKeyArn"])
    assert verify_release(trail.control, release_id, pem).ok


def test_a_wrong_public_key_fails_the_signature(trail):
    release_id = release(trail, "r1")
    other = trail.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    report = verify_release(trail.control, release_id, public_key_pem(trail.client("kms"), other))
    assert list(failed(report)) == ["attestation signature"]


def test_a_deleted_chain_record_fails_the_chain_and_the_release(trail):
    first, second = release(trail, "r1"), release(trail, "r2")
    trail.ledger.table.delete_item(Key={"pk": f"CHAIN#{SERVICE}", "sk": f"SEQ#{1:012d}"})
    report = verify_release(trail.control, first)
    assert failed(report)["chain of support-bot"] == "record 2: record(s) 1..1 are missing (deleted)"
    assert failed(report)["release chained"].startswith(f"release {first} has no chain record")
    assert list(failed(verify_release(trail.control, second))) == ["chain of support-bot"]


def test_another_release_s_attestation_in_its_place_is_caught(trail):
    first, second = release(trail, "r1"), release(trail, "r2")
    s3 = trail.client("s3")
    theirs = s3.get_object(Bucket=BUCKET, Key=attestation_key(SERVICE, second))["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=attestation_key(SERVICE, first), Body=theirs)
    problems = failed(verify_release(trail.control, first))
    assert list(problems) == ["attestation names the chain record", "attested artefact"]
    assert f"it attests release '{second}'" in problems["attestation names the chain record"]


def test_a_validly_signed_attestation_of_other_bytes_fails_the_artefact_check(trail):
    # Given someone able to sign (the stack's key) attesting digests the artefact doesn't have
    release_id = release(trail, "r1")
    s3 = trail.client("s3")
    envelope = json.loads(s3.get_object(Bucket=BUCKET, Key=attestation_key(SERVICE, release_id))["Body"].read())
    document = json.loads(base64.b64decode(envelope["payload"]))
    forged = statement({"model-config.json": "0" * 64, "prompts/system.txt": "1" * 64}, document["predicate"])
    with digest_signing():
        signed = sign_envelope(forged, kms_signer(trail.client("kms"), trail.control.outputs["SigningKeyArn"]))
    s3.put_object(Bucket=BUCKET, Key=attestation_key(SERVICE, release_id), Body=json.dumps(signed))
    problems = failed(verify_release(trail.control, release_id))
    assert list(problems) == ["attested artefact"]
    assert problems["attested artefact"].startswith(f"model-config.json: attested {'0' * 64}, the object is ")


def test_a_release_rolled_back_and_revoked_fails_verify_saying_so(trail):
    # Given a promoted release its stage rolled back and revoked (modelgate rollback does both)
    release_id = release(trail, "r1")
    record = trail.ledger.record(release_id, "RolledBack", "manual rollback by ops", actor="ops", reopen=True,
                                 reason="manual rollback by ops: wrong answers")
    LedgerChain(trail.ledger.table).append(SERVICE, "manual-rollback", release_id, snapshot(record))
    with digest_signing():
        assert revoke(trail.attest_deps, SERVICE, release_id)["revoked"] is True
    # When it is verified / Then everything checks but its revocation: no downstream stage must take it
    problems = failed(verify_release(trail.control, release_id))
    assert list(problems) == ["not revoked"]
    assert problems["not revoked"].startswith("revoked: rolled back at ") and "by ops: manual rollback" in \
        problems["not revoked"]


def test_a_revocation_that_does_not_verify_fails_verify(trail):
    release_id = release(trail, "r1")
    trail.client("s3").put_object(Bucket=BUCKET, Key=revocation_key(SERVICE, release_id), Body=b"{}")
    assert "does not verify" in failed(verify_release(trail.control, release_id))["not revoked"]


def test_a_release_refused_at_intake_verifies_on_its_chain_record_alone(trail):
    # Given an upload refused at intake (chained there, never attested)
    refused = start_release(trail.deps, BUCKET, f"releases/{SERVICE}/c/model-config.json", "v1")["release_id"]
    # When it is verified / Then every check passes, the attestation's saying why there is none
    report = verify_release(trail.control, refused)
    assert report.ok, report.lines()
    assert {n: d for n, _, d in report.checks}["attestation"].startswith("none, by design: refused at intake")


def test_a_manifest_over_the_hashing_cap_verifies_and_is_audited_with_the_reason(trail, monkeypatch, capsys):
    from modelgate_harness import cli

    # Given a release refused for its manifest, which is over the bytes Attest hashes (the cap lowered: 1 KiB)
    monkeypatch.setattr("modelgate.pipeline.attest.MAX_RESULTS_BYTES", 1024)
    commit = hashlib.sha1(b"huge").hexdigest()
    key = f"releases/{SERVICE}/{commit}/model-config.json"
    put = trail.deps.s3.put_object(Bucket=BUCKET, Key=key, Body=b" " * 1025)
    ctx = initial_context(BUCKET, key, put["VersionId"])
    trail.ledger.receive(ctx.release_id, "uploaded", service=SERVICE, commit=commit)
    trail.ledger.record(ctx.release_id, "Invalid", "manifest too large", reason="too large")
    attest(trail.attest_deps, ctx)
    why = "its manifest is 1,025 bytes, over the 1,024 bytes Attest hashes: it has no digest to attest, nothing is signed"
    # When an auditor runs `modelgate verify` / Then it verifies on its chain record, saying why nothing is signed
    monkeypatch.setattr(cli, "_control", lambda args: trail.control)
    assert cli.main(["verify", ctx.release_id]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"release {ctx.release_id}: VERIFIED")
    assert f"  [ok] attestation: none, by design: {why} (chain record 1)" in out.splitlines()
    # and `modelgate audit` lists the reason in its own column, JSON and CSV
    assert cli.main(["audit", SERVICE]) == 0
    assert [r["unattested"] for r in json.loads(capsys.readouterr().out)["records"]] == [why]
    assert cli.main(["audit", SERVICE, "--format", "csv"]) == 0
    assert [r["unattested"] for r in csv.DictReader(io.StringIO(capsys.readouterr().out))] == [why]


def test_a_missing_attestation_cannot_be_excused_by_an_edit_of_the_ledger(trail):
    # Given an attested release whose attestation was deleted, and its ledger record then
    # edited to claim it ended on a path that signs nothing
    release_id = release(trail, "r1")
    trail.client("s3").delete_object(Bucket=BUCKET, Key=attestation_key(SERVICE, release_id))
    trail.ledger.set_fields(release_id, unattested="refused at intake")
    # Then verify fails: the edit doesn't match the chain record, and the attestation is missing
    problems = failed(verify_release(trail.control, release_id))
    assert list(problems) == ["release chained", "attestation"]
    assert "field 'unattested'" in problems["release chained"]


def test_a_failed_attest_step_is_named_by_verify(trail):
    release_id = release(trail, "r1")
    trail.client("s3").delete_object(Bucket=BUCKET, Key=attestation_key(SERVICE, release_id))
    trail.ledger.set_fields(release_id, attestation_error="missing: KMS throttled")
    assert failed(verify_release(trail.control, release_id))["attestation"].endswith(
        "; the ledger says: missing: KMS throttled")


def test_a_release_without_an_attestation_says_where_it_looked(trail):
    release_id = release(trail, "r1")
    trail.client("s3").delete_object(Bucket=BUCKET, Key=attestation_key(SERVICE, release_id))
    assert failed(verify_release(trail.control, release_id)) == {
        "attestation": f"no attestation at s3://{BUCKET}/{attestation_key(SERVICE, release_id)}"}


def test_the_audit_lists_every_record_and_the_unchained_releases(trail):
    first, second = release(trail, "r1"), release(trail, "r2", "RolledBack")
    trail.ledger.record("support-bot-stopped", "Superseded", "stopped", service=SERVICE)
    rows, problems = audit_rows(trail.control, SERVICE)
    assert problems == []
    assert [(r["seq"], r["release_id"], r["status"], r["chain_status"][:10]) for r in rows] == [
        (1, first, "Promoted", "ok"), (2, second, "RolledBack", "ok"),
        (None, "support-bot-stopped", "Superseded", "unchained ")]
    table = list(csv.DictReader(io.StringIO(audit_text(rows, problems, SERVICE, "csv"))))
    assert [r["release_id"] for r in table] == [first, second, "support-bot-stopped"] and table[2]["seq"] == ""
    # --since leaves out what came before
    later, _ = audit_rows(trail.control, SERVICE, since=rows[1]["at"])
    assert [r["release_id"] for r in later][:1] == [second]


def test_the_audit_of_a_broken_chain_marks_the_record(trail):
    release(trail, "r1")
    release(trail, "r2")
    trail.ledger.table.update_item(Key={"pk": f"CHAIN#{SERVICE}", "sk": f"SEQ#{2:012d}"},
                                   UpdateExpression="SET #at = :a", ExpressionAttributeNames={"#at": "at"},
                                   ExpressionAttributeValues={":a": "2001-01-01"})
    rows, problems = audit_rows(trail.control, SERVICE)
    exported = json.loads(audit_text(rows, problems, SERVICE, "json"))
    assert exported["chain_intact"] is False
    assert [r["chain_status"] for r in exported["records"]] == [
        "ok", "record 2: its content does not hash to its record_hash (edited)"]


def test_the_cli_exits_0_only_for_a_verified_release_and_an_intact_chain(trail, monkeypatch, capsys, tmp_path):
    from modelgate_harness import cli

    monkeypatch.setattr(cli, "_control", lambda args: trail.control)
    release_id = release(trail, "r1")
    pem = tmp_path / "key.pem"
    assert cli.main(["public-key", "--out", str(pem)]) == 0
    assert cli.main(["verify", release_id, "--public-key", str(pem)]) == 0
    assert capsys.readouterr().out.startswith(f"release {release_id}: VERIFIED")
    assert cli.main(["audit", SERVICE, "--format", "csv"]) == 0
    trail.ledger.table.delete_item(Key={"pk": f"CHAIN#{SERVICE}", "sk": "HEAD"})
    assert cli.main(["verify", release_id, "--public-key", str(pem)]) == 1
    assert "NOT VERIFIED" in capsys.readouterr().out
    assert cli.main(["audit", SERVICE]) == 1
    assert "the chain has records but no head" in capsys.readouterr().err


def test_attestation_out_carries_the_revocation_and_submit_puts_both_beside_the_artefact(trail, tmp_path, monkeypatch):
    from modelgate_harness import cli
    from modelgate_harness.trail import revocation_path, upload_attestation

    monkeypatch.setattr(cli, "_control", lambda args: trail.control)
    kept, revoked_id = release(trail, "r1"), release(trail, "r2")
    record = trail.ledger.record(revoked_id, "RolledBack", "manual rollback by ops", actor="ops", reopen=True)
    LedgerChain(trail.ledger.table).append(SERVICE, "manual-rollback", revoked_id, snapshot(record))
    with digest_signing():
        revoke(trail.attest_deps, SERVICE, revoked_id)
    out = tmp_path / "staging.intoto.json"
    # When CI fetches a revoked release's attestation / Then its revocation is written beside it
    assert cli.main(["attestation", revoked_id, "--out", str(out)]) == 0
    assert revocation_path(out) == tmp_path / "staging.intoto.revocation.json"
    revocation = revocation_path(out).read_bytes()
    assert json.loads(revocation)["payloadType"] == "application/vnd.in-toto+json"
    # and the upload puts both where the next stage's Validate looks
    upload_attestation(trail.control, SERVICE, "c" * 40, out.read_bytes(), revocation)
    prefix = f"releases/{SERVICE}/{'c' * 40}/attestations/"
    stored = {o["Key"] for o in trail.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}
    assert stored == {prefix + "staging.intoto.json", prefix + "staging.revocation.intoto.json"}  # upstream.py reads these
    # When it then fetches a release that is not revoked into the same file / Then the stale revocation goes
    assert cli.main(["attestation", kept, "--out", str(out)]) == 0
    assert not revocation_path(out).exists()
