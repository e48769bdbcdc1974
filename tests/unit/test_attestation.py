"""Attestations: in-toto statements in DSSE envelopes, signed by KMS (DIGEST), verified
offline from the public key alone; every tampered field and a wrong key are refused."""

from __future__ import annotations

import base64
import copy
import json

import boto3
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from modelgate_emulator.kms import digest_signing

from modelgate.attestation import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    AttestationInvalid,
    kms_signer,
    load_public_keys,
    pae,
    public_key_pem,
    sign_envelope,
    statement,
    subject_problems,
    verify_envelope,
)

SUBJECTS = {"model-config.json": "a" * 64, "prompts/system.txt": "b" * 64}
PREDICATE = {
    "service": "support-bot", "release_id": "r1", "stage": "staging",
    "outcome": {"status": "Promoted", "error": None, "reason": None},
    "evaluation_report": [{"name": "evaluation.json", "uri": "s3://b/k", "digest": {"sha256": "c" * 64}}],
    "gate": {"passed": True, "criteria": []}, "approvals": [{"decision": "approve", "approver": "ann"}],
    "canary": {"verdict": "pass"}, "ledger": {"chain": "CHAIN#support-bot", "seq": 1, "record_sha256": "d" * 64},
}


def local_signer(key: ec.EllipticCurvePrivateKey, keyid: str = "local-key"):
    return lambda message: (key.sign(message, ec.ECDSA(hashes.SHA256())), keyid)


def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def envelope(key) -> dict:
    return sign_envelope(statement(SUBJECTS, PREDICATE), local_signer(key))


def resign_payload(envelope: dict, change) -> dict:
    """The envelope with its statement changed and the old signature kept (a forger without the key)."""
    document = json.loads(base64.b64decode(envelope["payload"]))
    change(document)
    forged = copy.deepcopy(envelope)
    forged["payload"] = base64.b64encode(json.dumps(document).encode()).decode()
    return forged


# ---------------------------------------------------------------------- format
def test_pae_is_dsse_v1_with_ascii_decimal_lengths():
    assert pae("application/vnd.in-toto+json", b"hello") == b"DSSEv1 28 application/vnd.in-toto+json 5 hello"
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"


def test_the_envelope_carries_an_in_toto_statement_v1(envelope, key):
    assert envelope["payloadType"] == PAYLOAD_TYPE and len(envelope["signatures"]) == 1
    document = json.loads(base64.b64decode(envelope["payload"]))
    assert document["_type"] == STATEMENT_TYPE and document["predicateType"] == PREDICATE_TYPE
    assert document["subject"] == [{"name": "model-config.json", "digest": {"sha256": "a" * 64}},
                                   {"name": "prompts/system.txt", "digest": {"sha256": "b" * 64}}]
    verified = verify_envelope(json.dumps(envelope), load_public_keys(pem(key)))
    assert verified.subjects() == SUBJECTS and verified.predicate == PREDICATE and verified.keyid == "local-key"


def test_a_statement_needs_a_subject():
    with pytest.raises(ValueError, match="at least one subject"):
        statement({}, PREDICATE)


# ---------------------------------------------------------------------- tampering
@pytest.mark.parametrize("change", [
    lambda d: d["subject"][0]["digest"].update(sha256="f" * 64),
    lambda d: d["subject"][1].update(name="prompts/other.txt"),
    lambda d: d["subject"].pop(),
    lambda d: d["predicate"]["outcome"].update(status="RolledBack"),
    lambda d: d["predicate"].update(stage="prod"),
    lambda d: d["predicate"]["ledger"].update(record_sha256="e" * 64),
    lambda d: d["predicate"]["gate"].update(passed=False),
    lambda d: d["predicate"]["approvals"][0].update(approver="mallory"),
    lambda d: d["predicate"]["evaluation_report"][0]["digest"].update(sha256="0" * 64),
    lambda d: d["predicate"]["canary"].update(verdict="fail"),
    lambda d: d.update(predicateType="https://example.com/other"),
], ids=["subject-digest", "subject-name", "subject-removed", "outcome", "stage", "ledger-hash", "gate", "approver",
        "report-digest", "canary", "predicate-type"])
def test_any_change_to_the_signed_statement_is_refused(envelope, key, change):
    with pytest.raises(AttestationInvalid, match="no signature of the envelope verifies"):
        verify_envelope(resign_payload(envelope, change), load_public_keys(pem(key)))


