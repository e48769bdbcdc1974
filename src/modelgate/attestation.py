"""Signed release attestations: an in-toto Statement in a DSSE envelope, signed by KMS.

The statement (in-toto Attestation Framework, Statement layer v1,
https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)::

  {"_type": "https://in-toto.io/Statement/v1",
   "subject": [{"name": "model-config.json", "digest": {"sha256": ...}},
               {"name": "<every prompt file, as the manifest names it>", "digest": {"sha256": ...}}],
   "predicateType": PREDICATE_TYPE,
   "predicate": {service, release_id, stage, stack, commit, branch, author, model_id,
                 outcome {status, error, reason}, evaluation_report [{name, uri, digest}],
                 gate {passed, criteria}, approvals, canary {verdict, action, message, invocations},
                 candidate_version, live_version, ledger {chain, seq, record_sha256}, finished_at}}

A revocation (pipeline/revocation.py) is the same Statement with ``predicateType``
``REVOCATION_PREDICATE_TYPE`` and the revoked attestation's subjects; ``verify_envelope``
takes one kind only, so neither can pass for the other.

The envelope (DSSE v1.0.0, https://github.com/secure-systems-lab/dsse/blob/v1.0.0/envelope.md)::

  {"payload": base64(statement JSON), "payloadType": "application/vnd.in-toto+json",
   "signatures": [{"keyid": <KMS key ARN>, "sig": base64(signature)}]}

The signature is over DSSE's pre-authentication encoding, ``PAE(type, body) = "DSSEv1" SP
LEN(type) SP type SP LEN(body) SP body`` with LEN the ASCII decimal byte length (DSSE
protocol v1.0.0, https://github.com/secure-systems-lab/dsse/blob/v1.0.0/protocol.md), never
over the JSON alone. KMS signs the PAE's SHA-256 digest (``MessageType=DIGEST``: a RAW message
is limited to 4096 bytes, and a digest is "not hashed again while signing": "Sign", AWS KMS
API Reference, https://docs.aws.amazon.com/kms/latest/APIReference/API_Sign.html) with an
ECC_NIST_P256 key and ECDSA_SHA_256; KMS returns a DER-encoded ECDSA signature (the same
page), which verifies with the key's public half alone (``GetPublicKey`` returns it as DER
SubjectPublicKeyInfo, "GetPublicKey", AWS KMS API Reference): :func:`verify_envelope` needs
no AWS call, only the ``cryptography`` library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelgate.errors import ModelgateError

# ``cryptography`` is imported where a key is loaded or a signature verified (the CLI, Validate
# for a stage that requires an upstream attestation): signing is KMS's work, so the Attest
# function's cold start (issue #7) does not load the library's bindings for nothing.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://modelgate.dev/attestation/release/v1"
# a stage's revocation of a release it attested promoted and later rolled back (pipeline/revocation.py)
REVOCATION_PREDICATE_TYPE = "https://modelgate.dev/attestation/revocation/v1"
PREDICATE_TYPES = frozenset({PREDICATE_TYPE, REVOCATION_PREDICATE_TYPE})
SIGNING_ALGORITHM = "ECDSA_SHA_256"
MANIFEST_SUBJECT = "model-config.json"
MAX_ENVELOPE_BYTES = 1_000_000

# (signature, keyid) for the PAE bytes given
Signer = Callable[[bytes], tuple[bytes, str]]


class AttestationInvalid(ModelgateError):
    """An attestation that does not verify, or does not say what is required of it."""


def attestation_key(service: str, release_id: str) -> str:
    """Where a release's attestation lies: beside its evaluation report."""
    return f"reports/{service}/{release_id}/attestation.intoto.json"


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (see the module docstring)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def statement(
    subjects: Mapping[str, str], predicate: dict[str, Any], *, predicate_type: str = PREDICATE_TYPE
) -> dict[str, Any]:
    """An in-toto Statement v1: ``subjects`` maps name -> sha256 hex."""
    if not subjects:
        raise ValueError("an attestation needs at least one subject")
    if predicate_type not in PREDICATE_TYPES:
        raise ValueError(f"not a Modelgate predicate type: {predicate_type!r}")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(subjects.items())],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def sign_envelope(document: dict[str, Any], sign: Signer) -> dict[str, Any]:
    """The DSSE envelope of ``document``, signed over its PAE."""
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    signature, keyid = sign(pae(PAYLOAD_TYPE, body))
    return {
        "payload": base64.b64encode(body).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode()}],
    }


def kms_signer(kms: Any, key_id: str) -> Signer:
    """Sign with the KMS key: its SHA-256 digest, MessageType DIGEST (module docstring)."""

    def sign(message: bytes) -> tuple[bytes, str]:
        response = kms.sign(
            KeyId=key_id, Message=hashlib.sha256(message).digest(), MessageType="DIGEST",
            SigningAlgorithm=SIGNING_ALGORITHM,
        )
        return response["Signature"], str(response["KeyId"])

    return sign


