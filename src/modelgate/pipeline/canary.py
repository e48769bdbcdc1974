"""Canary: shift traffic for a rollout step, bake, judge the step, send synthetic traffic,
react to alarms; and hand canary traffic back when a release is cancelled."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from botocore.exceptions import ClientError

from modelgate import canary_judge, clock
from modelgate.adapters import alarms, lambda_alias
from modelgate.adapters import s3 as artefacts
from modelgate.adapters.metrics import collect_window
from modelgate.alarm_thresholds import AlarmThreshold, LiveLatency, resolve_threshold
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
from modelgate.pipeline import fencing
from modelgate.pipeline.deps import Deps, target
from modelgate.policy import EVALUATED_PERCENTILES
from modelgate.rollout import format_weight


def shift_traffic(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Move the alias to the rollout step in ctx.step (the first step when none yet).

    The first step creates the canary alarms (on the candidate alone). Every step, the
    final bake too, leaves the alias weighted: stable as its version, the candidate as its
    additional version at the step's weight (99.99% at the final bake, rollout.py says why:
    the alarms watch ``ExecutedVersion``, which AWS documents for weighted aliases only).
    Only Promote points the alias at the candidate alone.
    """
    fn, alias = target(ctx)
    assert ctx.policy is not None and ctx.candidate_version and ctx.live_version
    step = ctx.step or ctx.policy.step_plan()[0]
    started = clock.now().isoformat()
    fence = fencing.fence_of(deps, ctx)  # every alarm and alias change below holds the lease
    names = ctx.canary_alarms
    thresholds: list[AlarmThreshold] = []
    if not names:
        # Thresholds first: one that can't be set (live's latency unknown) ends the release
        # here, before any alarm exists or any traffic moves.
        thresholds = canary_thresholds(deps, ctx)
        names = fencing.put_alarms(fence, ctx, thresholds)
    candidate, stable = ctx.candidate_version, ctx.live_version
    # Every step, the final bake too, leaves the alias weighted (rollout.FINAL_BAKE_WEIGHT):
    # only Promote points it at the candidate alone.
    fence.move_alias(
        fn, alias, lambda *_: lambda_alias.canary_state(stable, candidate, step.weight),
        f"the final bake of {ctx.release_id}" if step.is_final else f"step {step.index + 1} of {ctx.release_id}",
    )
    routed = f"{format_weight(step.weight)} of {fn}:{alias} to version {ctx.candidate_version}"
    deps.ledger.record(
        ctx.release_id,
        "Watching" if step.is_final else "Canary",
        (
            f"final bake: {routed}, {format_weight(1.0 - step.weight)} still on version {ctx.live_version} "
            f"(the alias stays weighted until promotion); watched {step.bake_seconds} s with rollback armed"
            if step.is_final
            else f"step {step.index + 1}: {routed}"
        )
        + "".join(f"; alarm {t.alarm}: {t.explanation}" for t in thresholds),
        canary_alarms=names,
        canary_started_at=ctx.canary_started_at or started,
        step=step,
        canary_thresholds=[t.model_dump(mode="json") for t in thresholds] or None,
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


def canary_thresholds(deps: Deps, ctx: ReleaseContext) -> list[AlarmThreshold]:
    """Each canary alarm's threshold: fixed, or from live's measured latency (policy.py's
    LiveRelativeThreshold says which measurement wins and what happens without one).

    Live's latency is read once per (statistic, window) from CloudWatch, then taken from
    the evaluation summary when CloudWatch has too few of live's calls.
    """
    fn, alias = target(ctx)
    assert ctx.policy is not None
    measured: dict[tuple[str, int], LiveLatency] = {}
    thresholds = []
    for spec in ctx.policy.canary_alarms:
        sources: list[LiveLatency] = []
        if spec.relative_to_live is not None:
            key = (spec.statistic, spec.relative_to_live.window_seconds)
            if key not in measured:
                measured[key] = alarms.live_latency(
                    deps.cloudwatch, function_name=fn, alias=alias, statistic=spec.statistic,
                    window_seconds=spec.relative_to_live.window_seconds,
                )
            sources = [measured[key], _evaluated_latency(ctx, "live", spec.statistic)]
            candidate = _evaluated_latency(ctx, "candidate", spec.statistic)
            thresholds.append(resolve_threshold(spec, sources, candidate))
        else:
            thresholds.append(resolve_threshold(spec, []))
    return thresholds


def _evaluated_latency(ctx: ReleaseContext, side_name: str, statistic: str) -> LiveLatency:
    """One side's latency as this release's evaluation measured it (same cases, each side's
    version invoked by the evaluation)."""
    side = (ctx.evaluation.sides.get(side_name) if ctx.evaluation else None) or {}
    value = side.get(f"latency_{statistic}_ms") if statistic in EVALUATED_PERCENTILES else None
    succeeded = int(side.get("n", 0)) - int(side.get("errors", 0))
    if side.get("latency_samples") is not None:  # a batch evaluation: latency from its on-demand sample
        succeeded = int(side["latency_samples"])
    version = ctx.live_version if side_name == "live" else ctx.candidate_version
    source = "evaluation" if side_name == "live" else "candidate_evaluation"
    if value is None:
        why = (
            f"this release's evaluation did not measure {side_name}" if not side
            else f"the evaluation measures p50, p95 and p99, not {statistic}" if statistic not in EVALUATED_PERCENTILES
            else f"no {side_name} call succeeded in the evaluation"
        )
        return LiveLatency(source=source, value_ms=0.0, samples=0, detail=why)
    return LiveLatency(
        source=source, value_ms=round(float(value), 3), samples=max(succeeded, 0),
        detail=f"{statistic} of {succeeded} successful calls of {side_name} version {version} in the evaluation",
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
    At the final bake stable keeps 0.01% of the traffic, too little to compare with: the
    alarms (on the candidate's ``ExecutedVersion``, published there as the alias is still
    weighted) decide.
    """
    fn, alias = target(ctx)
    assert ctx.policy is not None and ctx.candidate_version and ctx.live_version
    step = ctx.step or ctx.policy.step_plan()[0]
    deps.ledger.take_token(ctx.release_id, "bake")
    firing = alarms.alarms_firing(deps.cloudwatch, ctx.canary_alarms)
    if firing:
        raise CanaryAlarm(_alarm_text(firing))
    if not step.is_final:
        # The window ends metrics_delay_seconds before now, at a whole minute: the metrics
        # of the last minute(s) are still arriving, and a partial minute would under-count.
        end = _whole_minute(clock.now() - timedelta(seconds=ctx.policy.metrics_delay_seconds))
        since = ctx.step_started_at or ctx.canary_started_at
        start = datetime.fromisoformat(since) if since else end
        candidate, stable = collect_window(
            deps.cloudwatch,
            function_name=fn,
            alias=alias,
            candidate_version=ctx.candidate_version,
            stable_version=ctx.live_version,
            start=min(start, end),
            end=end,
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


# Kept back from the function's remaining time for the ledger write and the return: the
# sender never runs into its Lambda timeout ("Lambda context object in Python":
# get_remaining_time_in_millis, https://docs.aws.amazon.com/lambda/latest/dg/python-context.html).
SYNTHETIC_RESERVE_MS = 5_000
MAX_SYNTHETIC_REQUESTS = 2_000


def send_synthetic(deps: Deps, ctx: ReleaseContext, remaining_ms: Callable[[], int]) -> ReleaseContext:
    """Not enough canary traffic and the policy says synthetic: call the alias with inputs
    from the evaluation dataset, enough for the candidate's share to reach the minimum.

    The calls go out ``policy.synthetic_concurrency`` at a time (a bounded pool: it is the
    production alias) and stop at the time budget, ``remaining_ms()`` (the Lambda context's
    remaining time) less ``SYNTHETIC_RESERVE_MS``: no call starts after it, and calls still
    running then are counted as unfinished, not waited for. The ledger says how many were
    sent, failed (the function's error), could not be made (Invoke raised) or were still
    running, and whether the budget cut the sending short. If every call that ended raised
    (say AccessDenied), that error is raised: no traffic is not a pass.
    """
    # Imported here: of the canary steps only this one reads a dataset, and the evaluation
    # package (scorers, model scorers, providers) would add to every canary handler's cold start.
    from modelgate.evaluation.dataset import parse_dataset

    fn, alias = target(ctx)
    assert ctx.policy is not None and ctx.step is not None
    body = deps.read_artifact(ctx.dataset_key or "", None, error=DatasetInvalid, what=f"dataset of {ctx.service}",
                              max_bytes=artefacts.MAX_DATASET_BYTES)
    cases = parse_dataset(body.decode("utf-8"))
    wanted = min(MAX_SYNTHETIC_REQUESTS, int(ctx.policy.min_canary_invocations / max(ctx.step.weight, 0.01)) + 1)
    workers = min(ctx.policy.synthetic_concurrency, wanted)

    def budget_s() -> float:
        return (remaining_ms() - SYNTHETIC_RESERVE_MS) / 1000.0

    sent = failed = 0
    raised: list[BaseException] = []
    in_flight: set[Future[bool]] = set()
    stopped = False

    def collect(done: set[Future[bool]]) -> None:
        nonlocal failed
        for future in done:
            error = future.exception()
            if error is not None:
                raised.append(error)
            elif future.result():
                failed += 1

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synthetic")
    try:
        for i in range(wanted):
            while len(in_flight) >= workers and budget_s() > 0:
                done, in_flight = wait(in_flight, timeout=budget_s(), return_when=FIRST_COMPLETED)
                collect(done)
            if budget_s() <= 0:
                stopped = True
                break
            case = cases[i % len(cases)]
            in_flight.add(pool.submit(lambda_alias.invoke_alias, deps.lambda_, fn, alias, case.inputs))
            sent += 1
        if in_flight and budget_s() > 0:
            done, in_flight = wait(in_flight, timeout=budget_s())
            collect(done)
        done = {f for f in in_flight if f.done()}
        collect(done)
        in_flight -= done
    finally:
        # Calls still running at the deadline are not waited for (their results are unknown).
        pool.shutdown(wait=False, cancel_futures=True)
    ended = sent - len(in_flight)
    if raised and len(raised) == ended:
        raise raised[0]
    parts = [f"{failed} failed"]
    if raised:
        parts.append(f"{len(raised)} not made: {type(raised[0]).__name__}: {raised[0]}")
    if in_flight:
        parts.append(f"{len(in_flight)} still running at the time budget")
    detail = (
        f"{sent} of {wanted} synthetic requests through {fn}:{alias}, {workers} at a time ({'; '.join(parts)})"
    )
    if stopped:
        detail += (
            f"; stopped at the time budget (the function's remaining time less {SYNTHETIC_RESERVE_MS // 1000} s)"
        )
    deps.ledger.record(ctx.release_id, "SyntheticTraffic", detail)
    logger.info(
        "synthetic traffic sent",
        extra={"sent": sent, "wanted": wanted, "failed": failed, "not_made": len(raised),
               "unfinished": len(in_flight), "stopped_by_budget": stopped},
    )
    return ctx


def _whole_minute(moment: datetime) -> datetime:
    """The start of the minute ``moment`` is in (Lambda metrics have 1-minute resolution)."""
    return moment - timedelta(seconds=moment.second, microseconds=moment.microsecond)


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
        orphaned = fencing.delete_if_orphaned(deps, alarm_name, owner)
        if orphaned:
            return {"alarm": alarm_name, "release_id": release_id, "action": "orphan deleted", "why": orphaned}
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


def return_canary_traffic(deps: Deps, ctx: ReleaseContext, fence: fencing.Fence) -> str:
    """Take the release's candidate out of the alias (back to the version that was live if
    the candidate serves it all), under ``fence`` (the canceller's lease). The alias is
    updated even when the candidate has no share: that changes its RevisionId, so an update
    of the cancelled release still in flight (read before) is refused (fencing.py)."""
    if not (ctx.function_name and ctx.alias):
        return ""
    candidate, live = ctx.candidate_version, ctx.live_version

    def without_candidate(version: str, weights: dict[str, float]) -> lambda_alias.AliasState:
        if candidate and version == candidate and live:
            return live, {}
        return version, {v: w for v, w in weights.items() if v != candidate}

    change = fence.move_alias(ctx.function_name, ctx.alias, without_candidate, f"cancelling {ctx.release_id}")
    if change.before == change.after:
        return ""
    return f"{ctx.function_name}:{ctx.alias} returned to {fencing.describe(change.after)}"


def cleanup_canary(deps: Deps, ctx: ReleaseContext) -> None:
    """Delete the release's canary alarms and forget who owned them (idempotent)."""
    alarms.delete_alarms(deps.cloudwatch, ctx.canary_alarms)
    for name in ctx.canary_alarms:
        deps.ledger.delete_alarm_owner(name)
