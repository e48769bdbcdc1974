"""Intake: one manifest upload starts one release (a duplicate event starts nothing).

The key is checked before anything is recorded: the release id, and so the execution's
name, is made of its service and commit segments. An upload refused for its key ends at
once in a final ledger record (status Invalid, with the reason), keyed by a digest of the
key and version: no execution starts, no lock is taken, live is never touched. That record
joins the service's hash chain at once (chain.py) when the key names a service; it signs no
attestation (nothing was evaluated: its ``unattested`` says so).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from modelgate.contract import ReleaseContext
from modelgate.errors import ManifestInvalid, error_code, shown
from modelgate.manifest import ArtifactRef, key_service, parse_release_key, refused_release_id, release_id_for
from modelgate.observability import logger
from modelgate.pipeline.deps import Deps
from modelgate.settings import IntakeSettings


def initial_context(bucket: str, key: str, version_id: str) -> ReleaseContext:
    service, commit = parse_release_key(key)
    return ReleaseContext(
        release_id=release_id_for(service, commit, key, version_id),
        service=service,
        artifact=ArtifactRef(bucket=bucket, key=key, version_id=version_id),
        commit=commit,
        branch="",
    )


def start_release(deps: Deps[IntakeSettings], bucket: str, key: str, version_id: str | None) -> dict:
    """Start the pipeline for one manifest upload; a duplicate event starts nothing."""
    if not version_id:
        raise ManifestInvalid(
            f"s3://{bucket}/{shown(key)} has no object version: the artefact bucket must be versioned"
        )
    try:
        ctx = initial_context(bucket, key, version_id)
    except ManifestInvalid as exc:
        return refuse_upload(deps, bucket, key, version_id, f"ManifestInvalid: {exc}")  # as RecordOutcome says it
    state_machine_arn = deps.settings.state_machine_arn
    # The ledger's conditional create decides which delivery of a (possibly duplicated)
    # event reports "started"; StartExecution is idempotent for a name and input (Standard
    # workflows), so a retry after a crash between the two still starts exactly one.
    first = deps.ledger.receive(
        ctx.release_id,
        f"manifest uploaded: s3://{bucket}/{key} (version {version_id})",
        service=ctx.service,
        commit=ctx.commit,
        artifact=ctx.artifact.model_dump(),
    )
    try:
        arn = deps.sfn.start_execution(
            stateMachineArn=state_machine_arn, name=ctx.release_id, input=ctx.model_dump_json(by_alias=True)
        )["executionArn"]
    except ClientError as exc:
        if error_code(exc) != "ExecutionAlreadyExists":
            raise
        arn = f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{ctx.release_id}"
    deps.ledger.set_fields(ctx.release_id, execution_arn=arn)
    if not first:
        logger.info("duplicate upload event ignored", extra={"release_id": ctx.release_id})
        return {"release_id": ctx.release_id, "started": False, "reason": "already started"}
    return {"release_id": ctx.release_id, "started": True, "execution_arn": arn}


def refuse_upload(deps: Deps[IntakeSettings], bucket: str, key: str, version_id: str, reason: str) -> dict:
    """An upload whose key can't make a release: one final ledger record says why (created
    once: a duplicate event finds it and writes nothing). The record keeps the key as
    uploaded (where the object is); the reason and the history show it escaped and bounded."""
    release_id = refused_release_id(key, version_id)
    first = deps.ledger.receive(
        release_id,
        f"manifest uploaded: s3://{bucket}/{shown(key)} (version {version_id}); refused: {reason}",
        status="Invalid",
        service=key_service(key),
        artifact=ArtifactRef(bucket=bucket, key=key, version_id=version_id).model_dump(),
        reason=reason,
        error="ManifestInvalid",
        unattested="refused at intake (its key can't name a release): nothing was evaluated, nothing is signed",
    )
    # Chained on every delivery, not only the first: one that crashed between its record and
    # its chain append is finished by the next (the append finds an existing record and adds none).
    # A key without a service name belongs to no service's chain (no service can audit it).
    record = deps.ledger.get(release_id) if key_service(key) else None
    if record is not None:
        from modelgate.chain import chain_ended  # a refused upload's path, not a started release's

        chain_ended(deps.ledger.table, record)
    logger.warning("upload refused", extra={"release_id": release_id, "reason": reason, "first": first})
    return {"release_id": release_id, "started": False, "reason": reason}
