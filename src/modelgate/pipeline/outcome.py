"""Outcome: promote, roll back (on failure, or by hand), or record why a release ended early.

Every path of the pipeline ends here with a ledger record and the service's lock free.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from modelgate import clock
from modelgate.adapters import lambda_alias
from modelgate.contract import Outcome, ReleaseContext, TaskError
from modelgate.errors import DecisionConflict, LeaseLost, ReleaseClosed, bounded
from modelgate.lease import Lease
from modelgate.observability import logger
from modelgate.pipeline.canary import cleanup_canary
from modelgate.pipeline.deps import Deps, target
from modelgate.pipeline.fencing import Fence, delete_alarms, describe, fence_of
from modelgate.pipeline.model_registry import mirror_package, mirror_status
from modelgate.policy import managed_function_prefix
from modelgate.text import one_line


def promote(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """The rollout and its final bake are over: the candidate is the live version.

    The final bake left the alias weighted (99.99% on the candidate, see rollout.py); this
    is the one place the alias becomes unweighted on the candidate alone (idempotent). The
    canary alarms go with it: they watch ``ExecutedVersion``, which AWS documents for
    weighted aliases only, so nothing here watches the unweighted alias through it.

    Fenced (fencing.py): the alias move and the Promoted record each require the release's
    lease, the record in one transaction with the lease check; a release that lost its
    lease (superseded while its final bake ran) raises LeaseLost and is not promoted.

    Then it asks the monitor function for the promoted version's drift baseline, asynchronously
    (``monitor.baseline_request.request_baseline``); the baseline is built after Promote returns."""
    # Promote's alone among the steps that import this module (its handler loads it at init)
    from modelgate.monitor.baseline_request import request_baseline

    fn, alias = target(ctx)
    assert ctx.candidate_version
    record = deps.ledger.get(ctx.release_id) or {}
    if record.get("status") == "Promoted":
        # A retry of a Promote that did its work but whose answer was lost (Lambda.ServiceException
        # after the handler ran), or that ran out of time after its write (Sandbox.Timedout):
        # Promoted is written only under the lease, so this release is live by right. What
        # followed the write is finished: the lock (released if this release still holds it:
        # a run cut after the write did not get that far), the mirror, and the baseline's request.
        deps.ledger.release_lock(ctx.service, ctx.release_id)
        mirror_status(deps, ctx, "Approved", f"promoted: {ctx.function_name}:{ctx.alias} serves it")
        if not any(record.get(f) for f in ("baseline_requested_at", "baseline_key", "baseline_error")):
            request_baseline(deps, ctx, clock.now())
        return ctx
    fence = fence_of(deps, ctx)
    candidate = ctx.candidate_version
    fence.move_alias(fn, alias, lambda *_: (candidate, {}), f"promoting {ctx.release_id}")  # idempotent
    cleanup_canary(deps, ctx)
    deps.ledger.record(
        ctx.release_id,
        "Promoted",
        f"{fn}:{alias} serves version {ctx.candidate_version} alone, unweighted (was {ctx.live_version})",
        lease=fence.lease,
        promoted_at=datetime.now(timezone.utc).isoformat(),
    )
    deps.ledger.release_lock(ctx.service, ctx.release_id)
    mirror_status(deps, ctx, "Approved", f"promoted: {fn}:{alias} serves version {ctx.candidate_version}")
    # the drift baseline, built by the monitor function after this returns (asynchronous
    # invoke, monitor/baseline.py): never slows or fails the promotion
    request_baseline(deps, ctx, clock.now())
    return ctx


def rollback(deps: Deps, ctx: ReleaseContext, execution_arn: str | None = None) -> ReleaseContext:
    """One alias update back to the version that was live; idempotent, says why (``ctx.error``,
    and which step failed when the error doesn't say: see :func:`failed_step`).

    The alias moves only while the release holds its lease (fencing.py). One that lost it
    (superseded, cancelled by hand) leaves the alias to the lease's new holder, which returns
    its canary traffic itself, and ends Superseded (unless its canceller recorded its own
    status first); its own alarms are deleted either way."""
    error = ctx.error
    reason = _reason(error, failed_step(deps, error, execution_arn))
    fn, alias = ctx.function_name, ctx.alias
    status, detail = "RolledBack", f"{fn}:{alias} restored to version {ctx.live_version}: {reason}"
    try:
        if fn and alias and ctx.live_version:
            live = ctx.live_version
            fence_of(deps, ctx).move_alias(fn, alias, lambda *_: (live, {}), f"rolling back {ctx.release_id}")
        elif error is not None and error.error == "LeaseLost":
            raise LeaseLost(reason)
    except LeaseLost as exc:
        status, detail = "Superseded", f"{exc}; {fn}:{alias} is left to the lease's holder (after: {reason})"
    # The alarms the state carries, and those the ledger names: a ShiftTraffic that created them
    # and then failed (its alias update throttled for good, say) returned no state, but its
    # alarms' names went into the ledger before the alarms did (fencing.put_alarms).
    recorded = [str(a) for a in (deps.ledger.get(ctx.release_id) or {}).get("canary_alarms") or []]
    cleanup_canary(deps, ctx.model_copy(update={"canary_alarms": sorted({*ctx.canary_alarms, *recorded})}))
    deps.ledger.take_token(ctx.release_id, "bake")
    try:
        deps.ledger.record(ctx.release_id, status, detail, reason=detail if status != "RolledBack" else reason,
                           error=error.error if error else None)
    except ReleaseClosed:
        # Ended meanwhile by whoever took the lease (superseded, rolled back by hand): that stays.
        status = str((deps.ledger.get(ctx.release_id) or {}).get("status"))
    mirror_status(deps, ctx, "Rejected", f"{status}: {detail}")
    if status != "RolledBack":
        return _outcome(ctx, status, error.error if error else status, detail)
    deps.ledger.release_lock(ctx.service, ctx.release_id)
    deps.sns.publish(
        TopicArn=deps.settings.approval_topic_arn,
        Subject=f"Modelgate: {ctx.service} release {ctx.commit[:12]} rolled back"[:100],
        Message=f"Release {ctx.release_id} was rolled back; {fn}:{alias} serves version "
        f"{ctx.live_version} again.\nWhy: {one_line(reason, 4000)}",  # one line: text in it can't forge another
    )
    return _outcome(ctx, "RolledBack", error.error if error else "RolledBack", reason)


def rollback_service(
    deps: Deps, service: str, actor: str, comment: str = "", *, kind: str = "manual rollback",
    error: str = "ManualRollback",
) -> dict:
    """`modelgate rollback SERVICE`: back to the last known good version, now.

    ``kind`` and ``error`` say who asked in the ledger's reason and error (a monitoring action:
    "monitoring policy rollback", MonitorRollback).

    No gate runs and no alarm is consulted (an alarm still firing is why one rolls back).
    The rollback holds the service's lease while it works (fencing.py), taken over from the
    release in flight if there is one: that release is cancelled first, its canary traffic
    returned, and none of its tasks still running can move the alias after. The last known
    good version is the one that was live before the live release was promoted.
    """
    # The CLI's and the monitor's (a policy's rollback action), not the pipeline's end steps:
    # the registration, the lock's take-over and the chain are loaded when one runs.
    from modelgate.pipeline.candidate import finish_owed_cancels
    from modelgate.registry import get_service

    config = get_service(
        deps.ssm, deps.settings.services_prefix, service, function_prefix=managed_function_prefix(deps.settings.stack_name)
    )
    fn, alias = config.function_name, config.alias
    why = f"{kind} by {actor}" + (f": {comment}" if comment else "")
    owner = f"manual-rollback-{uuid.uuid4().hex[:12]}"
    lease_seconds = config.policy.lock_lease_seconds
    holder = deps.ledger.lock_holder(service)
    if holder:
        generation = deps.ledger.take_over_lock(service, holder, owner, lease_seconds)
    else:
        generation = deps.ledger.acquire_lock(service, owner, lease_seconds)
    fence = Fence(deps, Lease(service, owner, generation))
    try:
        finish_owed_cancels(deps, fence, "RolledBack", why, actor=actor)
        return _roll_back_live(deps, service, fn, alias, fence, why, actor, error)
    finally:
        deps.ledger.release_lock(service, owner)


def _roll_back_live(
    deps: Deps, service: str, fn: str, alias: str, fence: Fence, why: str, actor: str, error: str = "ManualRollback"
) -> dict:
    current, weights = lambda_alias.alias_state(deps.lambda_, fn, alias)
    if weights:  # a canary still on live (its release's Rollback failed for good): take it away first
        return _withdraw_canary(deps, service, fn, alias, fence, (current, weights), why, actor, error)
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
            f"({good or 'none'}) serves no model release (at most the stack's bootstrap configuration), so there is no "
            "known good version to return to"
        )
    fence.move_alias(fn, alias, lambda *_: (good, {}), f"manual rollback of {service}")
    release_id = live_release["release_id"]
    record = deps.ledger.record(
        release_id,
        "RolledBack",
        f"{why}; {fn}:{alias} returned to version {good}",
        actor=actor,
        reopen=True,
        reason=why,
        error=error,
    )
    mirror_package(deps, release_id, live_release.get("model_package_arn"), "Rejected", f"RolledBack: {why}")
    from modelgate.chain import LedgerChain, snapshot  # rollback_service's, see there

    # an ended release changed: the change is a record of the service's chain (chain.py)
    LedgerChain(deps.ledger.table).append(service, "manual-rollback", release_id, snapshot(record))
    deps.sns.publish(
        TopicArn=deps.settings.approval_topic_arn,
        Subject=f"Modelgate: {service} rolled back to version {good}"[:100],
        Message=f"{one_line(why, 4000)}.\n{fn}:{alias} serves version {good} again "
        f"(release {release_id} is rolled back).",
    )
    return {"service": service, "release_id": release_id, "from_version": current, "to_version": good,
            "status": record["status"]}


def _withdraw_canary(
    deps: Deps, service: str, fn: str, alias: str, fence: Fence, state: lambda_alias.AliasState, why: str, actor: str,
    error: str = "ManualRollback",
) -> dict:
    """The alias still sends canary weight to a release's candidate: the state a permanently
    failed Rollback leaves (RollbackFailed, whose alert names this command). Live is the alias's
    own version, the one it served before that canary started (ShiftTraffic keeps it as the
    alias's version and gives the candidate additional weight), so live is restored by taking
    the additional weights away: the alias wholly back on that version, the candidate's canary
    alarms deleted, and its release recorded RolledBack (reopened from RollbackFailed). Rolling
    back further, past the version that was live, is a second `modelgate rollback`."""
    stable, weights = state
    candidates = {str(v) for v in weights}
    release = next(
        (r for r in deps.ledger.list_releases(service=service, limit=200)
         if str(r.get("candidate_version")) in candidates and r.get("status") != "Promoted"),
        None,
    )
    before = describe(state)
    fence.move_alias(fn, alias, lambda *_: (stable, {}), f"manual rollback of {service}: canary traffic withdrawn")
    alarms = [str(a) for a in (release or {}).get("canary_alarms") or []]
    delete_alarms(deps, alarms)
    done = f"{fn}:{alias} served {before}; it serves version {stable} alone again"
    release_id = release["release_id"] if release else None
    status = None
    if release_id:
        record = deps.ledger.record(
            release_id, "RolledBack", f"{why}; {done}" + (f"; its canary alarms deleted: {', '.join(alarms)}" if alarms else ""),
            actor=actor, reopen=True, reason=why, error=error,
        )
        status = record["status"]
        mirror_package(deps, release_id, release.get("model_package_arn"), "Rejected", f"RolledBack: {why}")
        from modelgate.chain import LedgerChain, snapshot  # rollback_service's, see there

        # an ended release (RollbackFailed, chained by the last resort) changed: a record of the chain
        LedgerChain(deps.ledger.table).append(service, "manual-rollback", release_id, snapshot(record))
    deps.sns.publish(
        TopicArn=deps.settings.approval_topic_arn,
        Subject=f"Modelgate: {service} canary traffic withdrawn, version {stable} live"[:100],
        Message=f"{one_line(why, 4000)}.\n{done}"
        + (f" (release {release_id} is rolled back)." if release_id else " (no release of the ledger owned that weight)."),
    )
    return {"service": service, "release_id": release_id, "from_version": before.removeprefix("version "),
            "to_version": stable, "status": status}


STATUS_BY_ERROR = {
    "Superseded": "Superseded",
    "LeaseLost": "Superseded",  # a newer release (or a manual rollback) took the lease: fencing.py
    "ManifestInvalid": "Invalid",
    "ServiceNotRegistered": "Invalid",
    "GateFailed": "GateFailed",
    "ApprovalRejected": "Rejected",
    "ApprovalTimedOut": "ApprovalTimedOut",
}


# Errors that say what happened by their name (the ASL catches them by name); any other
# error (a bug, a missing grant, a Lambda service error after its retries) gets the name of
# the step that failed in the reason.
NAMED_ERRORS = frozenset({*STATUS_BY_ERROR, "CanaryAlarm", "CanaryRegression", "NotEnoughEvidence"})
# The closing steps themselves, and the states between a failed Promote and Rollback (the
# ledger read first: CheckPromoted, PromotedAnyway): the step that failed is the newest other
# state entered.
CLOSING_STATES = frozenset({"RecordOutcome", "Rollback", "CheckPromoted", "PromotedAnyway"})
HISTORY_EVENTS = 200


def pipeline_execution_arn(function_arn: str, stack_name: str, release_id: str) -> str | None:
    """The release's execution: named by its release id (intake), on the stack's state machine
    (template.yaml names it ``<stack>-release-pipeline``), in the calling function's account
    and region (from its ARN); None for an ARN that is not a Lambda function's."""
    parts = function_arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "lambda" or parts[5] != "function":
        return None
    partition, region, account = parts[1], parts[3], parts[4]
    return f"arn:{partition}:states:{region}:{account}:execution:{stack_name}-release-pipeline:{release_id}"


def failed_step(deps: Deps, error: TaskError | None, execution_arn: str | None) -> str | None:
    """The state whose error led to this closing step, for an error whose name doesn't say.

    A Catch leads from the failing state to RecordOutcome or Rollback (straight, or from Promote
    through the ledger read), so it is the newest state entered other than those, read from the
    execution's history
    (GetExecutionHistory with reverseOrder, "GetExecutionHistory", AWS Step Functions API
    Reference, https://docs.aws.amazon.com/step-functions/latest/apireference/API_GetExecutionHistory.html).
    Events are ordered by id here too, so the answer doesn't depend on the order returned.
    None when the history can't be read: the closing step must run whatever happens.
    """
    if error is None or error.error in NAMED_ERRORS or not execution_arn:
        return None
    try:
        events = deps.sfn.get_execution_history(
            executionArn=execution_arn, reverseOrder=True, maxResults=HISTORY_EVENTS, includeExecutionData=False
        )["events"]
    except Exception:  # noqa: BLE001 - the reason loses a detail; the release must still end
        logger.warning("the failed step could not be read from the execution history", exc_info=True)
        return None
    for event in sorted(events, key=lambda e: e.get("id", 0), reverse=True):
        name = (event.get("stateEnteredEventDetails") or {}).get("name")
        if name and name not in CLOSING_STATES:
            return str(name)
    return None


def record_outcome(deps: Deps, ctx: ReleaseContext, execution_arn: str | None = None) -> ReleaseContext:
    """End a release that failed before any traffic moved: ledger says why (``ctx.error``, and
    which step failed when the error doesn't say), lock released."""
    error = ctx.error
    name = error.error if error else "Failed"
    status = STATUS_BY_ERROR.get(name, "Failed")
    reason = _reason(error, failed_step(deps, error, execution_arn))
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
    mirror_status(deps, ctx, "Rejected", f"{status}: {reason}")
    return _outcome(ctx, status, name, reason)


def _reason(error: TaskError | None, step: str | None = None) -> str:
    if not error:
        return "no reason recorded"
    if step:
        return f"the {step} step failed: {_reason(error)}"
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
    """What the ASL's ReleaseFailed state fails the execution with (ErrorPath $.outcome.error).

    Error names starting with "States." are reserved for Step Functions' own errors ("Error
    names", Amazon States Language specification, https://states-language.net/#error-names):
    a Fail state whose error resolves to one ends in States.Runtime instead (as the embedded
    interpreter does), so a caught States.Timeout or States.ExceedToleratedFailureThreshold
    ends the execution as Timeout or ExceedToleratedFailureThreshold. The ledger keeps the
    full name."""
    name = error.removeprefix("States.") or error
    return ctx.model_copy(update={"outcome": Outcome(status=status, error=name, reason=reason[:32000])})
