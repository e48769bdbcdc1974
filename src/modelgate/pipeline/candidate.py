"""Candidate: validate the artefact, take the service's lock (superseding an older release),
publish the candidate version that pins it."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from modelgate.adapters import lambda_alias
from modelgate.adapters.s3 import object_metadata, object_size, put_json, read_sized
from modelgate.contract import ReleaseContext
from modelgate.errors import (
    CandidatePublishFailed,
    DecisionConflict,
    ManifestInvalid,
    ReleaseClosed,
    Superseded,
    error_code,
)
from modelgate.lease import Lease
from modelgate.ledger import FINAL_STATUSES
from modelgate.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_PROMPT_BYTES,
    MAX_PROMPTS_TOTAL_BYTES,
    ArtifactRef,
    Manifest,
    PromptFile,
    manifest_too_large,
    parse_manifest,
    pin_environment,
    prompt_pin_document,
    prompt_pin_key,
    sha256_hex,
)
from modelgate.pipeline.canary import cleanup_canary, return_canary_traffic
from modelgate.pipeline.deps import Deps, target
from modelgate.pipeline.fencing import Fence
from modelgate.policy import ReleasePolicy, managed_function_prefix
from modelgate.settings import ValidateSettings


def validate(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """The manifest (:func:`modelgate.manifest.parse_manifest`: size, duplicates, strict
    types), its service and commit against its key, its model against the policy's allow
    list, and every prompt file: present, within its size, the digest the manifest names, and
    a template the inference function renders. Every reason is bounded (ManifestInvalid)."""
    # Validate's own checks, imported here so the lock and publish steps, which share this
    # module and never run them, don't load them at their cold start; Validate's handler
    # (functions/validate/app.py) imports them at init, since every one of its calls runs them.
    from modelgate.pipeline.model_registry import check_group
    from modelgate.pipeline.upstream import check_upstream
    from modelgate.registry import get_service
    from modelgate.upload_metadata import check_against, check_required, read_upload_metadata

    art = ctx.artifact
    manifest_bytes = _read_manifest(deps, art)
    manifest = parse_manifest(manifest_bytes, art.key)
    if manifest.service != ctx.service:
        raise ManifestInvalid(
            f"{art.key} names service {manifest.service!r} but was uploaded under {ctx.service!r}"
        )
    # both are checked shas (intake checked the key's): the same commit, in full or abbreviated
    if not manifest.source.commit.startswith(ctx.commit) and not ctx.commit.startswith(manifest.source.commit):
        raise ManifestInvalid(
            f"{art.key} names commit {manifest.source.commit} but was uploaded under {ctx.commit}"
        )
    service = get_service(
        deps.ssm, deps.settings.services_prefix, ctx.service,
        function_prefix=managed_function_prefix(deps.settings.stack_name),
    )
    metadata = object_metadata(
        deps.s3, art.bucket, art.key, art.version_id, error=ManifestInvalid, what="the release manifest"
    )
    check_group(service.policy, deps.settings.stack_name)  # a misconfigured registry fails before evaluation
    author = upload_author(metadata, art, four_eyes=service.policy.four_eyes)
    provenance = read_upload_metadata(metadata)
    check_against(provenance, manifest, art.key)
    ci_checked = ""
    if service.policy.require_ci_evaluation:
        ci_checked = "; " + check_required(provenance, manifest, art.key)
    if not service.policy.model_allowed(manifest.model.model_id):
        raise ManifestInvalid(
            f"{art.key}: model {manifest.model.model_id!r} is not in {ctx.service}'s model allow list "
            f"(allowed_models: {service.policy.allowed_models_text()})"
        )
    if service.policy.monitoring.refuse_legacy_models and manifest.model.provider == "bedrock":
        from modelgate.monitor.models import refuse_legacy  # only when the policy asks: cold start

        refuse_legacy(deps.client("bedrock"), manifest, service.policy, art.key)
    prompt_versions = _checked_prompts(deps, art, manifest)
    promoted_upstream = ""
    for stage in required_stages(deps.settings, service.policy):  # promotion across stages: pipeline/upstream.py
        promoted_upstream += "; " + check_upstream(deps, art, ctx.service, manifest, sha256_hex(manifest_bytes), stage)

    updated = ctx.model_copy(
        update={
            "manifest": manifest,
            "policy": service.policy,
            "function_name": service.function_name,
            "alias": service.alias,
            "branch": manifest.source.branch,
            "author": author,
            "prompt_versions": prompt_versions,
            "dataset_key": service.dataset_key,
        }
    )
    deps.ledger.record(
        ctx.release_id,
        "Validated",
        f"model {manifest.model.model_id}, {len(manifest.prompts)} prompt file(s) verified{ci_checked}"
        f"{promoted_upstream}",
        service=ctx.service,
        commit=manifest.source.commit,
        branch=manifest.source.branch,
        author=author,
        model_id=manifest.model.model_id,
        artifact=art.model_dump(),
        function_name=service.function_name,
        alias=service.alias,
        ci_evaluation=provenance.evaluation,
    )
    return updated


def load_validate_checks() -> None:
    """Import what validate() imports inside it (the prompts' template check, the registration,
    the upload's metadata and author, the registry group, the upstream stage): Validate's
    handler calls this at init, since every one of its calls runs them."""
    from modelgate import inference, registry, upload_metadata  # noqa: F401
    from modelgate.approval import identity  # noqa: F401
    from modelgate.pipeline import model_registry, upstream  # noqa: F401


def required_stages(settings: Any, policy: ReleasePolicy) -> list[str]:
    """The upstream stages an artefact must have been promoted in: the stack's (Validate's
    ``REQUIRES_STAGE``, the template's RequiresStage parameter: only ``ValidateSettings``
    carry it) and the service policy's ``requires_stage``, each once. A policy can add a
    requirement, never lift the stack's."""
    stack = settings.requires_stage if isinstance(settings, ValidateSettings) else ""
    return list(dict.fromkeys(s for s in (stack, policy.requires_stage) if s))


