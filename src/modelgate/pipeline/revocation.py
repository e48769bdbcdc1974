"""Revocation: a stage takes back its word on a promoted release it later rolled back.

A downstream stage (production) accepts an artefact on the upstream stage's signed
attestation that it was promoted (upstream.py). When the upstream stage later rolls that
release back (``modelgate rollback``, or the monitoring policy's rollback action: both
``outcome.rollback_service``, which chains a ``manual-rollback`` record), the attestation
still verifies: a signature can't be unsigned. So the stage signs a second statement, a
**revocation**, and production refuses an artefact one names.

The revocation is an in-toto Statement v1 (the same envelope and key as the attestation:
attestation.py) whose ``predicateType`` is ``REVOCATION_PREDICATE_TYPE`` and whose subjects
are the revoked attestation's (the manifest and every prompt, by sha256)::

  predicate: {service, release_id, stage, stack, revoked_at, reason, actor,
              attestation {uri, digest {sha256}}   the envelope it takes back, by its bytes
              ledger {chain, seq, record_sha256}}  the rollback's chain record

It is stored beside the attestation (``reports/<svc>/<release>/revocation.intoto.json``).

Who signs: only the Attest function (the stack's one signer, as for attestations), on an
event ``{"revoke": {"service", "release_id"}}`` that names nothing it signs: it reads the
ledger and the chain, and signs only for a release whose status is RolledBack **and** whose
chain holds its rollback record, so an invoker can't revoke (or un-revoke) anything the
ledger doesn't say. The rollback's caller (the CLI, the monitor function) invokes it
synchronously after the rollback (``request_revocation``); a failure there leaves the
rollback done and says so (the revocation can be requested again: it is idempotent).

What production can read, and so the limits: production is another account. It reads
nothing of staging's; it has what CI passes beside the artefact and its own trust
parameter. CI fetches the revocation with the attestation (``modelgate attestation
RELEASE --out a.json`` also writes ``a.revocation.json`` when one exists) and ``modelgate
submit --attestation a.json`` uploads both; production's Validate refuses an artefact a
revocation signed by a trusted key names. A CI that omits the revocation (or submits an old
attestation by hand) is not caught by production: absence of a revocation proves nothing.
The workflow's production job also runs ``modelgate verify`` against staging, which fails on
a revoked release, and picks only a release staging's ledger still says is Promoted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from botocore.exceptions import ClientError

from modelgate.adapters.s3 import put_json
from modelgate.attestation import (
    REVOCATION_PREDICATE_TYPE,
    AttestationInvalid,
    attestation_key,
    kms_signer,
    sign_envelope,
    statement,
)
from modelgate.chain import LedgerChain
from modelgate.errors import ModelgateError, error_code
from modelgate.ledger import now_iso
from modelgate.observability import logger
from modelgate.pipeline.deps import Deps
from modelgate.settings import AttestSettings

ROLLBACK_KIND = "manual-rollback"  # the chain record rollback_service appends (modelgate rollback, monitoring)


class NotRevocable(ModelgateError):
    """The ledger doesn't say the release was rolled back after it ended: nothing to revoke."""


class RevocationFailed(ModelgateError):
    """The Attest function could not sign the revocation."""


def revocation_key(service: str, release_id: str) -> str:
    """Where a release's revocation lies: beside its attestation."""
    return attestation_key(service, release_id).replace("attestation.intoto.json", "revocation.intoto.json")


