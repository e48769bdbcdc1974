"""Outcome: promote, roll back (on failure, or by hand), or record why a release ended early.

Every path of the pipeline ends here with a ledger record and the service's lock free.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from modelgate.adapters import lambda_alias
from modelgate.contract import Outcome, ReleaseContext, TaskError
from modelgate.errors import DecisionConflict, bounded
from modelgate.pipeline.canary import cleanup_canary
from modelgate.pipeline.candidate import cancel_release
from modelgate.pipeline.deps import Deps, target
from modelgate.policy import managed_function_prefix
from modelgate.registry import get_service
from modelgate.text import one_line


def promote(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """The rollout and its final bake are over: the candidate is the live version.

    The final bake left the alias weighted (99.99% on the candidate, see rollout.py); this
    is the one place the alias becomes unweighted on the candidate alone (idempotent). The
    canary alarms go with it: they watch ``ExecutedVersion``, which AWS documents for
    weighted aliases only, so nothing here watches the unweighted alias through it.
    """
    fn, alias = target(ctx)
    assert ctx.candidate_version
    lambda_alias.point_alias(deps.lambda_, fn, alias, ctx.candidate_version)
    cleanup_canary(deps, ctx)
    deps.ledger.record(
        ctx.release_id,
        "Promoted",
        f"{fn}:{alias} serves version {ctx.candidate_version} alone, unweighted (was {ctx.live_version})",
        promoted_at=datetime.now(timezone.utc).isoformat(),
    )
    deps.ledger.release_lock(ctx.service, ctx.release_id)
    return ctx


def rollback(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """One alias update back to the version that was live; idempotent, says why (``ctx.error``)."""
    error = ctx.error
    reason = _reason(error)
    fn, alias = ctx.function_name, ctx.alias
    if fn and alias and ctx.live_version:
        lambda_alias.point_alias(deps.lambda_, fn, alias, ctx.live_version)
    cleanup_canary(deps, ctx)
    deps.ledger.take_token(ctx.release_id, "bake")
    deps.ledger.record(
        ctx.release_id,
        "RolledBack",
        f"{fn}:{alias} restored to version {ctx.live_version}: {reason}",
        reason=reason,
        error=error.error if error else None,
    )
    deps.ledger.release_lock(ctx.service, ctx.release_id)
    deps.sns.publish(
        TopicArn=deps.settings.approval_topic_arn,
        Subject=f"Modelgate: {ctx.service} release {ctx.commit[:12]} rolled back"[:100],
        Message=f"Release {ctx.release_id} was rolled back; {fn}:{alias} serves version "
        f"{ctx.live_version} again.\nWhy: {one_line(reason, 4000)}",  # one line: text in it can't forge another
    )
    return _outcome(ctx, "RolledBack", error.error if error else "RolledBack", reason)


def rollback_service(deps: Deps, service: str, actor: str, comment: str = "") -> dict:
    """`modelgate rollback SERVICE`: back to the last known good version, now.

    No gate runs and no alarm is consulted (an alarm still firing is why one rolls back).
    A release in flight is cancelled first, its canary traffic returned. The last known
    good version is the one that was live before the live release was promoted.
    """
    config = get_service(
        deps.ssm, deps.settings.services_prefix, service, function_prefix=managed_function_prefix(deps.settings.stack_name)
    )
    fn, alias = config.function_name, config.alias
    why = f"manual rollback by {actor}" + (f": {comment}" if comment else "")
    holder = deps.ledger.lock_holder(service)
    if holder:
        cancel_release(deps, holder, "RolledBack", why, actor=actor)
    current, _ = lambda_alias.alias_state(deps.lambda_, fn, alias)
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
    good = str(live_release.get("live_version") or "")
    if not good or not lambda_alias.is_configured(deps.lambda_, fn, good):
        raise DecisionConflict(
            f"version {current} of {service} is its first release: the version before it "
            f"({good or 'none'}) serves no model, so there is no known good version to return to"
        )
    lambda_alias.point_alias(deps.lambda_, fn, alias, good)
    release_id = live_release["release_id"]
    record = deps.ledger.record(
        release_id,
        "RolledBack",
        f"{why}; {fn}:{alias} returned to version {good}",
        actor=actor,
        reopen=True,
        reason=why,
        error="ManualRollback",
    )
    deps.sns.publish(
        TopicArn=deps.settings.approval_topic_arn,
        Subject=f"Modelgate: {service} rolled back to version {good}"[:100],
        Message=f"{one_line(why, 4000)}.\n{fn}:{alias} serves version {good} again "
        f"(release {release_id} is rolled back).",
    )
    return {"service": service, "release_id": release_id, "from_version": current, "to_version": good,
            "status": record["status"]}


STATUS_BY_ERROR = {
    "Superseded": "Superseded",
    "ManifestInvalid": "Invalid",
    "ServiceNotRegistered": "Invalid",
    "GateFailed": "GateFailed",
    "ApprovalRejected": "Rejected",
    "ApprovalTimedOut": "ApprovalTimedOut",
}


def record_outcome(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """End a release that failed before any traffic moved: ledger says why (``ctx.error``), lock released."""
    error = ctx.error
    name = error.error if error else "Failed"
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


def _reason(error: TaskError | None) -> str:
    if not error:
        return "no reason recorded"
    cause = error.cause or ""
    try:  # a Lambda error's cause is the runtime's JSON: keep its message
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            cause = parsed["errorMessage"]
    except (ValueError, TypeError):
        pass
    # bounded: whatever a step's error echoed, the ledger record (400 KB item) and the state stay small
    return bounded(f"{error.error}: {cause}" if cause else error.error, 16_000)


def _outcome(ctx: ReleaseContext, status: str, error: str, reason: str) -> ReleaseContext:
    return ctx.model_copy(update={"outcome": Outcome(status=status, error=error, reason=reason[:32000])})