def upload_author(metadata: dict[str, str], art: ArtifactRef, *, four_eyes: bool) -> str | None:
    """Who uploaded the manifest: the author ``modelgate submit`` wrote in the object's metadata
    (the CI actor, or the uploader's own ARN; ``modelgate.approval.identity`` says why this and
    not the manifest's ``source.author``). Required when the policy asks for four eyes."""
    from modelgate.approval.identity import AUTHOR_METADATA, AuthorInvalid, verified_author  # Validate's (above)

    try:
        author, _ = verified_author(metadata)
    except AuthorInvalid as exc:
        raise ManifestInvalid(f"{art.key}: {exc}") from exc
    if four_eyes and author is None:
        raise ManifestInvalid(
            f"{art.key}: the service's policy asks for four eyes, so the upload must name its author "
            f"(x-amz-meta-{AUTHOR_METADATA}, which `modelgate submit` writes); this one names none"
        )
    return author


def _read_manifest(deps: Deps, art: ArtifactRef) -> bytes:
    """The manifest's pinned version, its size checked (HeadObject) before a byte is read."""
    where = f"the release manifest (s3://{art.bucket}/{art.key} version {art.version_id})"
    try:
        found = object_size(deps.s3, art.bucket, art.key, art.version_id)
    except ClientError as exc:
        raise ManifestInvalid(f"{where} can't be read: {error_code(exc)}") from exc
    if found is None:
        raise ManifestInvalid(f"{where} does not exist")
    size, _ = found
    if size > MAX_MANIFEST_BYTES:
        raise ManifestInvalid(manifest_too_large(size, art.key))
    return read_sized(deps.s3, art.bucket, art.key, art.version_id, size)


