"""Results and their comparison: per-side metrics and the paired candidate-vs-live deltas.

``build_report`` turns per-case results into per-side metrics and the paired comparison,
a pure function: evaluation shards merge by concatenating their results.

Accuracy is the weight-averaged score over all cases; a call that raised scores 0 and is
also counted in ``error_rate``, so a broken candidate can't hide behind "no answer".
Latency percentiles and cost are over successful calls only: a fast failure must not make
a broken candidate look fast or cheap. Throttled cases are left out on every side, so the
comparison stays paired.

**Repeats** (policy ``repeats: k``): each case runs k times per side. The case, not the
call, is the unit of every paired statistic: a case's score is its mean over its repeats
(its pass rate), its error rate the share of its calls that failed, its latency the median
of its successful calls and its cost their mean. The bootstrap then resamples cases with
all their repeats (a cluster bootstrap: with k calls per case the mean over the calls of
the resampled cases is the mean of their per-case means), and the paired test is the
exact sign test on the per-case pass-rate differences: distribution-free (a pass rate
over a few repeats is far from normal, so no paired t), exact at any n (no Wilcoxon
normal approximation, and Wilcoxon's ranks of differences bunched on a few values of
1/k are mostly ties), and at k = 1 it is exactly the McNemar test the gate has always used.
Counting each repeat as an independent case instead would shrink the interval by up to
sqrt(k) for evidence that is not there (repeats of one case are correlated).
"""

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from modelgate import stats

# The sides' names and their one-line format live in the package (light: no result model), imported
# from here by many callers.
from modelgate.evaluation import CANDIDATE, LIVE, format_side  # noqa: F401
from modelgate.evaluation.judges import JudgeRun

# One call's result lives in its own module: EvaluateShard and SubmitBatch record results without
# building a report (none of the models below). Re-exported here for the report's readers.
from modelgate.evaluation.results import CaseResult  # noqa: F401
from modelgate.stats import percentile

# --------------------------------------------------------------------------- results


PASS_SCORE = 0.5  # a call "passes" when it scores at least this (binary scorers: 1)


class SideMetrics(BaseModel):
    """One side's metrics over the scored cases (throttled cases are left out).

    ``n`` counts cases; ``calls`` counts calls (n x repeats); ``errors`` and ``error_rate``
    are over calls."""

    model_config = ConfigDict(frozen=True)

    n: int
    calls: int = 0
    errors: int
    accuracy: float
    error_rate: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    cost_per_request_usd: float | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    throttled: int = 0
    # How many timed calls the latency percentiles are over, when not every call was timed (a
    # batch evaluation's on-demand sample: modelgate.evaluation.batch.with_sample_latency).
    latency_samples: int | None = None


def side_metrics(results: list[CaseResult], *, throttled: int = 0) -> SideMetrics:
    """Over every call; with repeats each case's calls share its weight, so accuracy is the
    weighted mean of the per-case pass rates."""
    ok = [r for r in results if r.error is None]
    total_weight = sum(r.weight for r in results)
    latencies = [r.latency_ms for r in ok]
    costs = [r.cost_usd for r in ok if r.cost_usd is not None]
    input_tokens = sum(r.input_tokens for r in ok)
    output_tokens = sum(r.output_tokens for r in ok)
    return SideMetrics(
        n=len({r.case_id for r in results}),
        calls=len(results),
        errors=len(results) - len(ok),
        accuracy=sum(r.weight * r.score for r in results) / total_weight if results else 0.0,
        error_rate=(len(results) - len(ok)) / len(results) if results else 0.0,
        latency_p50_ms=percentile(latencies, 50) if latencies else None,
        latency_p95_ms=percentile(latencies, 95) if latencies else None,
        latency_p99_ms=percentile(latencies, 99) if latencies else None,
        cost_per_request_usd=sum(costs) / len(costs) if costs else None,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        throttled=throttled,
    )