def revoke(deps: Deps[AttestSettings], service: str, release_id: str) -> dict[str, Any]:
    """Sign and store the revocation of a rolled-back release's attestation (module docstring).
    Idempotent: a second call signs the same statement again. NotRevocable when the ledger or
    the chain does not say the release was rolled back; ``{"revoked": False}`` with why, when
    it has no attestation to take back (no stage could have accepted it)."""
    release = deps.ledger.get(release_id)
    if release is None or release.get("service") != service:
        raise NotRevocable(f"no release {release_id} of service {service} in the ledger")
    if release.get("status") != "RolledBack":
        raise NotRevocable(f"release {release_id} is {release.get('status')}, not RolledBack: nothing to revoke")
    chain = LedgerChain(deps.ledger.table)
    record = chain.recorded(service, ROLLBACK_KIND, release_id)
    if record is None:
        raise NotRevocable(f"release {release_id} has no {ROLLBACK_KIND} record in the chain of {service}")
    ended = chain.recorded(service, "release", release_id)
    if ended is None or ended.body.get("status") != "Promoted":
        # e.g. a canary withdrawn after a failed Rollback: its attestation says it was not promoted
        return {"revoked": False, "release_id": release_id,
                "why": f"it ended {ended.body.get('status') if ended else 'unchained'}, never promoted: no stage takes it"}
    bucket = deps.settings.artifact_bucket
    key = attestation_key(service, release_id)
    try:
        envelope = deps.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) not in ("NoSuchKey", "404"):
            raise
        logger.info("a rolled-back release without an attestation: nothing to revoke", release_id=release_id)
        return {"revoked": False, "release_id": release_id, "why": f"no attestation at s3://{bucket}/{key}"}
    subjects = attested_subjects(envelope)
    body = record.body
    predicate = {
        "service": service,
        "release_id": release_id,
        "stage": deps.settings.stage,
        "stack": deps.settings.stack_name,
        "revoked_at": record.at,
        "reason": body.get("reason"),
        "actor": _rollback_actor(release),
        "attestation": {"uri": f"s3://{bucket}/{key}", "digest": {"sha256": hashlib.sha256(envelope).hexdigest()}},
        "ledger": {"chain": f"CHAIN#{service}", "seq": record.seq, "record_sha256": record.record_hash},
    }
    signed = sign_envelope(
        statement(subjects, predicate, predicate_type=REVOCATION_PREDICATE_TYPE),
        kms_signer(deps.kms, deps.settings.signing_key_id),
    )
    where = revocation_key(service, release_id)
    put_json(deps.s3, bucket, where, signed)
    logger.info("release revoked", release_id=release_id, key=where, chain_seq=record.seq)
    return {"revoked": True, "release_id": release_id, "key": where, "signed_at": now_iso()}


def attested_subjects(envelope: bytes) -> dict[str, str]:
    """name -> sha256 of the stack's own stored attestation (read, not verified: the stack wrote
    it, and the revocation only repeats its subjects); AttestationInvalid if it has none."""
    import base64

    try:
        document = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
        subjects = {s["name"]: s["digest"]["sha256"] for s in document["subject"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise AttestationInvalid(f"the stored attestation can't be read for its subjects: {exc}") from None
    if not subjects:
        raise AttestationInvalid("the stored attestation names no subject")
    return subjects


def _rollback_actor(release: dict[str, Any]) -> str | None:
    rolled = [h for h in release.get("history") or [] if h.get("status") == "RolledBack"]
    return str(rolled[-1].get("actor")) if rolled else None


def request_revocation(lambda_client: Any, function_name: str, service: str, release_id: str) -> dict[str, Any]:
    """Ask the Attest function to revoke a rolled-back release (synchronously: the caller says
    whether it was). RevocationFailed naming the function's error."""
    response = lambda_client.invoke(
        FunctionName=function_name, InvocationType="RequestResponse",
        Payload=json.dumps({"revoke": {"service": service, "release_id": release_id}}).encode(),
    )
    payload = response["Payload"].read()
    if response.get("FunctionError"):
        try:
            error = json.loads(payload)
            detail = f"{error.get('errorType')}: {error.get('errorMessage')}"
        except (ValueError, AttributeError):
            detail = payload[:500].decode(errors="replace")
        raise RevocationFailed(f"{function_name} could not revoke release {release_id}: {detail}")
    return json.loads(payload)