def _checked_prompts(deps: Deps, art: ArtifactRef, manifest: Manifest) -> dict[str, str]:
    """Each prompt file's version, once all are present, within their sizes (HeadObject
    first: nothing too big is read), and hold what the manifest says, as a template the
    inference function renders; else ManifestInvalid naming every problem (at most 10)."""
    # Validate's alone of the candidate steps (its handler loads it at init): the template
    # check brings the inference module and its providers, which the lock and publish steps never use.
    from modelgate.inference import checked_template

    problems: list[str] = []
    sized: list[tuple[PromptFile, str, int, str]] = []
    for prompt in manifest.prompts:
        key = art.prefix + prompt.file
        try:
            found = object_size(deps.s3, art.bucket, key)
        except ClientError as exc:
            # without s3:ListBucket, S3 answers a missing key with 403 (API_HeadObject.html, "Permissions")
            problems.append(f"prompt {prompt.name!r}: {key} can't be read ({error_code(exc)}): missing or not readable")
            continue
        if found is None:
            problems.append(f"prompt {prompt.name!r}: {key} is missing")
        elif found[0] == 0:
            problems.append(f"prompt {prompt.name!r}: {key} is empty (0 bytes)")
        elif found[0] > MAX_PROMPT_BYTES:
            problems.append(f"prompt {prompt.name!r}: {key} is {found[0]:,} bytes; at most {MAX_PROMPT_BYTES:,} are accepted")
        else:
            sized.append((prompt, key, *found))
    total = sum(size for _, _, size, _ in sized)
    if not problems and total > MAX_PROMPTS_TOTAL_BYTES:
        problems.append(f"the prompt files are {total:,} bytes in all; at most {MAX_PROMPTS_TOTAL_BYTES:,} are accepted")
    prompt_versions: dict[str, str] = {}
    for prompt, key, size, version in sized if not problems else []:
        try:
            checked_template(prompt, read_sized(deps.s3, art.bucket, key, version, size), key)
        except ManifestInvalid as exc:
            problems.append(str(exc))
            continue
        prompt_versions[prompt.file] = version
    if problems:
        shown = problems[:10] + ([f"and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise ManifestInvalid(f"{art.key}: " + "; ".join(shown))
    return prompt_versions


def acquire_lock(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """One release per service. A newer artefact supersedes the release in flight: it takes
    that release's lease over (one conditional write, so the older release's tasks can change
    nothing from then on: fencing.py), then cancels it cleanly (canary traffic returned,
    alarms deleted, ledger says superseded). An older artefact arriving late is itself
    superseded by the one in flight. A cleanup the lease still owes (a canceller that died
    midway) is finished by whoever holds the lease next."""
    assert ctx.policy is not None
    lease_seconds = ctx.policy.lock_lease_seconds
    holder = deps.ledger.lock_holder(ctx.service)
    generation: int | None = None
    if holder and holder != ctx.release_id:
        mine, theirs = deps.ledger.release(ctx.release_id), deps.ledger.release(holder)
        if theirs and theirs.status not in FINAL_STATUSES and theirs.created_at > (mine.created_at if mine else ""):
            raise Superseded(f"release {holder} of {ctx.service} is newer and already in flight")
        if theirs:  # older and in flight, or ended without releasing its lock: take it over
            generation = deps.ledger.take_over_lock(ctx.service, holder, ctx.release_id, lease_seconds)
    if generation is None:
        generation = deps.ledger.acquire_lock(ctx.service, ctx.release_id, lease_seconds)
    fence = Fence(deps, Lease(ctx.service, ctx.release_id, generation))
    finish_owed_cancels(deps, fence, "Superseded", f"superseded by release {ctx.release_id} (commit {ctx.commit})")
    try:
        deps.ledger.record(ctx.release_id, "Locked", f"holds the release lock of {ctx.service} (lease {generation})")
    except ReleaseClosed:
        deps.ledger.release_lock(ctx.service, ctx.release_id)  # this release ended meanwhile: not its lease
        raise
    return ctx.model_copy(update={"lease_generation": generation})


def finish_owed_cancels(deps: Deps, fence: Fence, status: str, reason: str, *, actor: str = "modelgate") -> None:
    """Cancel every release the lease owes a cancel (taken over from it, or from an owner
    that took it over and lost the lease or died before cancelling it), under ``fence``."""
    service, owner = fence.lease.service, fence.lease.owner
    for owed in deps.ledger.owed_cleanups(service):
        if owed != owner and deps.ledger.release(owed) is not None:
            cancel_release(deps, owed, status, reason, fence=fence, actor=actor)
        deps.ledger.cleanup_done(service, owner, owed)


def cancel_release(
    deps: Deps, release_id: str, status: str, reason: str, *, fence: Fence, actor: str = "modelgate"
) -> dict:
    """Stop a release in flight and undo what it moved, under ``fence``: the lease its
    canceller took over from it (so none of its tasks still running can move anything any
    more). Its execution is stopped, its candidate leaves the alias (unless it was promoted:
    then it is live by right), its alarms and tokens are removed and the ledger records why
    (a status already final stays). Idempotent."""
    # A supersede's alone (a lock taken over, a manual rollback), not every call's: loaded here.
    from modelgate.chain import chain_ended
    from modelgate.pipeline.model_registry import mirror_package

    record = deps.ledger.release(release_id)
    if record is None:
        raise DecisionConflict(f"no release {release_id} in the ledger")
    if record.execution_arn and record.status not in FINAL_STATUSES:
        try:
            deps.sfn.stop_execution(executionArn=record.execution_arn, error=status, cause=reason[:32000])
        except ClientError as exc:
            if error_code(exc) != "ExecutionDoesNotExist":
                raise
    if record.service is None or record.artifact is None:  # intake records both, first
        raise DecisionConflict(f"release {release_id} has no service or artefact in the ledger")
    ctx = ReleaseContext(
        release_id=release_id,
        service=record.service,
        artifact=record.artifact,
        commit=record.commit or "",
        branch=record.branch or "",
        function_name=record.function_name,
        alias=record.alias,
        live_version=record.live_version,
        candidate_version=record.candidate_version,
        canary_alarms=record.canary_alarms or [],
    )
    # A promotion is recorded only under the lease (Ledger.record(lease=)), which is ours now:
    # a release that is not Promoted at this point never will be.
    restored = "" if record.status == "Promoted" else return_canary_traffic(deps, ctx, fence)
    cleanup_canary(deps, ctx)
    for kind in ("approval", "bake"):
        deps.ledger.take_token(release_id, kind)
    if record.status in FINAL_STATUSES:
        done = record.model_dump(mode="json", exclude_unset=True)
        if record.unattested:  # ended by a cancel that may have died before its chain append
            chain_ended(deps.ledger.table, done)
        return done
    mirror_package(deps, release_id, record.model_package_arn, "Rejected", f"{status}: {reason}")
    try:
        ended = deps.ledger.record(
            release_id, status, reason + (f"; {restored}" if restored else ""), actor=actor, reason=reason,
            unattested=f"{status} in flight (its execution was stopped before a closing step): nothing is signed",
        )
    except ReleaseClosed:  # its own last task ended it meanwhile (Rollback, RecordOutcome): that stays
        current = deps.ledger.release(release_id)
        return current.model_dump(mode="json", exclude_unset=True) if current else {}
    # Its execution is stopped, so no Attest step of its own will chain it: this does (chain.py).
    chain_ended(deps.ledger.table, ended)
    return ended


def write_prompt_pin(
    s3: Any, artifact: ArtifactRef, service: str, release_id: str, prompt_versions: dict[str, str]
) -> tuple[str, str]:
    """Write the release's prompt pin; its key and object version (what the candidate pins).

    The prompt files' versions go in one pinned document, so the environment's size doesn't
    grow with the number of prompts (Lambda allows 4 KB of environment variables in all).
    """
    key = prompt_pin_key(service, release_id)
    version = put_json(s3, artifact.bucket, key, prompt_pin_document(artifact, prompt_versions))
    if not version or version == "null":
        raise CandidatePublishFailed(f"s3://{artifact.bucket}/{key} got no object version: the bucket must be versioned")
    return key, version


def publish_candidate(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Pin the release on the service function and publish that as a version; the alias does not move."""
    fn, alias = target(ctx)
    live_version, weights = lambda_alias.alias_state(deps.lambda_, fn, alias)
    if weights:
        # Only a release holding the lock moves weights, so leftover weights mean an
        # earlier release died mid-canary: don't build on that state.
        raise CandidatePublishFailed(
            f"{fn}:{alias} still routes {weights} besides version {live_version}; "
            "finish or roll back the release that moved it first"
        )
    pin_key, pin_version = write_prompt_pin(deps.s3, ctx.artifact, ctx.service, ctx.release_id, ctx.prompt_versions)
    version = lambda_alias.publish_candidate(
        deps.lambda_, fn, release_id=ctx.release_id, model_config=pin_environment(ctx.artifact, pin_key, pin_version)
    )
    deps.ledger.record(
        ctx.release_id,
        "CandidatePublished",
        f"{fn} version {version} pins {ctx.artifact.key} @ {ctx.artifact.version_id}; live is {live_version}",
        candidate_version=version,
        live_version=live_version,
    )
    return ctx.model_copy(update={"candidate_version": version, "live_version": live_version})