def public_key_pem(kms: Any, key_id: str) -> bytes:
    """The KMS key's public half as PEM (one GetPublicKey; after that no AWS call is needed)."""
    from cryptography.hazmat.primitives import serialization

    der = kms.get_public_key(KeyId=key_id)["PublicKey"]
    key = serialization.load_der_public_key(der)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_keys(pem: bytes | str) -> list[ec.EllipticCurvePublicKey]:
    """Every public key of a PEM bundle (one or more ``BEGIN PUBLIC KEY`` blocks: several
    during a key rotation); ValueError naming what is wrong."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    text = pem.decode() if isinstance(pem, bytes) else pem
    marker = "-----END PUBLIC KEY-----"
    blocks = [b.strip() + "\n" + marker for b in text.split(marker) if b.strip()]
    if "-----BEGIN PUBLIC KEY-----" not in text:
        raise ValueError("no PEM public key found (expected -----BEGIN PUBLIC KEY----- blocks)")
    keys = []
    for i, block in enumerate(blocks, 1):
        try:
            key = serialization.load_pem_public_key(block.encode())
        except ValueError as exc:
            raise ValueError(f"public key {i} of {len(blocks)} is not a PEM public key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(
                f"public key {i} of {len(blocks)} is not an ECC_NIST_P256 key; Modelgate signs with ECDSA_SHA_256"
            )
        keys.append(key)
    return keys


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise AttestationInvalid(f"the envelope's {what} is not a base64 string")
    try:
        padded = value + "=" * (-len(value) % 4)
        if "-" in value or "_" in value:  # DSSE allows URL-safe base64 too
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise AttestationInvalid(f"the envelope's {what} is not valid base64") from None


@dataclass(frozen=True)
class Verified:
    """A statement whose signature verified, and with which key id."""

    statement: dict[str, Any]
    keyid: str

    @property
    def predicate(self) -> dict[str, Any]:
        return self.statement["predicate"]

    def subjects(self) -> dict[str, str]:
        return {s["name"]: s["digest"]["sha256"] for s in self.statement["subject"]}


def verify_envelope(
    envelope: bytes | str | Mapping[str, Any], keys: Iterable[ec.EllipticCurvePublicKey], *,
    predicate_type: str = PREDICATE_TYPE,
) -> Verified:
    """The envelope's statement, once a signature verifies with one of ``keys`` (offline) and
    it is an in-toto Statement v1 of ``predicate_type`` (a release attestation unless told:
    a revocation is never taken for one, nor the reverse); AttestationInvalid saying why not
    otherwise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    if isinstance(envelope, (bytes, str)):
        if len(envelope) > MAX_ENVELOPE_BYTES:
            raise AttestationInvalid(f"the envelope is {len(envelope):,} bytes; at most {MAX_ENVELOPE_BYTES:,}")
        try:
            envelope = json.loads(envelope)
        except ValueError as exc:
            raise AttestationInvalid(f"the envelope is not JSON: {exc}") from None
    if not isinstance(envelope, Mapping):
        raise AttestationInvalid("the envelope is not a JSON object")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise AttestationInvalid(f"payloadType is {envelope.get('payloadType')!r}, not {PAYLOAD_TYPE!r}")
    body = _b64(envelope.get("payload"), "payload")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise AttestationInvalid("the envelope carries no signature")
    message_digest = hashlib.sha256(pae(PAYLOAD_TYPE, body)).digest()
    keys = list(keys)
    if not keys:
        raise AttestationInvalid("no public key to verify with")
    keyid = None
    for signature in signatures:
        sig = _b64(signature.get("sig") if isinstance(signature, Mapping) else None, "signature")
        for key in keys:
            try:
                key.verify(sig, message_digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            except InvalidSignature:
                continue
            keyid = str(signature.get("keyid") or "")
            break
        if keyid is not None:
            break
    if keyid is None:
        raise AttestationInvalid(
            f"no signature of the envelope verifies with the {len(keys)} trusted public key(s): "
            "signed by another key, or the payload was changed after signing"
        )
    return Verified(_checked_statement(body, predicate_type), keyid)


def _checked_statement(body: bytes, predicate_type: str = PREDICATE_TYPE) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise AttestationInvalid(f"the signed payload is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("_type") != STATEMENT_TYPE:
        raise AttestationInvalid(f"the signed payload is not an in-toto Statement ({STATEMENT_TYPE})")
    if document.get("predicateType") != predicate_type:
        raise AttestationInvalid(f"predicateType is {document.get('predicateType')!r}, not {predicate_type!r}")
    subjects = document.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise AttestationInvalid("the statement names no subject")
    for subject in subjects:
        digest = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(subject, dict) or not isinstance(subject.get("name"), str) or not isinstance(digest, dict) \
                or not isinstance(digest.get("sha256"), str):
            raise AttestationInvalid(f"a subject is not {{name, digest: {{sha256}}}}: {str(subject)[:200]}")
    if not isinstance(document.get("predicate"), dict):
        raise AttestationInvalid("the statement has no predicate object")
    return document


def subject_problems(expected: Mapping[str, str], attested: Mapping[str, str], upstream: str) -> list[str]:
    """How an artefact (name -> sha256) differs from the one an attestation names."""
    problems = []
    for name in sorted(set(expected) | set(attested)):
        mine, theirs = expected.get(name), attested.get(name)
        if theirs is None:
            problems.append(f"{name} (sha256 {mine}) is not in the artefact {upstream} attested")
        elif mine is None:
            problems.append(f"{name} is in the artefact {upstream} attested but not in this one")
        elif mine != theirs:
            problems.append(f"{name}: sha256 {mine} here, {theirs} in {upstream}")
    return problems
