"""Evaluation orchestration: plan the shards, run one shard, reduce them into one report, gate it.

Shards run as a Distributed Map in the state machine (each within one Lambda invocation's
limits); candidate and live always evaluate the same shard's cases in the same invocation.
"""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING

from modelgate.adapters import lambda_alias
from modelgate.adapters import s3 as artefacts
from modelgate.adapters.s3 import put_html, put_json, read_current
from modelgate.contract import (
    EvalPlan,
    EvaluationSummary,
    ReleaseContext,
    Shard,
    ShardResult,
)
from modelgate.errors import DatasetInvalid, EvaluationFailed
from modelgate.evaluation import CANDIDATE, LIVE
from modelgate.pipeline.deps import Deps, target

if TYPE_CHECKING:
    from modelgate.evaluation.comparison import EvaluationReport
    from modelgate.evaluation.dataset import DatasetCase
    from modelgate.evaluation.judges import JudgeRun
    from modelgate.inference import LoadedRelease


def report_key(ctx: ReleaseContext) -> str:
    return f"reports/{ctx.service}/{ctx.release_id}/evaluation.json"


def _shard_key(ctx: ReleaseContext, index: int) -> str:
    return report_key(ctx).rsplit("/", 1)[0] + f"/shards/{index:05d}.json"


