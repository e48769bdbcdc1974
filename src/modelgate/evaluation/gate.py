"""The evaluation gate: a report and the service's policy in, one verdict per criterion out.

Not to be confused with the canary judge (``modelgate.canary_judge``), which compares
candidate and stable traffic during a rollout step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from modelgate.contract import Criterion, GateVerdict, JudgeRecord, Verdict
from modelgate.errors import (
    EvaluationFailed,
)
from modelgate.evaluation.comparison import (
    CANDIDATE,
    LIVE,
    CaseResult,
    Comparison,
    DeltaEstimate,
    EvaluationReport,
    Interval,
    SideMetrics,
    compare,
)
from modelgate.evaluation.judges import JUDGE_SCORER, judge_record
from modelgate.evaluation.power import cases_for_interval, cases_to_settle
from modelgate.gate_stats import holm
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
    * inconclusive otherwise: beyond the limit but within noise, or measurably worse by an
      amount whose interval reaches past the limit; the message says how many cases in all
      would likely settle it (``modelgate.evaluation.power``).
    """
    lo, hi = interval if interval is not None else (-math.inf, math.inf)
    if point <= limit + _EPSILON:
        return "pass" if hi <= limit + _EPSILON or not significant else "inconclusive"
    return "fail" if lo > limit + _EPSILON or significant else "inconclusive"


def _pts(x: float) -> str:
    return f"{round(x * 100, 1) + 0.0:.1f} pts"  # + 0.0: never "-0.0 pts"


def evaluate_gate(report: EvaluationReport, policy: ReleasePolicy) -> GateVerdict:
    """Apply the service's policy to a report (pure: the same inputs, the same verdict).

    Criteria, in order: min_cases, accuracy_drop, each slice's accuracy_drop[tag] and
    min_accuracy[tag], the judge's judge_agreement and judge_accuracy_drop, min_accuracy,
    max_error_rate, p95_latency_increase_ms, p95_latency_increase_ratio,
    cost_increase_ratio. The comparative ones use the ``decide`` rule; a criterion the
    policy doesn't set (or a first release, for comparisons) is not_applicable.

    The accuracy-drop tests (overall, each slice, a gating judge) form one family: when
    there are several, their paired p-values are Holm-adjusted before "measurably worse"
    is decided (``gate_stats.holm``), and the verdict says so.
    """
    cand = report.sides.get(CANDIDATE)
    if cand is None:
        raise EvaluationFailed("the report has no candidate side to judge")
    live = report.sides.get(LIVE)
    alpha = float(getattr(policy, "significance_level", SIGNIFICANCE))
    judge = (
        judge_record(report.judge, min_kappa=policy.judge_min_kappa, min_graded=policy.judge_min_graded)
        if report.judge is not None else None
    )
    excluded = set(report.throttled_case_ids)
    scored = [r for r in report.results if r.case_id not in excluded]
    ungated_judge = judge is not None and not judge.gating
    gated = [r for r in scored if not (ungated_judge and r.scorer == JUDGE_SCORER)]
    comparison = report.comparison
    if live is not None and (comparison is None or len(gated) != len(scored)):
        # a report stored before comparisons existed, or a judge's cases taken out
        comparison = _compare(gated)
    tests = [_DropTest("accuracy_drop", "", comparison, policy.max_accuracy_drop, gating=True)]
    for tag, criteria in sorted(policy.slices.items()):
        tagged = [r for r in gated if tag in r.tags]
        tests.append(_DropTest(f"accuracy_drop[{tag}]", f"slice {tag}: ", _compare(tagged) if live else None,
                               criteria.max_accuracy_drop, gating=True, n=len({r.case_id for r in tagged})))
    if judge is not None:
        judged = [r for r in scored if r.scorer == JUDGE_SCORER]
        tests.append(_DropTest("judge_accuracy_drop", "judged cases: ", _compare(judged) if live else None,
                               policy.max_accuracy_drop, gating=judge.gating))
    family = [t for t in tests if t.gating and t.comparison is not None]
    adjusted = dict(zip((t.name for t in family), holm([t.comparison.paired_test.p_value for t in family])))
    holm_note = None
    if len(family) > 1:
        holm_note = (
            f"Holm-Bonferroni over {len(family)} paired accuracy tests ({', '.join(t.name for t in family)}): "
            f"each is measurably worse only if its adjusted p-value < {alpha:g}"
        )
    accuracy = [
        _accuracy_drop(t, live, adjusted.get(t.name), len(family), policy, alpha) for t in tests
    ]
    slice_floors = [
        _slice_min_accuracy(tag, criteria.min_accuracy, [r for r in gated if tag in r.tags])
        for tag, criteria in sorted(policy.slices.items())
        if criteria.min_accuracy is not None
    ]
    judge_criteria = [] if judge is None else [_judge_agreement(judge)]
    return GateVerdict(
        criteria=[
            _min_cases(cand, report, policy),
            accuracy[0],
            *accuracy[1:1 + len(policy.slices)],
            *slice_floors,
            *judge_criteria,
            *accuracy[1 + len(policy.slices):],
            _min_accuracy(cand, policy),
            _max_error_rate(cand, policy),
            *_latency_criteria(comparison, policy),
            _cost_increase(comparison, policy),
        ],
        judge=judge,
        multiple_comparisons=holm_note,
    )


