"""The evaluation gate: a report and the service's policy in, one verdict per criterion out.

Not to be confused with the canary judge (``modelgate.canary_judge``), which compares
candidate and stable traffic during a rollout step.
"""

from __future__ import annotations

import math

from modelgate.contract import Criterion, GateVerdict, Verdict
from modelgate.errors import (
    EvaluationFailed,
)
from modelgate.evaluation.comparison import (
    CANDIDATE,
    LIVE,
    Comparison,
    DeltaEstimate,
    EvaluationReport,
    Interval,
    SideMetrics,
    compare,
)
from modelgate.policy import ReleasePolicy

_EPSILON = 1e-9  # float slack so 0.80 vs 0.85 - 0.05 is not a failure by rounding

SIGNIFICANCE = 0.05


def decide(point: float, interval: Interval | None, limit: float, significant: bool) -> Verdict:
    """The three-way rule for "how much worse may the candidate be" criteria.

    ``point`` and ``interval`` measure how much worse the candidate is (a drop, an
    increase), ``limit`` is what the policy allows, ``significant`` says whether the
    candidate is measurably worse at all:

    * pass: within the limit, and either confidently so (the interval ends within it) or
      with no evidence of being worse at all (a wobble);
    * fail: beyond the limit, and either confidently so (the interval starts beyond it)
      or measurably worse;
    * inconclusive otherwise: beyond the limit but within noise (add cases), or measurably
      worse by an amount whose interval reaches past the limit (add cases).
    """
    lo, hi = interval if interval is not None else (-math.inf, math.inf)
    if point <= limit + _EPSILON:
        return "pass" if hi <= limit + _EPSILON or not significant else "inconclusive"
    return "fail" if lo > limit + _EPSILON or significant else "inconclusive"


def _pts(x: float) -> str:
    return f"{round(x * 100, 1) + 0.0:.1f} pts"  # + 0.0: never "-0.0 pts"


def evaluate_gate(report: EvaluationReport, policy: ReleasePolicy) -> GateVerdict:
    """Apply the service's policy to a report (pure: the same inputs, the same verdict).

    Criteria, in order: min_cases, accuracy_drop, min_accuracy, max_error_rate,
    p95_latency_increase_ms, p95_latency_increase_ratio, cost_increase_ratio. The
    comparative ones use the ``decide`` rule; a criterion the policy doesn't set (or a
    first release, for comparisons) is not_applicable.
    """
    cand = report.sides.get(CANDIDATE)
    if cand is None:
        raise EvaluationFailed("the report has no candidate side to judge")
    live = report.sides.get(LIVE)
    comparison = report.comparison
    if live is not None and comparison is None:  # a report stored before comparisons existed
        excluded = set(report.throttled_case_ids)
        scored = [r for r in report.results if r.case_id not in excluded]
        comparison = compare(
            [r for r in scored if r.side == CANDIDATE], [r for r in scored if r.side == LIVE]
        )
    alpha = float(getattr(policy, "significance_level", SIGNIFICANCE))
    return GateVerdict(
        criteria=[
            _min_cases(cand, report, policy),
            _accuracy_drop(cand, live, comparison, policy, alpha),
            _min_accuracy(cand, policy),
            _max_error_rate(cand, policy),
            *_latency_criteria(comparison, policy),
            _cost_increase(comparison, policy),
        ]
    )


def _min_cases(cand: SideMetrics, report: EvaluationReport, policy: ReleasePolicy) -> Criterion:
    enough = cand.n >= policy.min_cases
    throttled = len(report.throttled_case_ids)
    return Criterion(
        name="min_cases",
        verdict="pass" if enough else "inconclusive",
        observed=cand.n,
        threshold=policy.min_cases,
        unit="cases",
        message=(
            f"{cand.n} cases evaluated, policy needs at least {policy.min_cases}"
            + (f" ({throttled} left out: throttled)" if throttled else "")
        ),
    )


def _accuracy_drop(
    cand: SideMetrics,
    live: SideMetrics | None,
    comparison: Comparison | None,
    policy: ReleasePolicy,
    alpha: float,
) -> Criterion:
    allowed = policy.max_accuracy_drop
    if live is None:
        return Criterion(
            name="accuracy_drop",
            verdict="not_applicable",
            observed=None,
            threshold=allowed,
            unit="pts",
            message="no live version to compare with (first release)",
        )
    if comparison is None or comparison.accuracy.delta is None:
        return Criterion(
            name="accuracy_drop",
            verdict="inconclusive",
            observed=None,
            threshold=allowed,
            unit="pts",
            message="candidate and live have no scored case in common: nothing to compare",
        )
    acc, test = comparison.accuracy, comparison.paired_test
    drop = -acc.delta  # type: ignore[operator]
    interval = None if acc.ci95 is None else (-acc.ci95[1], -acc.ci95[0])
    significant = test.p_value < alpha and test.b > test.c
    verdict = decide(drop, interval, allowed, significant)
    evidence = f"{test.method} p={test.p_value:.2g}, {test.b} worse / {test.c} better"
    ci = f"95% CI {_pts(interval[0])} to {_pts(interval[1])}" if interval else "no CI"
    within = drop <= allowed + _EPSILON
    detail = f"drop {_pts(drop)} {'<=' if within else '>'} {_pts(allowed)} allowed; {ci}; {evidence}"
    if verdict == "inconclusive" and within:
        detail += f"; measurably worse and the CI reaches past {_pts(allowed)}: add cases to tell"
    elif verdict == "inconclusive":
        detail += "; not significant: too few cases to tell a regression from noise, add cases"
    return Criterion(
        name="accuracy_drop",
        verdict=verdict,
        observed=drop,
        threshold=allowed,
        interval=interval,
        p_value=test.p_value,
        unit="pts",
        message=f"candidate {acc.candidate:.2f} vs live {acc.live:.2f} ({detail})",
    )