def plan_evaluation(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Pin the dataset's object version, check every line, and cut it into shards."""
    # The dataset's parser (and through it every scorer) is this step's and EvaluateShard's alone.
    from modelgate.evaluation import batch
    from modelgate.evaluation.dataset import parse_dataset

    fn, _ = target(ctx)
    assert ctx.policy is not None and ctx.live_version
    dataset_key = ctx.dataset_key or ""
    body, dataset_version = read_current(
        deps.s3, deps.settings.artifact_bucket, dataset_key, error=DatasetInvalid, what=f"dataset of {ctx.service}",
        max_bytes=artefacts.MAX_DATASET_BYTES,
    )
    cases = parse_dataset(body.decode("utf-8"))
    size = ctx.policy.eval_shard_size
    live_configured = lambda_alias.is_configured(deps.lambda_, fn, ctx.live_version)
    budget = _check_budget(deps, ctx, cases, live_configured) if ctx.policy.max_cost_usd is not None else ""
    if batch.uses_batch(ctx.policy.evaluation, len(cases)):
        batch.check_batch_plan(ctx.policy, len(cases))
        plan = EvalPlan(
            dataset_key=dataset_key, dataset_version=dataset_version, n_cases=len(cases),
            live_configured=live_configured, shards=[], mode="batch",
        )
        how = (
            f"{len(cases)} cases by Bedrock batch inference (one job per side), "
            f"{min(ctx.policy.evaluation.latency_sample, len(cases))} of them on demand for latency"
        )
    else:
        plan = EvalPlan(
            dataset_key=dataset_key,
            dataset_version=dataset_version,
            n_cases=len(cases),
            live_configured=live_configured,
            shards=[
                Shard(index=i, start=start, end=min(start + size, len(cases)))
                for i, start in enumerate(range(0, len(cases), size))
            ],
        )
        how = f"{len(cases)} cases in {len(plan.shards)} shard(s) of at most {size}"
    deps.ledger.record(
        ctx.release_id, "EvaluationPlanned", f"{how}; dataset version {plan.dataset_version}" + budget
    )
    return ctx.model_copy(update={"eval_plan": plan})


def _check_budget(deps: Deps, ctx: ReleaseContext, cases: list[DatasetCase], live_configured: bool) -> str:
    """The policy's ``max_cost_usd`` against the evaluation's estimated cost, before any call:
    ``OverBudget`` (the release ends Failed, the reason in the ledger) or the estimate's text.

    Each side is priced with its own model and prompts: the candidate's release as Validate
    checked it, live's as its version pins it (manifest, prompt pin, prompt files)."""
    from modelgate.evaluation.cost import check_budget, estimate_cost

    assert ctx.policy is not None and ctx.policy.max_cost_usd is not None
    sides = side_releases(deps, ctx, live_configured)
    # Repeats per case per side, where the policy has them (issue #11's repeats).
    estimate = estimate_cost(cases, sides, repeats=ctx.policy.repeats)
    check_budget(estimate, ctx.policy.max_cost_usd)
    return f"; {estimate.lines()[-1]}, within max_cost_usd ${ctx.policy.max_cost_usd:.4f}"


def side_releases(deps: Deps, ctx: ReleaseContext, live_configured: bool) -> dict[str, LoadedRelease]:
    """Each side's release as it serves: the candidate's upload as Validate checked it, live's as
    its version pins it (manifest, prompt pin, prompt files)."""
    from modelgate import inference

    bucket = deps.settings.artifact_bucket
    sides = {
        CANDIDATE: inference.load_release(
            deps.s3, bucket, ctx.artifact.key, ctx.artifact.version_id, ctx.prompt_versions
        )
    }
    if live_configured:
        fn, _ = target(ctx)
        pin = inference.read_pin(lambda_alias.version_environment(deps.lambda_, fn, ctx.live_version or ""))
        prompt_versions = inference.load_prompt_pin(deps.s3, bucket, pin)
        sides[LIVE] = inference.load_release(deps.s3, bucket, pin.key, pin.version, prompt_versions)
    return sides


def evaluate_shard(deps: Deps, ctx: ReleaseContext, shard: Shard) -> ShardResult:
    """One shard: its cases against the candidate and (when configured) the live version."""
    # The runner and the model scorers are this step's alone: imported here so that the
    # other evaluation handlers' cold start skips them (bench/cold_start.py).
    from modelgate.evaluation.dataset import parse_dataset
    from modelgate.evaluation.model_scorers import scoring_models_for
    from modelgate.evaluation.runner import run_cases

    fn, _ = target(ctx)
    assert ctx.policy is not None and ctx.candidate_version and ctx.live_version and ctx.eval_plan
    plan = ctx.eval_plan
    body = deps.read_artifact(
        plan.dataset_key, plan.dataset_version, error=DatasetInvalid, what=f"dataset of {ctx.service}",
        max_bytes=artefacts.MAX_DATASET_BYTES,
    )
    cases = parse_dataset(body.decode("utf-8"))[shard.start : shard.end]
    invokers = {CANDIDATE: partial(lambda_alias.invoke_version, deps.lambda_, fn, ctx.candidate_version)}
    if plan.live_configured:
        invokers[LIVE] = partial(lambda_alias.invoke_version, deps.lambda_, fn, ctx.live_version)
    # The shard's results and the judge's run, no report: ReduceEvaluation builds the one report
    # over every shard's results.
    run = run_cases(
        cases,
        invokers,
        concurrency=ctx.policy.eval_concurrency,
        rate_limit=ctx.policy.eval_rate_limit_rps,
        scoring_models=scoring_models_for(ctx.policy.scoring_models) if ctx.policy.scoring_models else None,
        repeats=ctx.policy.repeats,
    )
    key = _shard_key(ctx, shard.index)
    version = put_json(
        deps.s3,
        deps.settings.artifact_bucket,
        key,
        {
            "results": [r.model_dump(mode="json") for r in run.results],
            "judge": run.judge.model_dump(mode="json") if run.judge else None,
        },
    )
    return ShardResult(index=shard.index, key=key, version=version, cases=len(cases))


def reduce_evaluation(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Merge the shards' per-case results (``ctx.eval_shards``) into one report."""
    # The results' models and their statistics: ReduceEvaluation's, Gate's and EvaluateShard's (their
    # handlers load them at init), not PlanEvaluation's.
    from modelgate.evaluation.comparison import CaseResult, build_report
    from modelgate.evaluation.judges import JudgeRun

    assert ctx.eval_plan is not None and ctx.candidate_version
    plan, shards = ctx.eval_plan, ctx.eval_shards or []
    results: list[CaseResult] = []
    judge: JudgeRun | None = None
    for shard in sorted(shards, key=lambda s: s.index):
        body = deps.read_artifact(
            shard.key, shard.version, error=EvaluationFailed, what=f"results of shard {shard.index}",
            max_bytes=artefacts.MAX_RESULTS_BYTES,
        )
        written = json.loads(body)
        if isinstance(written, list):  # a shard written before judges were recorded
            written = {"results": written, "judge": None}
        results += [CaseResult.model_validate(r) for r in written["results"]]
        if written.get("judge") is not None:
            run = JudgeRun.model_validate(written["judge"])
            judge = run if judge is None else judge.merge(run)
    if len({r.case_id for r in results}) != plan.n_cases:
        raise EvaluationFailed(
            f"shards returned {len({r.case_id for r in results})} cases, the dataset has {plan.n_cases}"
        )
    report = build_report(results, judge=judge)
    summary = record_evaluation(deps, ctx, plan, report, shards=len(shards), how=f"in {len(shards)} shard(s)")
    return ctx.model_copy(update={"evaluation": summary, "eval_plan": None, "eval_shards": None})


def record_evaluation(
    deps: Deps, ctx: ReleaseContext, plan: EvalPlan, report: EvaluationReport, *, shards: int, how: str,
    note: str = "",
) -> EvaluationSummary:
    """Store the release's evaluation report and record it Evaluated with the report's summary
    (the on-demand shards' reduce and the batch evaluation's); the summary. ``how``: how the
    cases were answered, for the ledger ("in 4 shard(s)"); ``note``: what follows the versions."""
    key = report_key(ctx)
    version = put_json(deps.s3, deps.settings.artifact_bucket, key, report.model_dump_json())
    summary = EvaluationSummary(
        **report.summary(),
        report_key=key,
        report_version=version,
        dataset_key=plan.dataset_key,
        dataset_version=plan.dataset_version,
        shards=shards,
        baseline="live" if plan.live_configured else "none (first release)",
    )
    deps.ledger.record(
        ctx.release_id,
        "Evaluated",
        f"{plan.n_cases} cases {how} against candidate {ctx.candidate_version}"
        + (f" and live {ctx.live_version}" if plan.live_configured else " (no configured live version)")
        + note,
        evaluation=summary,
    )
    return summary


def gate(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """The evaluation gate: the report against the service's policy; ``GateFailed`` names
    every failed criterion with its numbers. The HTML report is written either way."""
    from modelgate.evaluation.comparison import EvaluationReport
    from modelgate.evaluation.gate import evaluate_gate  # this step's alone (cold start of the others)
    from modelgate.evaluation.report import render_html

    assert ctx.policy is not None and ctx.evaluation is not None
    summary = ctx.evaluation
    body = deps.read_artifact(
        summary.report_key, summary.report_version, error=EvaluationFailed, what="evaluation report",
        max_bytes=artefacts.MAX_RESULTS_BYTES,
    )
    report = EvaluationReport.model_validate_json(body)
    verdict = evaluate_gate(report, ctx.policy)
    html_key = summary.report_key.rsplit("/", 1)[0] + "/evaluation.html"
    put_html(
        deps.s3,
        deps.settings.artifact_bucket,
        html_key,
        render_html(report, verdict, title=f"{ctx.service} release {ctx.release_id}", policy=ctx.policy),
    )
    summary = summary.model_copy(update={"report_html_key": html_key})
    if not verdict.passed:
        deps.ledger.record(ctx.release_id, "GateChecked", "gate failed", gate=verdict, evaluation=summary)
        verdict.raise_if_failed()
    deps.ledger.record(ctx.release_id, "GatePassed", "every gate criterion passed", gate=verdict, evaluation=summary)
    return ctx.model_copy(update={"gate": verdict, "evaluation": summary})