def _compare(results: list[CaseResult]) -> Comparison | None:
    return compare([r for r in results if r.side == CANDIDATE], [r for r in results if r.side == LIVE])


class _DropTest(NamedTuple):
    """One accuracy-drop test of the Holm family: the whole dataset, a slice, or the judge's cases."""

    name: str
    scope: str
    comparison: Comparison | None
    allowed: float
    gating: bool
    n: int | None = None


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
            + (f"; each run {report.repeats} times per side" if report.repeats > 1 else "")
        ),
    )


def _accuracy_drop(
    test: _DropTest,
    live: SideMetrics | None,
    adjusted_p: float | None,
    tests: int,
    policy: ReleasePolicy,
    alpha: float,
) -> Criterion:
    allowed, name, scope = test.allowed, test.name, test.scope
    if live is None:
        return Criterion(
            name=name,
            verdict="not_applicable",
            observed=None,
            threshold=allowed,
            unit="pts",
            message=f"{scope}no live version to compare with (first release)",
        )
    comparison = test.comparison
    if comparison is None or comparison.accuracy.delta is None:
        return Criterion(
            name=name,
            verdict="inconclusive" if test.gating else "not_applicable",
            observed=None,
            threshold=allowed,
            unit="pts",
            message=f"{scope}candidate and live have no scored case in common: nothing to compare"
            + ("" if test.gating else " (the judge does not gate)"),
        )
    acc, t = comparison.accuracy, comparison.paired_test
    drop = -acc.delta  # type: ignore[operator]
    interval = None if acc.ci95 is None else (-acc.ci95[1], -acc.ci95[0])
    p_value = t.p_value if adjusted_p is None else adjusted_p
    significant = p_value < alpha and t.b > t.c
    verdict = decide(drop, interval, allowed, significant)
    unit_note = f" on per-case pass rates ({comparison.repeats} repeats)" if comparison.repeats > 1 else ""
    p_text = f"p={t.p_value:.2g}" if adjusted_p is None or tests < 2 else (
        f"Holm-adjusted p={adjusted_p:.2g} (raw {t.p_value:.2g}, {tests} tests)"
    )
    evidence = f"{t.method}{unit_note} {p_text}, {t.b} worse / {t.c} better"
    ci = f"95% CI {_pts(interval[0])} to {_pts(interval[1])}" if interval else "no CI"
    within = drop <= allowed + _EPSILON
    detail = f"drop {_pts(drop)} {'<=' if within else '>'} {_pts(allowed)} allowed; {ci}; {evidence}"
    if verdict == "inconclusive":
        detail += "; " + _settle(comparison, drop, allowed, interval, significant, alpha / max(tests, 1), within)
    if not test.gating:
        detail += "; shown, not gating: the judge did not earn its place (see judge_agreement)"
        verdict = "not_applicable"
    return Criterion(
        name=name,
        verdict=verdict,
        observed=drop,
        threshold=allowed,
        interval=interval,
        p_value=p_value,
        unit="pts",
        message=f"{scope}candidate {acc.candidate:.2f} vs live {acc.live:.2f} ({detail})",
    )