# --------------------------------------------------------------------------- comparison

Interval = tuple[float, float]


class DeltaEstimate(BaseModel):
    """Candidate minus live for one metric, with its paired bootstrap 95% interval."""

    model_config = ConfigDict(frozen=True)

    candidate: float | None
    live: float | None
    delta: float | None
    ci95: Interval | None
    ratio: float | None = None  # candidate / live - 1 (latency, cost)
    ratio_ci95: Interval | None = None


class PairedTest(BaseModel):
    """Exact test on per-case outcomes: b = cases live scored higher, c = the candidate did.

    "exact McNemar" when every score is 0 or 1, else the exact sign test on the per-case
    score differences (the same binomial test; ties carry no information).
    """

    model_config = ConfigDict(frozen=True)

    method: Literal["exact McNemar", "exact sign test"]
    b: int
    c: int
    p_value: float


class Comparison(BaseModel):
    """Candidate vs live over the cases both answered (paired by case id)."""

    model_config = ConfigDict(frozen=True)

    n_pairs: int
    repeats: int = 1
    confidence: float = 0.95
    resamples: int
    seed: int
    accuracy: DeltaEstimate
    error_rate: DeltaEstimate
    latency_p95_ms: DeltaEstimate
    cost_per_request_usd: DeltaEstimate
    paired_test: PairedTest


def compare(
    candidate: Sequence[CaseResult],
    live: Sequence[CaseResult],
    *,
    resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = stats.DEFAULT_SEED,
) -> Comparison | None:
    """Paired comparison of two sides' scored results; ``None`` if they share no case.

    Pairs are taken in case-id order, so the same results give the same bootstrap (and
    the same interval) however shards were concatenated. Accuracy uses the candidate's
    case weights; the exact test counts cases (a weight changes how much a case matters,
    not whether it got better or worse).
    """
    by_id = per_case(live)
    cand_cases = per_case(candidate)
    pairs = sorted(
        ((c, by_id[case_id]) for case_id, c in cand_cases.items() if case_id in by_id),
        key=lambda p: p[0].case_id,
    )
    if not pairs:
        return None
    cs = [c.score for c, _ in pairs]
    ls = [lv.score for _, lv in pairs]
    weights = [c.weight for c, _ in pairs]
    repeats = max(max(c.calls, lv.calls) for c, lv in pairs)

    def errors(side: int) -> list[float]:
        return [p[side].error_share for p in pairs]

    def latencies(side: int) -> list[float | None]:
        return [p[side].latency_ms for p in pairs]

    def costs(side: int) -> list[float | None]:
        return [p[side].cost_usd for p in pairs]

    cand_p95, live_p95 = (stats.resampled_percentile(latencies(s), 95) for s in (0, 1))
    cand_cost, live_cost = (stats.resampled_mean(costs(s)) for s in (0, 1))
    cand_err, live_err = errors(0), errors(1)
    statistics: dict[str, stats.Statistic] = {
        "accuracy": stats.weighted_mean_delta(cs, ls, weights),
        "error_rate": stats.weighted_mean_delta(cand_err, live_err),
        "latency": stats.difference(cand_p95, live_p95),
        "latency_ratio": stats.relative_change(cand_p95, live_p95),
        "cost": stats.difference(cand_cost, live_cost),
        "cost_ratio": stats.relative_change(cand_cost, live_cost),
    }
    n = len(pairs)
    everything = list(range(n))
    point = {name: statistic(everything) for name, statistic in statistics.items()}
    ci = stats.paired_bootstrap(n, statistics, resamples=resamples, seed=seed)
    worse, better = stats.discordant_pairs(cs, ls)
    binary = all(s in (0.0, 1.0) for s in cs + ls)
    return Comparison(
        n_pairs=n,
        repeats=repeats,
        resamples=resamples,
        seed=seed,
        accuracy=DeltaEstimate(
            candidate=stats.weighted_mean(cs, weights),
            live=stats.weighted_mean(ls, weights),
            delta=point["accuracy"],
            ci95=ci["accuracy"],
        ),
        error_rate=DeltaEstimate(
            candidate=stats.weighted_mean(cand_err),
            live=stats.weighted_mean(live_err),
            delta=point["error_rate"],
            ci95=ci["error_rate"],
        ),
        latency_p95_ms=DeltaEstimate(
            candidate=cand_p95(everything),
            live=live_p95(everything),
            delta=point["latency"],
            ci95=ci["latency"],
            ratio=point["latency_ratio"],
            ratio_ci95=ci["latency_ratio"],
        ),
        cost_per_request_usd=DeltaEstimate(
            candidate=cand_cost(everything),
            live=live_cost(everything),
            delta=point["cost"],
            ci95=ci["cost"],
            ratio=point["cost_ratio"],
            ratio_ci95=ci["cost_ratio"],
        ),
        paired_test=PairedTest(
            method="exact McNemar" if binary else "exact sign test",
            b=worse,
            c=better,
            p_value=stats.exact_sign_test(worse, better),
        ),
    )


