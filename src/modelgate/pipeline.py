"""The release pipeline's steps: one function per state machine task.

Each step takes the release context (what the state machine carries) and its
dependencies, does one thing, records it in the ledger, and returns the context updated.
Handlers in functions/<name>/app.py only parse, build `Deps` and call one of these.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable

from botocore.exceptions import ClientError
from pydantic import ValidationError

from modelgate import approval_links, aws, deploy, evaluation, judge, scorers
from modelgate.errors import (
    CandidatePublishFailed,
    CanaryAlarm,
    CanaryRegression,
    ConfigurationError,
    DatasetInvalid,
    DecisionConflict,
    EvaluationFailed,
    Superseded,
    ManifestInvalid,
    NotEnoughEvidence,
)
from modelgate.ledger import FINAL_STATUSES, Ledger
from modelgate.models import (
    MANIFEST_FILENAME,
    RELEASES_PREFIX,
    ArtifactRef,
    Manifest,
    ReleaseContext,
    release_id_for,
    sha256_hex,
    validation_problems,
)
from modelgate.observability import logger
from modelgate.registry import get_service
from modelgate.report import render_html
from modelgate.settings import Settings, get_settings


@dataclass(frozen=True)
class Deps:
    """What a step needs: settings, the ledger, and clients made on first use from one
    factory (``aws.client`` in Lambda: cached, so a handler's cold start builds only the
    clients its step uses)."""

    settings: Settings
    client: Callable[[str], Any]
    ledger: Ledger

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def ssm(self) -> Any:
        return self.client("ssm")

    @property
    def lambda_(self) -> Any:
        return self.client("lambda")

    @property
    def cloudwatch(self) -> Any:
        return self.client("cloudwatch")

    @property
    def sfn(self) -> Any:
        return self.client("stepfunctions")

    @property
    def sns(self) -> Any:
        return self.client("sns")

    @property
    def secretsmanager(self) -> Any:
        return self.client("secretsmanager")


def default_deps() -> Deps:
    settings = get_settings()
    return Deps(settings, aws.client, Ledger(aws.table(settings.ledger_table)))


# ---------------------------------------------------------------------- intake
def parse_release_key(key: str) -> tuple[str, str]:
    """releases/<service>/<commit>/model-config.json → (service, commit)."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] + "/" != RELEASES_PREFIX or parts[3] != MANIFEST_FILENAME:
        raise ManifestInvalid(
            f"{key!r} is not a release manifest key: expected "
            f"{RELEASES_PREFIX}<service>/<commit>/{MANIFEST_FILENAME}"
        )
    return parts[1], parts[2]


def initial_context(bucket: str, key: str, version_id: str) -> ReleaseContext:
    service, commit = parse_release_key(key)
    return ReleaseContext(
        release_id=release_id_for(service, commit, key, version_id),
        service=service,
        artifact=ArtifactRef(bucket=bucket, key=key, version_id=version_id),
        commit=commit,
        branch="",
    )


