"""Repeats, slices (with Holm) and calibrated judges in the gate, checked against scipy/statsmodels."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.multitest import multipletests

from modelgate import stats
from modelgate.errors import DatasetInvalid
from modelgate.evaluation.comparison import CANDIDATE, LIVE, CaseResult, build_report
from modelgate.evaluation.dataset import parse_dataset
from modelgate.evaluation.gate import evaluate_gate
from modelgate.evaluation.model_scorers import DEFAULT_RUBRIC, LocalScoringModels
from modelgate.evaluation.runner import evaluate
from modelgate.policy import ReleasePolicy


def result(side: str, case: str, score: float, *, repeat: int = 0, tags: tuple[str, ...] = (),
           scorer: str = "contains") -> CaseResult:
    return CaseResult(side=side, case_id=case, score=score, latency_ms=10.0 + repeat, repeat=repeat,
                      tags=list(tags), scorer=scorer)


def by_name(verdict) -> dict:
    return {c.name: c for c in verdict.criteria}


# --------------------------------------------------------------------------- repeats


def repeated(rates_cand: list[int], rates_live: list[int], k: int) -> list[CaseResult]:
    """Case i passes rates[i] of its k repeats on each side."""
    out = []
    for side, rates in ((CANDIDATE, rates_cand), (LIVE, rates_live)):
        for i, passes in enumerate(rates):
            out += [result(side, f"c{i:03d}", float(r < passes), repeat=r) for r in range(k)]
    return out


def test_repeats_make_the_case_the_unit_of_the_paired_statistics() -> None:
    # Given 30 cases run 3 times per side, the candidate flaky on some
    rng = np.random.default_rng(3)
    live = rng.integers(2, 4, size=30).tolist()
    cand = [max(0, x - int(rng.random() < 0.4)) for x in live]
    report = build_report(repeated(cand, live, 3))
    comparison = report.comparison
    # Then the comparison pairs 30 cases (not 90 calls), and says it ran 3 repeats
    assert (report.repeats, comparison.n_pairs, comparison.repeats) == (3, 30, 3)
    assert report.sides[CANDIDATE].n == 30 and report.sides[CANDIDATE].calls == 90
    # And the paired test is scipy's exact binomial test on the signs of the per-case pass-rate differences
    diff = np.array(cand) - np.array(live)
    worse, better = int(np.sum(diff < 0)), int(np.sum(diff > 0))
    expected = scipy_stats.binomtest(worse, worse + better, 0.5).pvalue
    assert comparison.paired_test.p_value == pytest.approx(expected, rel=1e-12)
    assert (comparison.paired_test.b, comparison.paired_test.c) == (worse, better)
    # And the interval is a cluster bootstrap: the same case indices resampled with all their repeats
    calls = np.array([[float(r < p) for r in range(3)] for p in cand]) - np.array(
        [[float(r < p) for r in range(3)] for p in live])
    deltas = [calls[idx].mean() for idx in stats.bootstrap_indices(30, comparison.resamples, comparison.seed)]
    low, high = np.percentile(deltas, [2.5, 97.5])
    assert comparison.accuracy.ci95 == pytest.approx((low, high), abs=1e-12)


def test_consistency_reports_pass_rates_pass_hat_k_and_flips() -> None:
    # Given 4 cases x 4 repeats: always, 3 of 4, 1 of 4, never
    report = build_report(repeated([4, 3, 1, 0], [4, 4, 4, 4], 4))
    c = report.consistency[CANDIDATE]
    assert (c.repeats, c.cases) == (4, 4)
    assert c.pass_rate == pytest.approx((1 + 0.75 + 0.25 + 0) / 4)
    assert c.pass_all_k == pytest.approx(0.25)  # only c000 passed every time
    assert c.flip_rate == pytest.approx(0.5) and c.flipped_case_ids == ["c001", "c002"]
    assert report.consistency[LIVE].flip_rate == 0.0


def test_the_runner_calls_each_case_k_times_per_side() -> None:
    cases = parse_dataset("\n".join(
        json.dumps({"id": f"q{i}", "inputs": {"question": str(i)}, "expected": "yes"}) for i in range(5)))
    calls: dict[str, int] = {}

    def flaky(inputs):  # answers "yes" on every second call of a question
        calls[inputs["question"]] = calls.get(inputs["question"], 0) + 1
        return {"output": "yes" if calls[inputs["question"]] % 2 else "no"}

    report = evaluate(cases, {CANDIDATE: flaky}, concurrency=1, repeats=4)
    assert calls == {str(i): 4 for i in range(5)}
    assert sorted({r.repeat for r in report.results}) == [0, 1, 2, 3]
    assert report.consistency[CANDIDATE].flip_rate == 1.0 and report.consistency[CANDIDATE].pass_all_k == 0.0
    with pytest.raises(ValueError, match="repeats"):
        evaluate(cases, {CANDIDATE: flaky}, concurrency=1, repeats=0)


# --------------------------------------------------------------------------- slices and Holm


def sliced_report() -> list[CaseResult]:
    """60 cases; the 12 tagged security: the candidate loses 6 of them, and 2 of the other 48."""
    out = []
    for i in range(60):
        tags = ("security",) if i < 12 else ("billing",)
        lost = i < 6 or 12 <= i < 14
        out += [result(LIVE, f"c{i:03d}", 1.0, tags=tags), result(CANDIDATE, f"c{i:03d}", 0.0 if lost else 1.0, tags=tags)]
    return out


def test_a_slice_with_its_own_criterion_fails_while_the_whole_passes_and_holm_is_applied() -> None:
    policy = ReleasePolicy(max_accuracy_drop=0.3, slices={"security": {"max_accuracy_drop": 0.0},
                                                           "billing": {"max_accuracy_drop": 0.10}})
    verdict = evaluate_gate(build_report(sliced_report()), policy)
    criteria = by_name(verdict)
    # Then the overall drop (8 of 60: 13.3 pts) is within 30 points, security's 50 points fails
    assert criteria["accuracy_drop"].verdict == "pass"
    assert criteria["accuracy_drop[security]"].verdict == "fail"
    assert criteria["accuracy_drop[billing]"].verdict == "pass"
    assert not verdict.passed and [c.name for c in verdict.failures] == ["accuracy_drop[security]"]
    # And the p-values are Holm-adjusted over the three tests, as statsmodels does it
    raw = [scipy_stats.binomtest(k, k, 0.5).pvalue for k in (8, 6, 2)]
    adjusted = multipletests(raw, method="holm")[1]
    got = [criteria[n].p_value for n in ("accuracy_drop", "accuracy_drop[security]", "accuracy_drop[billing]")]
    assert got == pytest.approx(list(adjusted), rel=1e-12)
    assert "Holm-adjusted p=" in criteria["accuracy_drop[security]"].message
    assert verdict.multiple_comparisons and "Holm-Bonferroni over 3" in verdict.multiple_comparisons


def test_holm_can_turn_a_raw_significant_drop_into_an_inconclusive_one() -> None:
    # Given 10 security cases, 5 lost (raw p = 0.0625), and 30 others, none lost
    out = []
    for i in range(40):
        tags = ("security",) if i < 10 else ("other",)
        out += [result(LIVE, f"c{i:03d}", 1.0, tags=tags),
                result(CANDIDATE, f"c{i:03d}", 0.0 if i < 5 else 1.0, tags=tags)]
    # When the security cases are the only test at alpha 0.1: significant, beyond 30 points: fail
    alone = evaluate_gate(build_report(out[:20]), ReleasePolicy(max_accuracy_drop=0.3, significance_level=0.1))
    assert by_name(alone)["accuracy_drop"].verdict == "fail"
    # When they are one of three tests (overall, security, other): Holm p = 3 x 0.0625, not significant
    family = ReleasePolicy(max_accuracy_drop=0.3, significance_level=0.1,
                           slices={"security": {"max_accuracy_drop": 0.3}, "other": {"max_accuracy_drop": 0.3}})
    c = by_name(evaluate_gate(build_report(out), family))["accuracy_drop[security]"]
    assert c.p_value == pytest.approx(3 * 0.0625)
    # Then the slice's 50-point drop is beyond its limit but within noise: inconclusive, with the cases it lacks
    assert c.verdict == "inconclusive" and c.interval[0] < 0.3
    assert "would settle it" in c.message


def test_a_slice_floor_and_a_slice_nobody_tagged() -> None:
    policy = ReleasePolicy(slices={"security": {"max_accuracy_drop": 1.0, "min_accuracy": 0.9},
                                   "nowhere": {"max_accuracy_drop": 0.0}})
    criteria = by_name(evaluate_gate(build_report(sliced_report()), policy))
    assert criteria["min_accuracy[security]"].verdict == "fail"
    assert criteria["min_accuracy[security]"].observed == pytest.approx(0.5)
    assert criteria["accuracy_drop[nowhere]"].verdict == "inconclusive"
    assert "no scored case in common" in criteria["accuracy_drop[nowhere]"].message


def test_a_slice_name_that_is_not_a_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="not dataset tags"):
        ReleasePolicy(slices={"has space": {"max_accuracy_drop": 0.0}})


# --------------------------------------------------------------------------- judges


def judge_dataset(graded: list[tuple[str, float]]) -> str:
    lines = [json.dumps({"id": f"plain{i}", "inputs": {"question": f"q{i}"}, "expected": "ok"}) for i in range(12)]
    lines.append(json.dumps({
        "id": "judged", "inputs": {"question": "How do I reset my password?"}, "scorer": "llm_judge",
        "expected": "Open Settings and choose Reset password",
        "graded_answers": [{"output": o, "grade": g} for o, g in graded],
    }))
    return "\n".join(lines)


AGREEING = [("Open Settings and choose Reset password", 1.0), ("Go to Settings, then Reset password", 1.0),
            ("I can't help with that", 0.0), ("Reinstall the app", 0.0)] * 3
# The local judge scores on word recall; these people grade paraphrases well and a keyword soup badly.
DISAGREEING = [("Open Settings and choose Reset password", 1.0), ("Settings reset password choose open", 0.0),
               ("Use the 'forgot password' link on the sign-in page", 1.0), ("Reinstall the app", 0.0)] * 3


def run_judged(graded: list[tuple[str, float]], candidate_judged_answer: str):
    cases = parse_dataset(judge_dataset(graded))

    def side(judged_answer: str):
        return lambda inputs: {"output": judged_answer if "password" in inputs["question"] else "ok"}

    report = evaluate(cases, {CANDIDATE: side(candidate_judged_answer),
                              LIVE: side("Open Settings and choose Reset password")},
                      concurrency=2, scoring_models=LocalScoringModels())
    return report, evaluate_gate(report, ReleasePolicy(min_cases=5, max_accuracy_drop=0.5, judge_min_graded=10))


def test_an_uncalibrated_judge_is_shown_but_does_not_gate() -> None:
    report, verdict = run_judged(DISAGREEING, "no idea")
    judge = verdict.judge
    # Then the record names the judge and the rubric it ran under
    assert judge.model_id == "local.reference-recall"
    assert judge.rubric_sha256 == [hashlib.sha256(DEFAULT_RUBRIC.encode()).hexdigest()]
    # And its kappa with the human grades is statsmodels' on the same labels
    human = np.array([g >= 0.5 for _, g in DISAGREEING])
    judged = np.array([c.judge_score >= 0.5 for c in sorted(report.judge.checks, key=lambda c: c.index)])
    table = np.array([[np.sum(human & judged), np.sum(human & ~judged)],
                      [np.sum(~human & judged), np.sum(~human & ~judged)]])
    assert judge.kappa == pytest.approx(cohens_kappa(table).kappa, abs=1e-12)
    assert judge.graded == 12 and not judge.gating and judge.kappa < 0.6
    criteria = by_name(verdict)
    # And the judged case (lost on the candidate) is shown, but gates nothing
    assert criteria["judge_agreement"].verdict == "not_applicable"
    assert "shown but don't gate" in criteria["judge_agreement"].message
    assert criteria["judge_accuracy_drop"].verdict == "not_applicable"
    assert criteria["judge_accuracy_drop"].observed == pytest.approx(1.0)
    assert "shown, not gating" in criteria["judge_accuracy_drop"].message
    assert criteria["accuracy_drop"].observed == 0.0  # the 12 plain cases alone
    assert verdict.passed


def test_a_calibrated_judge_gates() -> None:
    _, verdict = run_judged(AGREEING, "no idea")
    assert verdict.judge.gating and verdict.judge.kappa == pytest.approx(1.0)
    criteria = by_name(verdict)
    assert criteria["judge_agreement"].verdict == "pass"
    # the one judged case lost: its interval starts beyond the limit, and the judge gates: fail
    assert criteria["judge_accuracy_drop"].verdict == "fail"
    assert criteria["accuracy_drop"].observed == pytest.approx(1 / 13)
    assert not verdict.passed


def test_too_few_graded_answers_and_graded_answers_on_another_scorer() -> None:
    _, verdict = run_judged(AGREEING[:4], "Open Settings and choose Reset password")
    assert not verdict.judge.gating and "only 4 human-graded" in verdict.judge.reason
    bad = json.dumps({"id": "x", "inputs": {"q": "?"}, "expected": "a", "graded_answers": [{"output": "a", "grade": 1}]})
    with pytest.raises(DatasetInvalid, match="graded_answers check an llm_judge"):
        parse_dataset(bad)


# --------------------------------------------------------------------------- report


def test_the_report_shows_slices_repeats_power_and_the_judge_for_an_approver() -> None:
    from modelgate.evaluation.report import render_html, worst_regressions

    # Given a sliced evaluation run 3 times per side
    report = build_report([r.model_copy(update={"repeat": k}) for r in sliced_report() for k in range(3)])
    policy = ReleasePolicy(max_accuracy_drop=0.3, slices={"security": {"max_accuracy_drop": 0.0}})
    verdict = evaluate_gate(report, policy)
    html = render_html(report, verdict, title="t", policy=policy)
    # Then each section answers its question
    assert "Slices: is any part of the dataset worse?" in html and "p (Holm-adjusted)" in html
    assert "slice: security" in html and "Holm-Bonferroni over 2 paired accuracy tests" in html
    assert "Repeats: does the model give the same answer twice?" in html and "pass^3" in html
    assert "Power: how small a regression could this evaluation catch?" in html
    assert "the smallest drop it detects is" in html and "(measured)" in html
    # And a case repeated 3 times is one regressed row, not three
    rows = worst_regressions(report)
    assert len(rows) == len({c.case_id for c, _ in rows}) == 8


def test_the_report_names_the_judge_and_escapes_its_reason() -> None:
    from modelgate.evaluation.report import render_html

    report, verdict = run_judged(DISAGREEING, "no idea")
    html = render_html(report, verdict, title="t", policy=ReleasePolicy(min_cases=5))
    assert "LLM judge: did it earn a say?" in html and "shown, not gating" in html
    assert "local.reference-recall" in html and verdict.judge.rubric_sha256[0] in html


def test_an_inconclusive_latency_increase_says_how_many_cases_would_settle_it() -> None:
    import math

    # Given 20 cases whose p95 latency rose ~23 ms, measurably, with much noise, against a 30 ms limit
    rng = np.random.default_rng(11)
    out = []
    for i in range(20):
        base = float(rng.uniform(50, 150))
        out += [CaseResult(side=LIVE, case_id=f"c{i:02d}", score=1.0, latency_ms=base),
                CaseResult(side=CANDIDATE, case_id=f"c{i:02d}", score=1.0, latency_ms=base + float(rng.uniform(-20, 80)))]
    c = by_name(evaluate_gate(build_report(out), ReleasePolicy(max_p95_latency_increase_ms=30.0)))[
        "p95_latency_increase_ms"]
    assert c.verdict == "inconclusive" and 0.0 < c.interval[0] and c.observed < 30.0 < c.interval[1]
    # Then it names the cases for the interval's upper end to come within the limit (half-width ~ 1/sqrt(n))
    needed = math.ceil(20 * ((c.interval[1] - c.observed) / (30.0 - c.observed)) ** 2)
    assert f"about {needed} cases in all ({needed - 20} more) would settle it" in c.message
