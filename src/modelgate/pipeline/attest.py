"""Attest: an ended release enters its service's hash chain and gets a signed attestation.

Runs after every closing step (Promote, Rollback, RecordOutcome: the ASL's Attest and
AttestEnd states). It (1) appends the release's record to the service's chain (chain.py:
a snapshot of the ended release, linked to the record before it), then (2) signs an in-toto
statement naming the artefact's digests and what happened to it, including that record's
hash, with the stack's KMS key (attestation.py), and (3) stores the DSSE envelope beside
the evaluation report. Idempotent: a retried Attest finds its chain record and signs again
(ECDSA signatures differ, the statement does not).

Every digest is computed by streaming the object (never read whole into memory), after a
HeadObject size check against a cap, ``adapters.s3.MAX_RESULTS_BYTES`` (64 MiB), the
manifest's too: Validate refuses a manifest over ``manifest.MAX_MANIFEST_BYTES`` (256 KiB)
without reading it, and that refusal is attested like any other, naming the oversize
object's digest. Only a manifest over the hashing cap is chained without an attestation, and
its chain record says why (``unattested``: its size and the cap, so ``modelgate verify`` and
``audit`` show the reason, and being chained it can't be added afterwards): Attest writes that
reason on the release item (UpdateItem of that one attribute) before the item is chained.
"""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError

from modelgate.adapters.s3 import MAX_RESULTS_BYTES, object_size, put_json
from modelgate.attestation import MANIFEST_SUBJECT, attestation_key, kms_signer, sign_envelope, statement
from modelgate.chain import LedgerChain, snapshot
from modelgate.contract import ReleaseContext
from modelgate.errors import ModelgateError, error_code
from modelgate.ledger import FINAL_STATUSES, now_iso
from modelgate.observability import logger
from modelgate.pipeline.deps import Deps
from modelgate.pipeline.revocation import revoke  # the signer's other task (its module says when)
from modelgate.settings import AttestSettings

__all__ = ["ReleaseNotEnded", "artefact_subjects", "attest", "release_predicate", "revoke"]

CHUNK = 1 << 20
# S3's answer to a request the caller's policies do not allow ("Troubleshoot access denied
# (403 Forbidden) errors in Amazon S3", Amazon S3 User Guide)
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled"})


class ReleaseNotEnded(ModelgateError):
    """Attest ran for a release whose ledger record is not final."""


def attest(deps: Deps[AttestSettings], ctx: ReleaseContext) -> ReleaseContext:
    """Chain the ended release, sign its attestation, store it (see the module docstring)."""
    release = deps.ledger.get(ctx.release_id)
    if release is None or release.get("status") not in FINAL_STATUSES:
        raise ReleaseNotEnded(
            f"release {ctx.release_id} has not ended (status {release.get('status') if release else 'none'}): "
            "only an ended release is chained and attested"
        )
    service = str(release.get("service") or ctx.service)
    chain = LedgerChain(deps.ledger.table)
    try:
        subjects, unattested = _subjects_or_why_not(deps, ctx)
    except ClientError:  # a denied read fails the step, once the release is chained (as every ended one is)
        chain.append(service, "release", ctx.release_id, snapshot(release))
        raise
    if unattested and not release.get("unattested") and chain.recorded(service, "release", ctx.release_id) is None:
        # chained with the reason (the item first: verify compares the item with its chain record)
        deps.ledger.set_fields(ctx.release_id, unattested=unattested)
        release = {**release, "unattested": unattested}
    record = chain.append(service, "release", ctx.release_id, snapshot(release))
    if not subjects:
        logger.warning("the release's manifest has no digest: chained, not attested", release_id=ctx.release_id,
                       unattested=release.get("unattested"))
        return ctx
    predicate = release_predicate(deps, ctx, release, service)
    predicate["ledger"] = {"chain": f"CHAIN#{service}", "seq": record.seq, "record_sha256": record.record_hash}
    envelope = sign_envelope(statement(subjects, predicate), kms_signer(deps.kms, deps.settings.signing_key_id))
    key = attestation_key(service, ctx.release_id)
    put_json(deps.s3, deps.settings.artifact_bucket, key, envelope)
    logger.info("release attested", release_id=ctx.release_id, key=key, chain_seq=record.seq)
    return ctx


def over_hashing_cap(size: int, max_bytes: int) -> str:
    """The ``unattested`` reason of a release whose manifest is too large to hash (bounded: two numbers)."""
    return (f"its manifest is {size:,} bytes, over the {max_bytes:,} bytes Attest hashes: it has no digest to "
            "attest, nothing is signed")


def _object_sha256(s3: Any, bucket: str, key: str, version: str | None, max_bytes: int) -> str | None:
    return _object_digest(s3, bucket, key, version, max_bytes)[0]


