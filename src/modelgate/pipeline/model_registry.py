"""SageMaker Model Registry, optional per service (policy ``model_registry: {"group": NAME}``).

Teams that keep their model versions in SageMaker Model Registry see each release there: Register
creates a model package version in the service's group (the group is created if missing) with the
evaluation attached (``ModelMetrics``: the evaluation report in S3; ``CustomerMetadataProperties``:
the release, its commit and model, the gate's numbers), PendingManualApproval. The release's
end is mirrored: Promote sets Approved; Rollback and RecordOutcome (rejected, approval timed out,
any failure after Register) set Rejected, with the reason as the ApprovalDescription. Approval
statuses and their meaning: "Update the Approval Status of a Model", SageMaker Developer Guide
(https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-approve.html): a model version is
PendingManualApproval, Approved or Rejected; here Approved means "promoted to live".

Registering is part of the release (a failure fails Register, so the policy's ask is never
silently skipped). A release cancelled when a newer one supersedes it, and a promoted release rolled
back by hand (`modelgate rollback`), are set Rejected too. Mirroring an end is not part of it: by then the alias has moved or the release has
ended, so a failed UpdateModelPackage is logged and recorded in the ledger
(``model_package_status`` says what was not mirrored and why) and the release ends as it would.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from modelgate.adapters import model_registry as registry
from modelgate.contract import ReleaseContext
from modelgate.errors import ConfigurationError, error_code
from modelgate.observability import logger
from modelgate.pipeline.deps import Deps
from modelgate.policy import ReleasePolicy, model_registry_group_prefix


def check_group(policy: ReleasePolicy | None, stack_name: str) -> None:
    """ConfigurationError when the policy's group lies outside the stack's IAM scope."""
    if policy is None or policy.model_registry is None:
        return
    prefix = model_registry_group_prefix(stack_name)
    if not policy.model_registry.group.startswith(prefix):
        raise ConfigurationError(
            f"model_registry.group {policy.model_registry.group!r} must start with {prefix!r}: the pipeline may "
            "create and update model packages only in the stack's own groups"
        )


def _metadata(deps: Deps, ctx: ReleaseContext) -> dict[str, object]:
    metadata: dict[str, object] = {
        "modelgate:release": ctx.release_id,
        "modelgate:service": ctx.service,
        "modelgate:commit": ctx.commit,
        "modelgate:branch": ctx.branch,
        "modelgate:stack": deps.settings.stack_name,
    }
    if ctx.manifest is not None:
        metadata["modelgate:model-id"] = ctx.manifest.model.model_id
    if ctx.candidate_version:
        metadata["modelgate:lambda-version"] = f"{ctx.function_name}:{ctx.candidate_version}"
    if ctx.gate is not None:
        metadata["modelgate:gate"] = "pass" if ctx.gate.passed else "fail"
    evaluation = ctx.evaluation
    if evaluation is not None:
        metadata["modelgate:cases"] = evaluation.n_cases
        for side, metrics in evaluation.sides.items():
            for name in ("accuracy", "error_rate", "latency_p95_ms", "cost_per_request_usd"):
                if metrics.get(name) is not None:
                    metadata[f"{side}:{name}"] = f"{metrics[name]:.6g}"
        if evaluation.deltas and evaluation.deltas.get("accuracy_delta") is not None:
            metadata["delta:accuracy"] = f"{evaluation.deltas['accuracy_delta']:.6g}"
        metadata["modelgate:report"] = f"s3://{deps.settings.artifact_bucket}/{evaluation.report_key}"
    return metadata


def register_package(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """The release as a model package version, PendingManualApproval (nothing without the policy).
    Idempotent: a retried Register finds the package (the context, else the ClientToken)."""
    policy = ctx.policy
    if policy is None or policy.model_registry is None or ctx.model_package_arn:
        return ctx
    check_group(policy, deps.settings.stack_name)
    group = policy.model_registry.group
    sm = deps.client("sagemaker")
    registry.ensure_group(sm, group, f"Modelgate releases of {ctx.service} (stack {deps.settings.stack_name})")
    evaluation = ctx.evaluation
    arn = registry.create_package(
        sm, group,
        release_id=ctx.release_id,
        description=f"Modelgate release {ctx.release_id} of {ctx.service} (commit {ctx.commit})",
        metadata=_metadata(deps, ctx),
        metrics_uri=f"s3://{deps.settings.artifact_bucket}/{evaluation.report_key}" if evaluation else None,
    )
    deps.ledger.set_fields(ctx.release_id, model_package_arn=arn, model_package_status="PendingManualApproval")
    logger.info("registered in SageMaker Model Registry", extra={"model_package_arn": arn, "group": group})
    return ctx.model_copy(update={"model_package_arn": arn})


def mirror_status(deps: Deps, ctx: ReleaseContext, status: registry.ApprovalStatus, why: str) -> None:
    """Set the release's package to ``status`` (nothing without one); a failure is recorded, not raised."""
    mirror_package(deps, ctx.release_id, ctx.model_package_arn, status, why)


def mirror_package(
    deps: Deps, release_id: str, arn: str | None, status: registry.ApprovalStatus, why: str
) -> None:
    """:func:`mirror_status` for a release known by its ledger record (a cancel, a manual rollback)."""
    if not arn:
        return
    try:
        registry.set_status(deps.client("sagemaker"), arn, status, why)
    except ClientError as exc:
        code = error_code(exc)
        logger.warning("model package status not mirrored",
                       extra={"model_package_arn": arn, "status": status, "error": code})
        deps.ledger.set_fields(release_id, model_package_status=f"{status} not mirrored: {code}")
        return
    deps.ledger.set_fields(release_id, model_package_status=status)