class CaseOutcome(NamedTuple):
    """One side's calls on one case, as one unit (see "Repeats" in the module docstring)."""

    case_id: str
    weight: float
    tags: tuple[str, ...]
    scorer: str | None
    calls: int
    score: float  # mean over the calls: the pass rate for binary scorers
    passes: int  # calls scoring at least PASS_SCORE
    error_share: float
    latency_ms: float | None  # median of the successful calls
    cost_usd: float | None  # mean of the successful calls that report one

    @property
    def flipped(self) -> bool:
        """The outcome changed between repeats (some passed, some didn't)."""
        return 0 < self.passes < self.calls


def per_case(results: Sequence[CaseResult]) -> dict[str, CaseOutcome]:
    """One side's results grouped by case (a case id appears once per repeat)."""
    grouped: dict[str, list[CaseResult]] = {}
    for r in results:
        grouped.setdefault(r.case_id, []).append(r)
    out = {}
    for case_id, rs in grouped.items():
        ok = [r for r in rs if r.error is None]
        costs = [r.cost_usd for r in ok if r.cost_usd is not None]
        out[case_id] = CaseOutcome(
            case_id=case_id,
            weight=rs[0].weight,
            tags=tuple(rs[0].tags),
            scorer=rs[0].scorer,
            calls=len(rs),
            score=sum(r.score for r in rs) / len(rs),
            passes=sum(r.score >= PASS_SCORE for r in rs),
            error_share=(len(rs) - len(ok)) / len(rs),
            latency_ms=percentile([r.latency_ms for r in ok], 50) if ok else None,
            cost_usd=sum(costs) / len(costs) if costs else None,
        )
    return out


class Consistency(BaseModel):
    """How one side's outcomes hold up over repeats (policy ``repeats: k``).

    ``pass_rate``: the mean per-case pass rate; ``pass_all_k`` ("pass^k"): the share of
    cases that passed in every one of their k repeats, what a user asking k times sees;
    ``flip_rate``: the share of cases whose outcome changed between repeats."""

    model_config = ConfigDict(frozen=True)

    repeats: int
    cases: int
    pass_rate: float
    pass_all_k: float
    flip_rate: float
    flipped_case_ids: list[str]


def consistency(results: Sequence[CaseResult]) -> Consistency | None:
    cases = per_case(results)
    if not cases:
        return None
    outcomes = sorted(cases.values(), key=lambda c: c.case_id)
    n = len(outcomes)
    return Consistency(
        repeats=max(c.calls for c in outcomes),
        cases=n,
        pass_rate=sum(c.passes / c.calls for c in outcomes) / n,
        pass_all_k=sum(c.passes == c.calls for c in outcomes) / n,
        flip_rate=sum(c.flipped for c in outcomes) / n,
        flipped_case_ids=[c.case_id for c in outcomes if c.flipped],
    )


