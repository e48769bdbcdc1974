"""Canary: shift traffic for a rollout step, bake, judge the step, send synthetic traffic,
react to alarms; and hand canary traffic back when a release is cancelled."""

from __future__ import annotations

from datetime import datetime, timezone

from botocore.exceptions import ClientError

from modelgate import canary_judge
from modelgate.adapters import alarms, lambda_alias
from modelgate.adapters.metrics import collect_window
from modelgate.contract import ReleaseContext
from modelgate.errors import (
    TASK_GONE_CODES,
    CanaryAlarm,
    CanaryRegression,
    DatasetInvalid,
    NotEnoughEvidence,
    error_code,
)
from modelgate.observability import logger
from modelgate.pipeline.deps import Deps, target


def shift_traffic(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Move the alias to the rollout step in ctx.step (the first step when none yet).

    The first step creates the canary alarms (on the candidate alone); the final step
    (weight 1.0) points the alias wholly at the candidate, with rollback still armed for
    the post-promotion watch.
    """
    fn, alias = target(ctx)
    assert ctx.policy is not None and ctx.candidate_version and ctx.live_version
    step = ctx.step or ctx.policy.step_plan()[0]
    names = ctx.canary_alarms
    if not names:
        names = alarms.put_canary_alarms(
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
    if step.is_final:
        lambda_alias.point_alias(deps.lambda_, fn, alias, ctx.candidate_version)
    else:
        lambda_alias.set_canary(
            deps.lambda_, fn, alias, stable=ctx.live_version, candidate=ctx.candidate_version, weight=step.weight
        )
    started = datetime.now(timezone.utc).isoformat()
    deps.ledger.record(
        ctx.release_id,
        "Watching" if step.is_final else "Canary",
        (
            f"100% of {fn}:{alias} on version {ctx.candidate_version}; watched {step.bake_seconds} s "
            "with rollback armed"
            if step.is_final
            else f"step {step.index + 1}: {step.weight:.0%} of {fn}:{alias} to version {ctx.candidate_version}"
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
    firing = alarms.alarms_firing(deps.cloudwatch, ctx.canary_alarms)
    if firing:
        deps.ledger.take_token(ctx.release_id, "bake")
        raise CanaryAlarm(_alarm_text(firing) + " (already firing when the bake started)")
    bake = ctx.step.bake_seconds if ctx.step else "?"
    deps.ledger.record(ctx.release_id, "Baking", f"bake armed for {bake} s")
    return {"release_id": ctx.release_id, "armed": True}


def check_canary(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """The end of a step's bake: the alarms once more, then the judge.

    The judge compares candidate and stable over the step's window (errors: Fisher's exact
    test; latency: Mann-Whitney U when the policy limits it). Too little evidence is never
    a pass: per policy the bake is extended, synthetic traffic is sent, or it rolls back.
    At 100% there is no stable side left: the alarms decide.
    """
    fn, alias = target(ctx)
    assert ctx.policy is not None and ctx.candidate_version and ctx.live_version
    step = ctx.step or ctx.policy.step_plan()[0]
    deps.ledger.take_token(ctx.release_id, "bake")
    firing = alarms.alarms_firing(deps.cloudwatch, ctx.canary_alarms)
    if firing:
        raise CanaryAlarm(_alarm_text(firing))
    if not step.is_final:
        since = ctx.step_started_at or ctx.canary_started_at
        start = datetime.fromisoformat(since) if since else datetime.now(timezone.utc)
        candidate, stable = collect_window(
            deps.cloudwatch,
            function_name=fn,
            alias=alias,
            candidate_version=ctx.candidate_version,
            stable_version=ctx.live_version,
            start=min(start, datetime.now(timezone.utc)),
            end=datetime.now(timezone.utc),
        )
        verdict = canary_judge.judge_canary(
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
    following = None if step.is_final else plan[step.index + 1]
    return ctx.model_copy(update={"judge_action": "proceed", "extensions_used": 0, "step": following})


def send_synthetic(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Not enough canary traffic and the policy says synthetic: call the alias with inputs
    from the evaluation dataset, enough for the candidate's share to reach the minimum."""
    # Imported here: of the canary steps only this one reads a dataset, and the evaluation
    # package (scorers, model scorers, providers) would add to every canary handler's cold start.
    from modelgate.evaluation.dataset import parse_dataset

    fn, alias = target(ctx)
    assert ctx.policy is not None and ctx.step is not None
    body = deps.read_artifact(ctx.dataset_key or "", None, error=DatasetInvalid, what=f"dataset of {ctx.service}")
    cases = parse_dataset(body.decode("utf-8"))
    wanted = min(2000, int(ctx.policy.min_canary_invocations / max(ctx.step.weight, 0.01)) + 1)
    errors = sum(lambda_alias.invoke_alias(deps.lambda_, fn, alias, cases[i % len(cases)].inputs) for i in range(wanted))
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
        if error_code(exc) not in TASK_GONE_CODES:
            raise
        return {"alarm": alarm_name, "release_id": release_id, "action": "none", "why": "task already ended"}
    logger.info("bake failed by alarm", extra={"release_id": release_id, "alarm": alarm_name})
    return {"alarm": alarm_name, "release_id": release_id, "action": "bake failed"}


def return_canary_traffic(deps: Deps, ctx: ReleaseContext) -> str:
    """If the alias routes anything to this release's candidate, give it back to live."""
    if not (ctx.function_name and ctx.alias and ctx.candidate_version and ctx.live_version):
        return ""
    version, weights = lambda_alias.alias_state(deps.lambda_, ctx.function_name, ctx.alias)
    if version == ctx.candidate_version or ctx.candidate_version in weights:
        lambda_alias.point_alias(deps.lambda_, ctx.function_name, ctx.alias, ctx.live_version)
        return f"{ctx.function_name}:{ctx.alias} returned to version {ctx.live_version}"
    return ""


def cleanup_canary(deps: Deps, ctx: ReleaseContext) -> None:
    """Delete the release's canary alarms and forget who owned them (idempotent)."""
    alarms.delete_alarms(deps.cloudwatch, ctx.canary_alarms)
    for name in ctx.canary_alarms:
        deps.ledger.delete_alarm_owner(name)