def start_release(deps: Deps, bucket: str, key: str, version_id: str | None) -> dict:
    """Start the pipeline for one manifest upload; a duplicate event starts nothing."""
    if not version_id:
        raise ManifestInvalid(
            f"s3://{bucket}/{key} has no object version: the artefact bucket must be versioned"
        )
    ctx = initial_context(bucket, key, version_id)
    if not deps.settings.state_machine_arn:
        raise ConfigurationError("function environment lacks STATE_MACHINE_ARN")
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
            stateMachineArn=deps.settings.state_machine_arn,
            name=ctx.release_id,
            input=ctx.model_dump_json(),
        )["executionArn"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise
        arn = f"{deps.settings.state_machine_arn.replace(':stateMachine:', ':execution:')}:{ctx.release_id}"
    deps.ledger.set_fields(ctx.release_id, execution_arn=arn)
    if not first:
        logger.info("duplicate upload event ignored", extra={"release_id": ctx.release_id})
        return {"release_id": ctx.release_id, "started": False, "reason": "already started"}
    return {"release_id": ctx.release_id, "started": True, "execution_arn": arn}


# ---------------------------------------------------------------------- validate
def validate(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Manifest schema, pinned model, prompt files present with the digests it names."""
    art = ctx.artifact
    body = _get_object(deps.s3, art.bucket, art.key, art.version_id)
    try:
        manifest = Manifest.model_validate_json(body)
    except ValidationError as exc:
        raise ManifestInvalid(f"{art.key} is invalid: {validation_problems(exc, 'manifest')}") from exc
    if manifest.service != ctx.service:
        raise ManifestInvalid(
            f"{art.key} names service {manifest.service!r} but was uploaded under {ctx.service!r}"
        )
    if not manifest.source.commit.startswith(ctx.commit) and not ctx.commit.startswith(
        manifest.source.commit
    ):
        raise ManifestInvalid(
            f"{art.key} names commit {manifest.source.commit} but was uploaded under {ctx.commit}"
        )
    service = get_service(deps.ssm, deps.settings.services_prefix, ctx.service)
    if service.policy.four_eyes and not (manifest.source.author or "").strip():
        raise ManifestInvalid(
            f"{art.key}: {ctx.service}'s policy asks for four eyes, so source.author (the commit's author) is required"
        )

    prompt_versions: dict[str, str] = {}
    problems = []
    for prompt in manifest.prompts:
        key = art.prefix + prompt.file
        try:
            obj = deps.s3.get_object(Bucket=art.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                problems.append(f"prompt {prompt.name!r}: {key} is missing")
                continue
            raise
        digest = sha256_hex(obj["Body"].read())
        if digest != prompt.sha256:
            problems.append(
                f"prompt {prompt.name!r}: sha256 of {key} is {digest}, manifest says {prompt.sha256}"
            )
            continue
        prompt_versions[prompt.file] = obj.get("VersionId") or "null"
    if problems:
        raise ManifestInvalid(f"{art.key}: " + "; ".join(problems))

    updated = ctx.model_copy(
        update={
            "manifest": manifest,
            "policy": service.policy,
            "function_name": service.function_name,
            "alias": service.alias,
            "branch": manifest.source.branch,
            "prompt_versions": prompt_versions,
            "dataset_key": service.dataset_key,
        }
    )
    deps.ledger.record(
        ctx.release_id,
        "Validated",
        f"model {manifest.model.model_id}, {len(manifest.prompts)} prompt file(s) verified",
        service=ctx.service,
        commit=manifest.source.commit,
        branch=manifest.source.branch,
        author=manifest.source.author,
        model_id=manifest.model.model_id,
        artifact=art.model_dump(),
        function_name=service.function_name,
        alias=service.alias,
    )
    return updated


def _get_object(s3: Any, bucket: str, key: str, version_id: str) -> bytes:
    try:
        return s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read()
    except ClientError as exc:
        raise ManifestInvalid(
            f"s3://{bucket}/{key} version {version_id} can't be read: {exc.response['Error']['Code']}"
        ) from exc


# ---------------------------------------------------------------------- lock
def acquire_lock(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """One release per service. A newer artefact supersedes the release in flight: that one
    is cancelled cleanly (canary traffic returned, ledger says superseded) and this proceeds.
    An older artefact arriving late is itself superseded by the one in flight."""
    assert ctx.policy is not None
    holder = deps.ledger.lock_holder(ctx.service)
    if holder and holder != ctx.release_id:
        mine, theirs = deps.ledger.get(ctx.release_id) or {}, deps.ledger.get(holder) or {}
        if theirs and theirs.get("status") not in FINAL_STATUSES:
            if (theirs.get("created_at") or "") > (mine.get("created_at") or ""):
                raise Superseded(f"release {holder} of {ctx.service} is newer and already in flight")
            cancel_release(
                deps, holder, "Superseded", f"superseded by release {ctx.release_id} (commit {ctx.commit})"
            )
    deps.ledger.acquire_lock(ctx.service, ctx.release_id, ctx.policy.lock_lease_seconds)
    deps.ledger.record(ctx.release_id, "Locked", f"holds the release lock of {ctx.service}")
    return ctx


def cancel_release(deps: Deps, release_id: str, status: str, reason: str, *, actor: str = "modelgate") -> dict:
    """Stop a release in flight and undo what it moved: its execution is stopped, canary
    traffic returns to the version that was live, its alarms and tokens are removed, the
    ledger records why and the lock is released. Idempotent."""
    record = deps.ledger.get(release_id)
    if record is None:
        raise DecisionConflict(f"no release {release_id} in the ledger")
    if record.get("status") in FINAL_STATUSES:
        return record
    if record.get("execution_arn"):
        try:
            deps.sfn.stop_execution(executionArn=record["execution_arn"], error=status, cause=reason[:32000])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                raise
    ctx = ReleaseContext.model_validate(
        {
            "release_id": release_id,
            "service": record["service"],
            "artifact": record["artifact"],
            "commit": record.get("commit", ""),
            "branch": record.get("branch", ""),
            "function_name": record.get("function_name"),
            "alias": record.get("alias"),
            "live_version": record.get("live_version"),
            "candidate_version": record.get("candidate_version"),
            "canary_alarms": record.get("canary_alarms") or [],
        }
    )
    restored = _return_canary_traffic(deps, ctx)
    _cleanup_canary(deps, ctx)
    for kind in ("approval", "bake"):
        deps.ledger.take_token(release_id, kind)
    updated = deps.ledger.record(
        release_id, status, reason + (f"; {restored}" if restored else ""), actor=actor, reason=reason
    )
    deps.ledger.release_lock(ctx.service, release_id)
    return updated


def _return_canary_traffic(deps: Deps, ctx: ReleaseContext) -> str:
    """If the alias routes anything to this release's candidate, give it back to live."""
    if not (ctx.function_name and ctx.alias and ctx.candidate_version and ctx.live_version):
        return ""
    version, weights = deploy.alias_state(deps.lambda_, ctx.function_name, ctx.alias)
    if version == ctx.candidate_version or ctx.candidate_version in weights:
        deploy.point_alias(deps.lambda_, ctx.function_name, ctx.alias, ctx.live_version)
        return f"{ctx.function_name}:{ctx.alias} returned to version {ctx.live_version}"
    return ""


# ---------------------------------------------------------------------- candidate
def publish_candidate(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    fn, alias = _target(ctx)
    live_version, weights = deploy.alias_state(deps.lambda_, fn, alias)
    if weights:
        # Only a release holding the lock moves weights, so leftover weights mean an
        # earlier release died mid-canary: don't build on that state.
        raise CandidatePublishFailed(
            f"{fn}:{alias} still routes {weights} besides version {live_version}; "
            "finish or roll back the release that moved it first"
        )
    version = deploy.publish_candidate(
        deps.lambda_,
        fn,
        release_id=ctx.release_id,
        model_config={
            "MODEL_CONFIG_KEY": ctx.artifact.key,
            "MODEL_CONFIG_VERSION": ctx.artifact.version_id,
            "MODEL_PROMPT_VERSIONS": json.dumps(ctx.prompt_versions, separators=(",", ":")),
        },
    )
    deps.ledger.record(
        ctx.release_id,
        "CandidatePublished",
        f"{fn} version {version} pins {ctx.artifact.key} @ {ctx.artifact.version_id}; live is {live_version}",
        candidate_version=version,
        live_version=live_version,
    )
    return ctx.model_copy(update={"candidate_version": version, "live_version": live_version})


def _target(ctx: ReleaseContext) -> tuple[str, str]:
    if not ctx.function_name or not ctx.alias:
        raise ManifestInvalid(f"release {ctx.release_id} has no validated service target")
    return ctx.function_name, ctx.alias


# ---------------------------------------------------------------------- evaluate + gate
def report_key(ctx: ReleaseContext) -> str:
    return f"reports/{ctx.service}/{ctx.release_id}/evaluation.json"


def plan_evaluation(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Pin the dataset's object version, check every line, and cut it into shards.

    Shards run as a Map in the state machine (each within one Lambda invocation's limits);
    candidate and live always evaluate the same shard's cases in the same invocation.
    """
    fn, _ = _target(ctx)
    assert ctx.policy is not None and ctx.live_version
    dataset_key = ctx.dataset_key or ""
    try:
        obj = deps.s3.get_object(Bucket=deps.settings.artifact_bucket, Key=dataset_key)
    except ClientError as exc:
        raise DatasetInvalid(
            f"dataset s3://{deps.settings.artifact_bucket}/{dataset_key} of {ctx.service} "
            f"can't be read: {exc.response['Error']['Code']}"
        ) from exc
    cases = evaluation.parse_dataset(obj["Body"].read().decode("utf-8"))
    size = ctx.policy.eval_shard_size
    live_configured = deploy.is_configured(deploy.version_environment(deps.lambda_, fn, ctx.live_version))
    plan = {
        "dataset_key": dataset_key,
        "dataset_version": obj.get("VersionId") or "null",
        "n_cases": len(cases),
        "live_configured": live_configured,
        "shards": [
            {"index": i, "start": start, "end": min(start + size, len(cases))}
            for i, start in enumerate(range(0, len(cases), size))
        ],
    }
    deps.ledger.record(
        ctx.release_id,
        "EvaluationPlanned",
        f"{len(cases)} cases in {len(plan['shards'])} shard(s) of at most {size}; dataset version "
        f"{plan['dataset_version']}",
    )
    return ctx.model_copy(update={"eval_plan": plan})


def _read_object(deps: Deps, key: str, version: str | None, error: type[Exception], what: str) -> bytes:
    """Read one (pinned) object of the artefact bucket; a failure is a named error saying which."""
    try:
        return deps.s3.get_object(
            Bucket=deps.settings.artifact_bucket, Key=key, **({"VersionId": version} if version else {})
        )["Body"].read()
    except ClientError as exc:
        raise error(
            f"{what} (s3://{deps.settings.artifact_bucket}/{key}"
            f"{f' version {version}' if version else ''}) can't be read: {exc.response['Error']['Code']}"
        ) from exc


def _shard_key(ctx: ReleaseContext, index: int) -> str:
    return report_key(ctx).rsplit("/", 1)[0] + f"/shards/{index:05d}.json"


def evaluate_shard(deps: Deps, ctx: ReleaseContext, shard: dict) -> dict:
    """One shard: its cases against the candidate and (when configured) the live version."""
    fn, _ = _target(ctx)
    assert ctx.policy is not None and ctx.candidate_version and ctx.live_version and ctx.eval_plan
    plan = ctx.eval_plan
    body = _read_object(
        deps, plan["dataset_key"], plan["dataset_version"], DatasetInvalid, f"dataset of {ctx.service}"
    )
    cases = evaluation.parse_dataset(body.decode("utf-8"))[shard["start"] : shard["end"]]
    invokers = {"candidate": partial(invoke_version, deps.lambda_, fn, ctx.candidate_version)}
    if plan["live_configured"]:
        invokers["live"] = partial(invoke_version, deps.lambda_, fn, ctx.live_version)
    report = evaluation.evaluate(
        cases,
        invokers,
        concurrency=ctx.policy.eval_concurrency,
        rate_limit=ctx.policy.eval_rate_limit_rps,
        scoring_models=(
            scorers.scoring_models_for(ctx.policy.scoring_models) if ctx.policy.scoring_models else None
        ),
    )
    key = _shard_key(ctx, shard["index"])
    put = deps.s3.put_object(
        Bucket=deps.settings.artifact_bucket,
        Key=key,
        Body=json.dumps([r.model_dump(mode="json") for r in report.results]).encode(),
        ContentType="application/json",
    )
    return {"index": shard["index"], "key": key, "version": put.get("VersionId"), "cases": len(cases)}


def reduce_evaluation(deps: Deps, ctx: ReleaseContext, shards: list[dict]) -> ReleaseContext:
    """Merge the shards' per-case results into one report (statistics over all cases)."""
    assert ctx.eval_plan is not None and ctx.candidate_version
    plan = ctx.eval_plan
    results: list[evaluation.CaseResult] = []
    for shard in sorted(shards, key=lambda s: s["index"]):
        body = _read_object(
            deps, shard["key"], shard.get("version"), EvaluationFailed, f"results of shard {shard['index']}"
        )
        results += [evaluation.CaseResult.model_validate(r) for r in json.loads(body)]
    if len({r.case_id for r in results}) != plan["n_cases"]:
        raise EvaluationFailed(
            f"shards returned {len({r.case_id for r in results})} cases, the dataset has {plan['n_cases']}"
        )
    report = evaluation.build_report(results)
    key = report_key(ctx)
    put = deps.s3.put_object(
        Bucket=deps.settings.artifact_bucket,
        Key=key,
        Body=report.model_dump_json().encode(),
        ContentType="application/json",
    )
    summary = report.summary()
    summary.update(
        {
            "report_key": key,
            "report_version": put.get("VersionId"),
            "dataset_key": plan["dataset_key"],
            "dataset_version": plan["dataset_version"],
            "shards": len(shards),
            "baseline": "live" if plan["live_configured"] else "none (first release)",
        }
    )
    deps.ledger.record(
        ctx.release_id,
        "Evaluated",
        f"{plan['n_cases']} cases in {len(shards)} shard(s) against candidate {ctx.candidate_version}"
        + (f" and live {ctx.live_version}" if plan["live_configured"] else " (no configured live version)"),
        evaluation=summary,
    )
    return ctx.model_copy(update={"evaluation": summary, "eval_plan": None})


def invoke_version(lambda_client: Any, function_name: str, version: str, inputs: dict) -> dict:
    """Call one exact version of the service; a function error is raised, never scored as output."""
    response = lambda_client.invoke(
        FunctionName=function_name,
        Qualifier=version,
        Payload=json.dumps({"inputs": inputs}).encode(),
    )
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        error = payload if isinstance(payload, dict) else {}
        kind = error.get("errorType", "Error")
        message = f"{kind}: {error.get('errorMessage', payload)}"
        if kind in evaluation.THROTTLE_CODES:  # the model provider throttled the function
            raise evaluation.Throttled(message)
        raise RuntimeError(message)
    return payload


def gate(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    assert ctx.policy is not None and ctx.evaluation is not None
    body = _read_object(
        deps, ctx.evaluation["report_key"], ctx.evaluation.get("report_version"), EvaluationFailed,
        "evaluation report",
    )
    report = evaluation.EvaluationReport.model_validate_json(body)
    verdict = evaluation.judge(report, ctx.policy)
    html_key = ctx.evaluation["report_key"].rsplit("/", 1)[0] + "/evaluation.html"
    deps.s3.put_object(
        Bucket=deps.settings.artifact_bucket,
        Key=html_key,
        Body=render_html(report, verdict, title=f"{ctx.service} release {ctx.release_id}").encode(),
        ContentType="text/html; charset=utf-8",
    )
    criteria = verdict.model_dump(mode="json")
    evaluation_summary = {**ctx.evaluation, "report_html_key": html_key}
    if not verdict.passed:
        deps.ledger.record(
            ctx.release_id, "GateChecked", "gate failed", gate=criteria, evaluation=evaluation_summary
        )
        verdict.raise_if_failed()
    deps.ledger.record(
        ctx.release_id, "GatePassed", "every gate criterion passed", gate=criteria, evaluation=evaluation_summary
    )
    return ctx.model_copy(update={"gate": criteria, "evaluation": evaluation_summary})


# ---------------------------------------------------------------------- register + approval
def register(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    assert ctx.policy is not None
    if ctx.policy.approval == "auto":
        deps.ledger.record(
            ctx.release_id,
            "Approved",
            "approved by policy (approval: auto)",
            approval={"decision": "approve", "approver": "policy:auto", "comment": "", "at": None},
        )
        return ctx.model_copy(update={"approval": {"decision": "approve", "approver": "policy:auto"}})
    deps.ledger.record(
        ctx.release_id,
        "PendingManualApproval",
        "registered; waiting for an approver",
        evaluation=ctx.evaluation,
        four_eyes=ctx.policy.four_eyes,  # read by decide: the policy as it was when asked
    )
    return ctx


def request_approval(deps: Deps, ctx: ReleaseContext, task_token: str) -> dict:
    """Keep the token in the ledger (never in the message) and mail signed links to the approvers."""
    links = approval_links_for(deps, ctx)  # first: a misconfiguration fails before anything is kept
    deps.ledger.put_token(ctx.release_id, "approval", task_token)
    deps.sns.publish(
        TopicArn=deps.settings.approval_topic_arn,
        Subject=f"Modelgate: approve {ctx.service} release {ctx.commit[:12]}?"[:100],
        Message=approval_message(ctx, links),
        MessageAttributes={
            "service": {"DataType": "String", "StringValue": ctx.service},
            "release_id": {"DataType": "String", "StringValue": ctx.release_id},
        },
    )
    logger.info("approval requested", extra={"release_id": ctx.release_id})
    return {"release_id": ctx.release_id, "requested": True}


def approval_links_for(deps: Deps, ctx: ReleaseContext) -> dict[str, str]:
    """Signed approve / reject links; they live as long as the approval waits, at most a day."""
    settings = deps.settings
    if not settings.approval_base_url or not settings.signing_secret_arn:
        raise ConfigurationError(
            "function environment lacks APPROVAL_BASE_URL or SIGNING_SECRET_ARN: approval links can't be signed"
        )
    assert ctx.policy is not None
    keys = approval_links.load_signing_keys(deps.secretsmanager, settings.signing_secret_arn)
    return approval_links.approval_links(
        settings.approval_base_url, keys[0], ctx.release_id, ctx.policy.approval_timeout_seconds, time.time()
    )


def approval_message(ctx: ReleaseContext, links: dict[str, str] | None = None) -> str:
    """The mail approvers get: the numbers, the report, and signed links (never the task token)."""
    ev = ctx.evaluation or {}
    lines = [
        f"Release {ctx.release_id} of {ctx.service} waits for your decision.",
        f"Commit {ctx.commit} on {ctx.branch}; model "
        f"{ctx.manifest.model.model_id if ctx.manifest else '?'}; candidate version {ctx.candidate_version}.",
        "",
        "Evaluation (candidate vs live, same cases):",
    ]
    for name, side in (ev.get("sides") or {}).items():
        lines.append("  " + evaluation.format_side(name, side))
    deltas = ev.get("deltas") or {}
    if deltas:
        lines.append("  deltas: " + ", ".join(f"{k} {v:+.4g}" for k, v in deltas.items() if v is not None))
    ci = (ev.get("deltas_ci95") or {}).get("accuracy_delta")
    if ci:
        lines.append(f"  accuracy delta 95% CI: [{ci[0]:+.3f}, {ci[1]:+.3f}]")
    if ev.get("paired_test"):
        test = ev["paired_test"]
        lines.append(f"  {test.get('method')}: p={test.get('p_value'):.3g} ({test.get('b')} worse / {test.get('c')} better)")
    for key in ("report_html_key", "report_key"):
        if ev.get(key):
            lines.append(f"Report: s3://{ctx.artifact.bucket}/{ev[key]}")
    if ctx.policy is not None and ctx.policy.four_eyes:
        author = ctx.manifest.source.author if ctx.manifest else None
        lines.append(f"Four eyes: the commit's author ({author or 'not named'}) can't approve it.")
    if links:
        ttl = approval_links.link_ttl(ctx.policy.approval_timeout_seconds if ctx.policy else 0)
        lines += [
            "",
            f"Approve:  {links['approve']}",
            f"Reject:   {links['reject']}",
            f"(Each link opens a confirmation page, works once and expires in {ttl // 3600} h {ttl % 3600 // 60} min.)",
        ]
    lines += [
        "",
        "With AWS credentials:",
        f"  modelgate approve {ctx.release_id} --comment '...'",
        f"  modelgate reject {ctx.release_id} --comment '...'",
    ]
    return "\n".join(lines)


def decide(
    deps: Deps, release_id: str, decision: str, approver: str, comment: str = ""
) -> dict:
    """An approver's decision: recorded once in the ledger, then handed to the waiting task.

    Four eyes holds for every way in (links and `modelgate approve` alike): the approver is
    compared with the commit's author the validate step recorded.
    """
    current = deps.ledger.get(release_id)
    if current is None or deps.ledger.get_token(release_id, "approval") is None:
        status = current["status"] if current else "no such release"
        raise DecisionConflict(
            f"release {release_id} has no approval request waiting (status: {status})"
        )
    approval_links.check_four_eyes(
        four_eyes=bool(current.get("four_eyes")), author=current.get("author"), approver=approver, decision=decision
    )
    record = deps.ledger.decide(release_id, decision, approver, comment)
    token = deps.ledger.take_token(release_id, "approval")
    if token is None:  # the timeout's outcome took it between our two reads
        raise DecisionConflict(f"release {release_id} stopped waiting for approval")
    try:
        if decision == "approve":
            deps.sfn.send_task_success(
                taskToken=token,
                output=json.dumps({"decision": "approve", "approver": approver, "comment": comment}),
            )
        else:
            deps.sfn.send_task_failure(
                taskToken=token,
                error="ApprovalRejected",
                cause=f"rejected by {approver}" + (f": {comment}" if comment else ""),
            )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
            raise
        raise DecisionConflict(
            f"release {release_id} stopped waiting for approval before the decision reached it"
        ) from exc
    return record


# ---------------------------------------------------------------------- canary
def shift_traffic(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Move the alias to the rollout step in ctx.step (the first step when none yet).

    The first step creates the canary alarms (on the candidate alone); the final step
    (weight 1.0) points the alias wholly at the candidate, with rollback still armed for
    the post-promotion watch.
    """
    fn, alias = _target(ctx)
    assert ctx.policy is not None and ctx.candidate_version and ctx.live_version
    step = ctx.step or ctx.policy.step_plan()[0]
    names = ctx.canary_alarms
    if not names:
        names = deploy.put_canary_alarms(
            deps.cloudwatch,
            stack_name=deps.settings.stack_name,
            release_id=ctx.release_id,
            function_name=fn,
            alias=alias,
            candidate=ctx.candidate_version,
            specs=ctx.policy.canary_alarms,
        )
        for name in names:
            deps.ledger.put_alarm_owner(name, ctx.release_id, ctx.service)
    if step["is_final"]:
        deploy.point_alias(deps.lambda_, fn, alias, ctx.candidate_version)
    else:
        deploy.set_canary(
            deps.lambda_, fn, alias, stable=ctx.live_version, candidate=ctx.candidate_version, weight=step["weight"]
        )
    started = datetime.now(timezone.utc).isoformat()
    deps.ledger.record(
        ctx.release_id,
        "Watching" if step["is_final"] else "Canary",
        (
            f"100% of {fn}:{alias} on version {ctx.candidate_version}; watched {step['bake_seconds']} s "
            "with rollback armed"
            if step["is_final"]
            else f"step {step['index'] + 1}: {step['weight']:.0%} of {fn}:{alias} to version {ctx.candidate_version}"
        ),
        canary_alarms=names,
        canary_started_at=ctx.canary_started_at or started,
        step=step,
    )
    return ctx.model_copy(
        update={
            "canary_alarms": names,
            "canary_started_at": ctx.canary_started_at or started,
            "step": step,
            "step_started_at": started,
            "extensions_used": 0,
            "judge_action": None,
        }
    )


def start_bake(deps: Deps, ctx: ReleaseContext, task_token: str) -> dict:
    """Arm the bake: keep its token for the alarm handler; an alarm already firing ends it now.

    (An alarm that is already in ALARM emits no change event, so it must be read here.)
    """
    deps.ledger.put_token(ctx.release_id, "bake", task_token)
    firing = deploy.alarms_firing(deps.cloudwatch, ctx.canary_alarms)
    if firing:
        deps.ledger.take_token(ctx.release_id, "bake")
        raise CanaryAlarm(_alarm_text(firing) + " (already firing when the bake started)")
    bake = ctx.step["bake_seconds"] if ctx.step else "?"
    deps.ledger.record(ctx.release_id, "Baking", f"bake armed for {bake} s")
    return {"release_id": ctx.release_id, "armed": True}


def check_canary(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """The end of a step's bake: the alarms once more, then the judge.

    The judge compares candidate and stable over the step's window (errors: Fisher's exact
    test; latency: Mann-Whitney U when the policy limits it). Too little evidence is never
    a pass: per policy the bake is extended, synthetic traffic is sent, or it rolls back.
    At 100% there is no stable side left: the alarms decide.
    """
    fn, alias = _target(ctx)
    assert ctx.policy is not None and ctx.candidate_version and ctx.live_version
    step = ctx.step or ctx.policy.step_plan()[0]
    deps.ledger.take_token(ctx.release_id, "bake")
    firing = deploy.alarms_firing(deps.cloudwatch, ctx.canary_alarms)
    if firing:
        raise CanaryAlarm(_alarm_text(firing))
    if not step["is_final"]:
        since = ctx.step_started_at or ctx.canary_started_at
        start = datetime.fromisoformat(since) if since else datetime.now(timezone.utc)
        candidate, stable = judge.collect_window(
            deps.cloudwatch,
            function_name=fn,
            alias=alias,
            candidate_version=ctx.candidate_version,
            stable_version=ctx.live_version,
            start=min(start, datetime.now(timezone.utc)),
            end=datetime.now(timezone.utc),
        )
        verdict = judge.judge_canary(
            candidate, stable, ctx.policy.judge_policy(), extensions_used=ctx.extensions_used
        )
        deps.ledger.record(
            ctx.release_id,
            "CanaryJudged",
            verdict.message,
            verdict=verdict.model_dump(mode="json"),
            canary_invocations=candidate.invocations,
        )
        if verdict.action == "rollback":
            raise (CanaryRegression if verdict.verdict == "fail" else NotEnoughEvidence)(verdict.message)
        if verdict.action in ("wait", "synthetic"):
            return ctx.model_copy(
                update={"extensions_used": ctx.extensions_used + 1, "judge_action": verdict.action}
            )
    plan = ctx.policy.step_plan()
    following = None if step["is_final"] else plan[step["index"] + 1]
    return ctx.model_copy(update={"judge_action": "proceed", "extensions_used": 0, "step": following})


def send_synthetic(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Not enough canary traffic and the policy says synthetic: call the alias with inputs
    from the evaluation dataset, enough for the candidate's share to reach the minimum."""
    fn, alias = _target(ctx)
    assert ctx.policy is not None and ctx.step is not None
    body = _read_object(deps, ctx.dataset_key or "", None, DatasetInvalid, f"dataset of {ctx.service}")
    cases = evaluation.parse_dataset(body.decode("utf-8"))
    wanted = min(2000, int(ctx.policy.min_canary_invocations / max(ctx.step["weight"], 0.01)) + 1)
    errors = 0
    for i in range(wanted):
        response = deps.lambda_.invoke(
            FunctionName=fn, Qualifier=alias, Payload=json.dumps({"inputs": cases[i % len(cases)].inputs}).encode()
        )
        response["Payload"].read()
        errors += bool(response.get("FunctionError"))
    deps.ledger.record(
        ctx.release_id, "SyntheticTraffic", f"{wanted} synthetic requests through {fn}:{alias} ({errors} failed)"
    )
    return ctx


def _alarm_text(firing: list[dict]) -> str:
    return "; ".join(f"alarm {a['name']} is in ALARM: {a['reason']}" for a in firing)


def on_alarm(deps: Deps, alarm_name: str, reason: str) -> dict:
    """A canary alarm went to ALARM: fail that release's bake task now (no polling)."""
    owner = deps.ledger.alarm_owner(alarm_name)
    if owner is None:
        return {"alarm": alarm_name, "action": "ignored", "why": "no release owns this alarm"}
    release_id = owner["release_id"]
    token = deps.ledger.take_token(release_id, "bake")
    if token is None:
        # Not baking (yet or any more): start_bake / check_canary read the alarm state.
        return {"alarm": alarm_name, "release_id": release_id, "action": "none", "why": "not baking"}
    try:
        deps.sfn.send_task_failure(
            taskToken=token, error="CanaryAlarm", cause=f"alarm {alarm_name} is in ALARM: {reason}"
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
            raise
        return {"alarm": alarm_name, "release_id": release_id, "action": "none", "why": "task already ended"}
    logger.info("bake failed by alarm", extra={"release_id": release_id, "alarm": alarm_name})
    return {"alarm": alarm_name, "release_id": release_id, "action": "bake failed"}


# ---------------------------------------------------------------------- promote / rollback
def promote(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """The rollout and its watch are over: the candidate is the live version."""
    fn, alias = _target(ctx)
    assert ctx.candidate_version
    deploy.point_alias(deps.lambda_, fn, alias, ctx.candidate_version)  # already so: idempotent
    _cleanup_canary(deps, ctx)
    deps.ledger.record(
        ctx.release_id,
        "Promoted",
        f"{fn}:{alias} serves version {ctx.candidate_version} (was {ctx.live_version})",
        promoted_at=datetime.now(timezone.utc).isoformat(),
    )
    deps.ledger.release_lock(ctx.service, ctx.release_id)
    return ctx


def rollback(deps: Deps, ctx: ReleaseContext, error: dict | None) -> dict:
    """One alias update back to the version that was live; idempotent, says why."""
    reason = _reason(error)
    fn, alias = ctx.function_name, ctx.alias
    if fn and alias and ctx.live_version:
        deploy.point_alias(deps.lambda_, fn, alias, ctx.live_version)
    _cleanup_canary(deps, ctx)
    deps.ledger.take_token(ctx.release_id, "bake")
    deps.ledger.record(
        ctx.release_id,
        "RolledBack",
        f"{fn}:{alias} restored to version {ctx.live_version}: {reason}",
        reason=reason,
        error=(error or {}).get("Error"),
    )
    deps.ledger.release_lock(ctx.service, ctx.release_id)
    deps.sns.publish(
        TopicArn=deps.settings.approval_topic_arn,
        Subject=f"Modelgate: {ctx.service} release {ctx.commit[:12]} rolled back"[:100],
        Message=f"Release {ctx.release_id} was rolled back; {fn}:{alias} serves version "
        f"{ctx.live_version} again.\nWhy: {reason}",
    )
    return _outcome(ctx, "RolledBack", (error or {}).get("Error") or "RolledBack", reason)


def rollback_service(deps: Deps, service: str, actor: str, comment: str = "") -> dict:
    """`modelgate rollback SERVICE`: back to the last known good version, now.

    No gate runs and no alarm is consulted (an alarm still firing is why one rolls back).
    A release in flight is cancelled first, its canary traffic returned. The last known
    good version is the one that was live before the live release was promoted.
    """
    config = get_service(deps.ssm, deps.settings.services_prefix, service)
    fn, alias = config.function_name, config.alias
    why = f"manual rollback by {actor}" + (f": {comment}" if comment else "")
    holder = deps.ledger.lock_holder(service)
    if holder:
        cancel_release(deps, holder, "RolledBack", why, actor=actor)
    current, _ = deploy.alias_state(deps.lambda_, fn, alias)
    live_release = next(
        (
            r
            for r in deps.ledger.list_releases(service=service, limit=200)
            if r.get("status") == "Promoted" and str(r.get("candidate_version")) == current
        ),
        None,
    )
    if live_release is None:
        raise DecisionConflict(
            f"{fn}:{alias} serves version {current}, which no promoted release of {service} "
            "put there: nothing to roll back to"
        )
    target = str(live_release.get("live_version") or "")
    if not target or not deploy.is_configured(deploy.version_environment(deps.lambda_, fn, target)):
        raise DecisionConflict(
            f"version {current} of {service} is its first release: the version before it "
            f"({target or 'none'}) serves no model, so there is no known good version to return to"
        )
    deploy.point_alias(deps.lambda_, fn, alias, target)
    release_id = live_release["release_id"]
    record = deps.ledger.record(
        release_id,
        "RolledBack",
        f"{why}; {fn}:{alias} returned to version {target}",
        actor=actor,
        reopen=True,
        reason=why,
        error="ManualRollback",
    )
    deps.sns.publish(
        TopicArn=deps.settings.approval_topic_arn,
        Subject=f"Modelgate: {service} rolled back to version {target}"[:100],
        Message=f"{why}.\n{fn}:{alias} serves version {target} again (release {release_id} is rolled back).",
    )
    return {"service": service, "release_id": release_id, "from_version": current, "to_version": target,
            "status": record["status"]}


def _cleanup_canary(deps: Deps, ctx: ReleaseContext) -> None:
    deploy.delete_alarms(deps.cloudwatch, ctx.canary_alarms)
    for name in ctx.canary_alarms:
        deps.ledger.delete_alarm_owner(name)


STATUS_BY_ERROR = {
    "Superseded": "Superseded",
    "ManifestInvalid": "Invalid",
    "ServiceNotRegistered": "Invalid",
    "GateFailed": "GateFailed",
    "ApprovalRejected": "Rejected",
    "ApprovalTimedOut": "ApprovalTimedOut",
}


def record_outcome(deps: Deps, ctx: ReleaseContext, error: dict | None) -> dict:
    """End a release that failed before any traffic moved: ledger says why, lock released."""
    name = (error or {}).get("Error") or "Failed"
    status = STATUS_BY_ERROR.get(name, "Failed")
    reason = _reason(error)
    deps.ledger.take_token(ctx.release_id, "approval")
    deps.ledger.record(
        ctx.release_id,
        status,
        reason,
        reason=reason,
        error=name,
        service=ctx.service,
        commit=ctx.commit,
    )
    deps.ledger.release_lock(ctx.service, ctx.release_id)
    return _outcome(ctx, status, name, reason)


def _reason(error: dict | None) -> str:
    if not error:
        return "no reason recorded"
    cause = error.get("Cause") or ""
    try:  # a Lambda error's cause is the runtime's JSON: keep its message
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            cause = parsed["errorMessage"]
    except (ValueError, TypeError):
        pass
    return f"{error.get('Error', 'Error')}: {cause}" if cause else str(error.get("Error"))


def _outcome(ctx: ReleaseContext, status: str, error: str, reason: str) -> dict:
    data = ctx.model_dump(mode="json")
    data["outcome"] = {"status": status, "error": error, "reason": reason[:32000]}
    return data