# --------------------------------------------------------------------------- report


class EvaluationReport(BaseModel):
    """Full report (per-case results: for S3) with a small ``summary()`` (for state)."""

    model_config = ConfigDict(frozen=True)

    n_cases: int
    percentile_method: Literal["linear"] = "linear"
    sides: dict[str, SideMetrics]
    results: list[CaseResult]
    comparison: Comparison | None = None
    throttled_case_ids: list[str] = Field(default_factory=list)
    repeats: int = 1
    consistency: dict[str, Consistency] = Field(default_factory=dict)
    judge: JudgeRun | None = None

    def summary(self) -> dict[str, Any]:
        """Per-side metrics, candidate-minus-live deltas, their 95% intervals and the paired
        test: small enough for Step Functions state and the ledger.

        ``deltas`` holds numbers only (readers format each as one); the intervals are in
        ``deltas_ci95`` under the same keys, as ``[low, high]``.
        """
        out: dict[str, Any] = {
            "n_cases": self.n_cases,
            "sides": {name: m.model_dump() for name, m in self.sides.items()},
            "deltas": None,
            "deltas_ci95": None,
            "paired_test": None,
            "throttled_cases": len(self.throttled_case_ids),
        }
        cand, live = self.sides.get(CANDIDATE), self.sides.get(LIVE)
        if cand is not None and live is not None:
            out["deltas"] = {
                "accuracy_delta": cand.accuracy - live.accuracy,
                "error_rate_delta": cand.error_rate - live.error_rate,
                "p95_latency_delta_ms": _delta(cand.latency_p95_ms, live.latency_p95_ms),
                "cost_delta_usd": _delta(cand.cost_per_request_usd, live.cost_per_request_usd),
            }
        if (comparison := self.comparison) is not None:
            out["deltas_ci95"] = {
                "accuracy_delta": _pair(comparison.accuracy.ci95),
                "error_rate_delta": _pair(comparison.error_rate.ci95),
                "p95_latency_delta_ms": _pair(comparison.latency_p95_ms.ci95),
                "cost_delta_usd": _pair(comparison.cost_per_request_usd.ci95),
            }
            out["paired_test"] = comparison.paired_test.model_dump()
        return out


def _pair(interval: Interval | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def build_report(
    results: list[CaseResult],
    *,
    resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = stats.DEFAULT_SEED,
    judge: JudgeRun | None = None,
) -> EvaluationReport:
    """Metrics per side and the paired comparison (merge shards by concatenating results;
    their ``judge`` runs by ``JudgeRun.merge``).

    A case throttled on any side is left out on every side (see the module docstring).
    """
    throttled_ids = sorted({r.case_id for r in results if r.throttled})
    excluded = set(throttled_ids)
    by_side: dict[str, list[CaseResult]] = {}
    throttled_by_side: dict[str, int] = {}
    for result in results:
        by_side.setdefault(result.side, [])
        if result.throttled:
            throttled_by_side[result.side] = throttled_by_side.get(result.side, 0) + 1
        elif result.case_id not in excluded:
            by_side[result.side].append(result)
    comparison = None
    if CANDIDATE in by_side and LIVE in by_side:
        comparison = compare(by_side[CANDIDATE], by_side[LIVE], resamples=resamples, seed=seed)
    return EvaluationReport(
        n_cases=len({r.case_id for r in results if r.case_id not in excluded}),
        sides={
            side: side_metrics(rs, throttled=throttled_by_side.get(side, 0))
            for side, rs in sorted(by_side.items())
        },
        results=results,
        comparison=comparison,
        throttled_case_ids=throttled_ids,
        repeats=max((r.repeat + 1 for r in results), default=1),
        consistency={
            side: c for side, rs in sorted(by_side.items()) if (c := consistency(rs)) is not None
        },
        judge=judge,
    )