def _min_accuracy(cand: SideMetrics, policy: ReleasePolicy) -> Criterion:
    if cand.n == 0:
        return Criterion(
            name="min_accuracy",
            verdict="inconclusive",
            observed=None,
            threshold=policy.min_accuracy,
            unit="fraction",
            message="no scored case",
        )
    ok = cand.accuracy + _EPSILON >= policy.min_accuracy
    return Criterion(
        name="min_accuracy",
        verdict="pass" if ok else "fail",
        observed=cand.accuracy,
        threshold=policy.min_accuracy,
        unit="fraction",
        message=(
            f"candidate accuracy {cand.accuracy:.2f} "
            f"{'>=' if ok else '<'} {policy.min_accuracy:.2f} required"
        ),
    )


def _max_error_rate(cand: SideMetrics, policy: ReleasePolicy) -> Criterion:
    """A plain threshold: an error is a fault of the candidate, not a noisy judgement."""
    if cand.n == 0:
        return Criterion(
            name="max_error_rate",
            verdict="inconclusive",
            observed=None,
            threshold=policy.max_error_rate,
            unit="fraction",
            message="no scored case",
        )
    ok = cand.error_rate <= policy.max_error_rate + _EPSILON
    return Criterion(
        name="max_error_rate",
        verdict="pass" if ok else "fail",
        observed=cand.error_rate,
        threshold=policy.max_error_rate,
        unit="fraction",
        message=(
            f"candidate error rate {cand.error_rate:.1%} ({cand.errors}/{cand.n}) "
            f"{'<=' if ok else '>'} {policy.max_error_rate:.1%} allowed"
        ),
    )


def _increase_criterion(
    name: str,
    what: str,
    estimate: DeltaEstimate | None,
    limit: float | None,
    *,
    ratio: bool,
) -> Criterion:
    """An increase criterion (latency, cost) under the ``decide`` rule.

    "Measurably worse" here: the interval of the increase lies above zero.
    """
    unit = "ratio" if ratio else "ms"
    if limit is None:
        return Criterion(
            name=name, verdict="not_applicable", observed=None, threshold=None, unit=unit,
            message="not set in the policy",
        )
    if estimate is None:
        return Criterion(
            name=name, verdict="not_applicable", observed=None, threshold=limit, unit=unit,
            message="no live version to compare with (first release)",
        )
    point = estimate.ratio if ratio else estimate.delta
    interval = estimate.ratio_ci95 if ratio else estimate.ci95
    fmt = (lambda x: f"{x:+.1%}") if ratio else (lambda x: f"{x:+.1f} ms")
    if point is None or interval is None:
        return Criterion(
            name=name, verdict="inconclusive", observed=point, threshold=limit, unit=unit,
            message=f"{what} can't be compared (no successful calls, or live's is zero): not enough evidence",
        )
    verdict = decide(point, interval, limit, interval[0] > _EPSILON)
    sides = f"candidate {estimate.candidate:.6g} vs live {estimate.live:.6g}"
    within = point <= limit + _EPSILON
    message = (
        f"{what} {sides} ({fmt(point)} {'<=' if within else '>'} {fmt(limit)} allowed; "
        f"95% CI {fmt(interval[0])} to {fmt(interval[1])})"
    )
    if verdict == "inconclusive":
        message += ": within noise, add cases" if not within else ": the CI reaches past the limit, add cases"
    return Criterion(
        name=name, verdict=verdict, observed=point, threshold=limit, interval=interval,
        unit=unit, message=message,
    )


def _latency_criteria(comparison: Comparison | None, policy: ReleasePolicy) -> list[Criterion]:
    estimate = comparison.latency_p95_ms if comparison else None
    return [
        _increase_criterion(
            "p95_latency_increase_ms", "p95 latency (ms)", estimate,
            getattr(policy, "max_p95_latency_increase_ms", None), ratio=False,
        ),
        _increase_criterion(
            "p95_latency_increase_ratio", "p95 latency (ms)", estimate,
            getattr(policy, "max_p95_latency_increase_ratio", None), ratio=True,
        ),
    ]


def _cost_increase(comparison: Comparison | None, policy: ReleasePolicy) -> Criterion:
    return _increase_criterion(
        "cost_increase_ratio", "cost per request (USD)",
        comparison.cost_per_request_usd if comparison else None,
        getattr(policy, "max_cost_increase_ratio", None), ratio=True,
    )