def test_a_changed_payload_type_is_refused(envelope, key):
    envelope["payloadType"] = "application/json"
    with pytest.raises(AttestationInvalid, match="payloadType is 'application/json'"):
        verify_envelope(envelope, load_public_keys(pem(key)))


def test_a_wrong_key_is_refused_and_a_rotation_bundle_accepts_either(envelope, key):
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AttestationInvalid, match="with the 1 trusted public key"):
        verify_envelope(envelope, load_public_keys(pem(other)))
    assert verify_envelope(envelope, load_public_keys(pem(other) + pem(key))).subjects() == SUBJECTS


@pytest.mark.parametrize("broken,reason", [
    (b"not json", "the envelope is not JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"payloadType": PAYLOAD_TYPE, "payload": "%%%", "signatures": []}), "payload is not valid base64"),
    (json.dumps({"payloadType": PAYLOAD_TYPE, "payload": "e30=", "signatures": []}), "carries no signature"),
    (json.dumps({"payloadType": PAYLOAD_TYPE, "payload": "e30=", "signatures": [{"sig": 5}]}),
     "signature is not a base64 string"),
])
def test_a_malformed_envelope_is_refused_by_name(key, broken, reason):
    with pytest.raises(AttestationInvalid, match=reason):
        verify_envelope(broken, load_public_keys(pem(key)))


def test_a_signed_payload_that_is_not_a_modelgate_statement_is_refused(key):
    signer = local_signer(key)
    with pytest.raises(AttestationInvalid, match="not an in-toto Statement"):
        verify_envelope(sign_envelope({"_type": "x"}, signer), load_public_keys(pem(key)))
    bad_subject = statement(SUBJECTS, PREDICATE)
    bad_subject["subject"][0] = {"name": "m"}
    with pytest.raises(AttestationInvalid, match="a subject is not"):
        verify_envelope(sign_envelope(bad_subject, signer), load_public_keys(pem(key)))


def test_public_keys_that_are_not_p256_or_not_pem_are_refused_by_name():
    with pytest.raises(ValueError, match="no PEM public key found"):
        load_public_keys("nothing here")
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="public key 1 of 1 is not an ECC_NIST_P256 key"):
        load_public_keys(pem(p384))


def test_subject_problems_name_each_difference():
    assert subject_problems(SUBJECTS, SUBJECTS, "staging") == []
    mine = {**SUBJECTS, "model-config.json": "1" * 64, "prompts/new.txt": "2" * 64}
    theirs = {**SUBJECTS, "prompts/old.txt": "3" * 64}
    assert subject_problems(mine, theirs, "staging") == [
        f"model-config.json: sha256 {'1' * 64} here, {'a' * 64} in staging",
        f"prompts/new.txt (sha256 {'2' * 64}) is not in the artefact staging attested",
        "prompts/old.txt is in the artefact staging attested but not in this one",
    ]


# ---------------------------------------------------------------------- KMS (moto, with the DIGEST shim)
@pytest.fixture
def kms(aws_env):
    with digest_signing():
        client = boto3.client("kms", region_name="us-east-1")
        yield client


def test_a_kms_signed_envelope_verifies_offline_with_the_public_key_alone(kms):
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    envelope = sign_envelope(statement(SUBJECTS, PREDICATE), kms_signer(kms, key_id))
    public = public_key_pem(kms, key_id)
    assert public.startswith(b"-----BEGIN PUBLIC KEY-----")
    # offline: no client is involved from here on
    verified = verify_envelope(json.dumps(envelope), load_public_keys(public))
    assert verified.keyid == key_id and verified.subjects() == SUBJECTS
    # and another KMS key's public half does not verify it
    other = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    with pytest.raises(AttestationInvalid):
        verify_envelope(envelope, load_public_keys(public_key_pem(kms, other)))


def test_the_kms_signature_is_over_the_pae_digest(kms):
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    message = pae(PAYLOAD_TYPE, b'{"a":1}')
    signature, _ = kms_signer(kms, key_id)(message)
    public = load_public_keys(public_key_pem(kms, key_id))[0]
    public.verify(signature, message, ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature if not
    with pytest.raises(InvalidSignature):
        public.verify(signature, message + b" ", ec.ECDSA(hashes.SHA256()))