def _settle(
    comparison: Comparison,
    drop: float,
    allowed: float,
    interval: Interval | None,
    significant: bool,
    alpha: float,
    within: bool,
) -> str:
    """What an inconclusive drop lacks, computed (``modelgate.evaluation.power.cases_to_settle``)."""
    t, n = comparison.paired_test, comparison.n_pairs
    why = (
        "measurably worse and the CI reaches past the limit" if within
        else "not significant: too few cases to tell a regression from noise"
    )
    needed, how = cases_to_settle(
        n=n, drop=drop, limit=allowed, interval=interval, discordance=(t.b + t.c) / n,
        alpha=alpha, significant=significant,
    )
    if needed is None:
        return f"{why}; {how}"
    return f"{why}; about {needed} cases in all ({needed - n} more) would settle it, {how}"


def _slice_min_accuracy(tag: str, floor: float, results: list[CaseResult]) -> Criterion:
    cand = [r for r in results if r.side == CANDIDATE]
    name = f"min_accuracy[{tag}]"
    if not cand:
        return Criterion(name=name, verdict="inconclusive", observed=None, threshold=floor, unit="fraction",
                         message=f"slice {tag}: no scored case carries the tag")
    accuracy = sum(r.weight * r.score for r in cand) / sum(r.weight for r in cand)
    ok = accuracy + _EPSILON >= floor
    return Criterion(
        name=name, verdict="pass" if ok else "fail", observed=accuracy, threshold=floor, unit="fraction",
        message=f"slice {tag}: candidate accuracy {accuracy:.2f} {'>=' if ok else '<'} {floor:.2f} required",
    )


def _judge_agreement(judge: JudgeRecord) -> Criterion:
    """Not a bar the release must clear: whether the judge's own criterion may gate."""
    digests = ", ".join(d[:12] for d in judge.rubric_sha256)
    return Criterion(
        name="judge_agreement",
        verdict="pass" if judge.gating else "not_applicable",
        observed=judge.kappa,
        threshold=judge.min_kappa,
        unit="kappa",
        message=f"judge {judge.model_id} (rubric sha256 {digests}): {judge.reason}",
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
            f"candidate error rate {cand.error_rate:.1%} ({cand.errors}/{cand.calls or cand.n}{' calls' if cand.calls > cand.n else ''}) "
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
    n: int = 0,
) -> Criterion:
    """An increase criterion (latency, cost) under the ``decide`` rule.

    "Measurably worse" here: the interval of the increase lies above zero. Inconclusive,
    it says how many of the ``n`` paired cases would settle it (``power.cases_for_interval``).
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
        message += ": within noise" if not within else ": the CI reaches past the limit"
        needed = cases_for_interval(n, point, limit, interval) if n else None
        end = "lower end clear" if not within else "upper end come within"
        message += (
            f"; about {needed} cases in all ({needed - n} more) would settle it, for the interval's {end} the limit "
            "(its half-width shrinks as 1/sqrt(n))" if needed is not None
            else "; the estimate sits on the limit: no number of cases would settle it"
        )
    return Criterion(
        name=name, verdict=verdict, observed=point, threshold=limit, interval=interval,
        unit=unit, message=message,
    )


def _latency_criteria(comparison: Comparison | None, policy: ReleasePolicy) -> list[Criterion]:
    estimate = comparison.latency_p95_ms if comparison else None
    n = comparison.n_pairs if comparison else 0
    return [
        _increase_criterion(
            "p95_latency_increase_ms", "p95 latency (ms)", estimate,
            getattr(policy, "max_p95_latency_increase_ms", None), ratio=False, n=n,
        ),
        _increase_criterion(
            "p95_latency_increase_ratio", "p95 latency (ms)", estimate,
            getattr(policy, "max_p95_latency_increase_ratio", None), ratio=True, n=n,
        ),
    ]


def _cost_increase(comparison: Comparison | None, policy: ReleasePolicy) -> Criterion:
    return _increase_criterion(
        "cost_increase_ratio", "cost per request (USD)",
        comparison.cost_per_request_usd if comparison else None,
        getattr(policy, "max_cost_increase_ratio", None), ratio=True, n=comparison.n_pairs if comparison else 0,
    )