def _object_digest(s3: Any, bucket: str, key: str, version: str | None,
                   max_bytes: int) -> tuple[str | None, str | None]:
    """(sha256, None) of one (pinned) object, streamed in ``CHUNK`` pieces (never read whole);
    (None, None) when it can't be read, with a warning naming the object and why; (None, the
    reason, ``over_hashing_cap``) when HeadObject says it is larger than ``max_bytes``.

    Its size is checked first (HeadObject, "HeadObject", Amazon S3 API Reference,
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html), and the GetObject is
    pinned to the version HeadObject saw, so what is hashed is what was measured; an
    unversioned object that grows in between stops the hash at ``max_bytes`` all the same."""
    try:
        found = object_size(s3, bucket, key, version if version and version != "null" else None)
        if found is None:
            logger.warning("object not readable for its digest", key=key, error="NoSuchKey")
            return None, None
        size, pinned = found
        if size > max_bytes:
            logger.warning(f"s3://{bucket}/{key} is {size:,} bytes; at most {max_bytes:,} are hashed: no digest",
                           key=key, size=size, max_bytes=max_bytes)
            return None, over_hashing_cap(size, max_bytes)
        body = s3.get_object(Bucket=bucket, Key=key, **({"VersionId": pinned} if pinned != "null" else {}))
    except ClientError as exc:
        if error_code(exc) in ACCESS_DENIED_CODES:
            # a grant missing from the role is a fault to fix, not an object to leave out: the
            # Attest step fails naming the action (the pipeline's Catch still ends the release).
            # S3 also answers 403 for a missing key to a role without s3:ListBucket (GetObject,
            # Amazon S3 API Reference): an object deleted since the release ran fails it too.
            raise
        logger.warning("object not readable for its digest", key=key, error=error_code(exc))
        return None, None
    digest, read = hashlib.sha256(), 0
    for chunk in body["Body"].iter_chunks(CHUNK):
        read += len(chunk)
        if read > max_bytes:  # replaced by a bigger one after HeadObject (unversioned bucket)
            logger.warning(f"s3://{bucket}/{key} grew past {max_bytes:,} bytes while it was hashed: no digest",
                           key=key, max_bytes=max_bytes)
            return None, None
        digest.update(chunk)
    return digest.hexdigest(), None


def artefact_subjects(deps: Deps[Any], ctx: ReleaseContext) -> dict[str, str]:
    """name -> sha256 of the artefact: the manifest (its pinned version's bytes) and every
    prompt file it names (the digest Validate checked each file against); {} when the
    manifest can't be read. An artefact refused before its prompts were checked names the
    manifest alone."""
    return _subjects_or_why_not(deps, ctx)[0]


def _subjects_or_why_not(deps: Deps[Any], ctx: ReleaseContext) -> tuple[dict[str, str], str | None]:
    """(``artefact_subjects``, None), or ({}, the ``unattested`` reason) when the manifest is
    over the hashing cap, or ({}, None) when it can't be read (verify then reports the
    attestation missing: nothing says that was by design)."""
    art = ctx.artifact
    manifest, why_not = _object_digest(deps.s3, art.bucket, art.key, art.version_id, MAX_RESULTS_BYTES)
    if manifest is None:
        return {}, why_not
    subjects = {MANIFEST_SUBJECT: manifest}
    if ctx.manifest is not None and ctx.prompt_versions:
        subjects.update({p.file: p.sha256 for p in ctx.manifest.prompts})
    return subjects, None


def release_predicate(deps: Deps[AttestSettings], ctx: ReleaseContext, release: dict[str, Any], service: str) -> dict:
    """What the attestation says happened (attestation.py's module docstring lists the fields)."""
    bucket = deps.settings.artifact_bucket
    reports = []
    if ctx.evaluation is not None:
        for key, version in ((ctx.evaluation.report_key, ctx.evaluation.report_version),
                             (ctx.evaluation.report_html_key, None)):
            if key:
                digest = _object_sha256(deps.s3, bucket, key, version, MAX_RESULTS_BYTES)
                if digest:
                    reports.append({"name": key.rsplit("/", 1)[-1], "uri": f"s3://{bucket}/{key}",
                                    **({"version_id": version} if version else {}), "digest": {"sha256": digest}})
    gate = release.get("gate")
    verdict = release.get("verdict")
    approval = release.get("approval")
    return {
        "service": service,
        "release_id": ctx.release_id,
        "stage": deps.settings.stage,
        "stack": deps.settings.stack_name,
        "artifact": {"bucket": ctx.artifact.bucket, "key": ctx.artifact.key, "version_id": ctx.artifact.version_id},
        "commit": release.get("commit") or ctx.commit,
        "branch": release.get("branch") or ctx.branch,
        "author": release.get("author"),
        "model_id": release.get("model_id"),
        "outcome": {"status": release["status"], "error": release.get("error"), "reason": release.get("reason")},
        "evaluation_report": reports,
        "gate": None if not gate else {
            "passed": all(c.get("verdict") in ("pass", "not_applicable") for c in gate.get("criteria", [])),
            "criteria": [{k: c.get(k) for k in ("name", "verdict", "observed", "threshold")}
                         for c in gate.get("criteria", [])],
        },
        "approvals": [approval] if approval else [],
        "canary": None if not verdict else {
            "verdict": verdict.get("verdict"), "action": verdict.get("action"), "message": verdict.get("message"),
            "invocations": release.get("canary_invocations"),
        },
        "candidate_version": release.get("candidate_version"),
        "live_version": release.get("live_version"),
        "finished_at": release.get("updated_at") or now_iso(),
    }
