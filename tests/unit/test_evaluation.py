"""Evaluation: dataset parsing, scorers, running both sides, metrics, and the gate."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from modelgate.errors import DatasetInvalid, EvaluationFailed, GateFailed
from modelgate.evaluation import (
    CANDIDATE,
    LIVE,
    SCORERS,
    CaseResult,
    DatasetCase,
    EvaluationReport,
    build_report,
    evaluate,
    judge,
    normalise,
    parse_dataset,
    percentile,
    register_scorer,
)
from modelgate.models import ReleasePolicy


def line(**fields: Any) -> str:
    base: dict[str, Any] = {"id": "c1", "inputs": {"question": "q"}, "expected": "x"}
    return json.dumps({**base, **fields})


def case(expected: str | list[str], scorer: str = "contains", **kw: Any) -> DatasetCase:
    return DatasetCase(
        id=kw.pop("id", "c"), inputs={"question": "q"}, expected=expected, scorer=scorer, **kw
    )


# --------------------------------------------------------------------------- dataset


def test_parse_dataset_reads_jsonl_with_blank_lines_and_defaults() -> None:
    # Given two cases separated by blank lines, one with every field
    text = (
        "\n"
        + line(id="a")
        + "\n\n"
        + line(id="b", expected=["x", "y"], scorer="any_of", tags=["billing"], weight=2.5)
        + "\n\n"
    )
    # When parsed
    cases = parse_dataset(text)
    # Then both cases come back with defaults filled in
    assert [c.id for c in cases] == ["a", "b"]
    assert cases[0].scorer == "contains" and cases[0].weight == 1.0 and cases[0].tags == []
    assert cases[1].expected == ["x", "y"] and cases[1].weight == 2.5


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ('{"id": "c3", "inputs": ', "Invalid JSON|EOF"),
        (line(id="c3", colour="red"), "colour: Extra inputs are not permitted"),
        (json.dumps({"id": "c3", "inputs": {"question": "q"}}), "expected: Field required"),
        (line(id="c3", inputs={"question": 1}), "inputs.question"),
        (line(id="c3", weight=0), "weight"),
        (line(id="c3", scorer="fuzzy"), "unknown scorer 'fuzzy'.*contains"),
        (
            line(id="c3", scorer="any_of", expected="x"),
            "any_of' needs expected to be a non-empty list",
        ),
        (line(id="c3", scorer="exact", expected=["x"]), "'exact' needs expected to be a string"),
        (line(id="c3", scorer="regex", expected="(unclosed"), "not a valid regex"),
        (line(id=""), "id"),
    ],
)
def test_a_malformed_line_is_reported_by_its_line_number(bad: str, problem: str) -> None:
    # Given a dataset whose third line (after a blank one) is bad
    text = line(id="c1") + "\n\n" + bad + "\n" + line(id="c4")
    # When parsed / Then the error names line 3 and the problem
    with pytest.raises(DatasetInvalid, match=rf"^dataset line 3: .*({problem})"):
        parse_dataset(text)


def test_duplicate_ids_name_both_lines() -> None:
    text = "\n".join([line(id="a"), line(id="b"), line(id="a")])
    with pytest.raises(DatasetInvalid, match=r"line 3: duplicate case id 'a' \(first on line 1\)"):
        parse_dataset(text)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_an_empty_dataset_is_an_error(text: str) -> None:
    with pytest.raises(DatasetInvalid, match="no cases"):
        parse_dataset(text)


# --------------------------------------------------------------------------- scorers


@pytest.mark.parametrize(
    ("scorer", "expected", "output", "score"),
    [
        ("exact", "Plus costs $6.", "  plus   COSTS $6. ", 1.0),
        ("exact", "Plus costs $6.", "Plus costs $6 per month.", 0.0),
        ("contains", "Settings > Billing", "Go to settings  > billing now", 1.0),
        ("contains", "Settings > Billing", "Go to Settings", 0.0),
        ("any_of", ["Frankfurt", "EU data centres"], "Stored in frankfurt.", 1.0),
        ("any_of", ["Frankfurt", "EU data centres"], "Stored in Dublin.", 0.0),
        ("regex", r"\$\d+ per month", "It is $6 per month.", 1.0),
        ("regex", r"\$\d+ per month", "It is six dollars.", 0.0),
        ("regex", r"(?i)^yes\b", "YES, it does.", 1.0),
    ],
)
def test_builtin_scorers(scorer: str, expected: Any, output: str, score: float) -> None:
    # Given a case with this scorer / When an output is scored / Then the score is as documented
    assert SCORERS[scorer](output, case(expected, scorer)) == score


def test_a_user_scorer_registers_in_a_few_lines_and_is_usable_in_datasets() -> None:
    # Given a scorer registered by name
    @register_scorer("starts_with")
    def _starts_with(output: str, c: DatasetCase) -> float:
        return float(normalise(output).startswith(normalise(str(c.expected))))

    try:
        # When a dataset uses it, and an output is scored
        [parsed] = parse_dataset(line(scorer="starts_with", expected="Yes"))
        # Then it is the registered function
        assert SCORERS[parsed.scorer]("yes, it does", parsed) == 1.0
        assert SCORERS[parsed.scorer]("no", parsed) == 0.0
        # And a second registration under the same name is refused
        with pytest.raises(ValueError, match="already registered"):
            register_scorer("starts_with")(_starts_with)
    finally:
        SCORERS.pop("starts_with", None)


# --------------------------------------------------------------------------- percentile


@pytest.mark.parametrize("n", [1, 2, 3, 7, 30, 101])
def test_percentile_matches_numpy_linear_interpolation(n: int) -> None:
    # Given random latencies
    rng = random.Random(n)
    values = [rng.uniform(1, 500) for _ in range(n)]
    # When percentiles are taken / Then they equal numpy's default (linear) method
    for q in (0, 1, 25, 50, 90, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(
            float(np.percentile(values, q, method="linear"))
        )


def test_percentile_rejects_empty_input_and_bad_q() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


# --------------------------------------------------------------------------- evaluate


CASES = [
    DatasetCase(id=f"c{i}", inputs={"question": f"q{i}"}, expected=f"answer {i}") for i in range(10)
]


def answering(correct: set[int], *, cost: float = 0.001, fail: set[int] = frozenset()) -> Any:
    """An invoker that answers case i correctly iff i in ``correct``; raises for ``fail``."""

    def invoke(inputs: dict[str, str]) -> Mapping[str, Any]:
        i = int(inputs["question"][1:])
        if i in fail:
            raise RuntimeError(f"boom on {i}")
        text = f"This is answer {i}." if i in correct else "I don't know."
        return {"output": text, "usage": {"input_tokens": 10, "output_tokens": 3}, "cost_usd": cost}

    return invoke


def test_evaluate_runs_the_same_cases_on_every_side_and_measures_them() -> None:
    # Given a candidate right on 9/10 and a live right on 6/10
    invokers = {CANDIDATE: answering(set(range(9)), cost=0.002), LIVE: answering(set(range(6)))}
    # When evaluated
    report = evaluate(CASES, invokers, concurrency=4)
    # Then every case ran once per side, and metrics follow
    for side in (CANDIDATE, LIVE):
        assert sorted(r.case_id for r in report.results if r.side == side) == sorted(
            c.id for c in CASES
        )
    cand, live = report.sides[CANDIDATE], report.sides[LIVE]
    assert (cand.n, cand.accuracy, live.accuracy) == (10, 0.9, 0.6)
    assert cand.error_rate == 0.0
    assert cand.cost_per_request_usd == pytest.approx(0.002)
    assert (cand.input_tokens, cand.output_tokens, cand.total_tokens) == (100, 30, 130)
    assert cand.latency_p50_ms is not None and cand.latency_p50_ms >= 0
    assert report.n_cases == 10


def test_invoker_exceptions_are_per_case_errors_scored_zero() -> None:
    # Given a candidate that raises on two cases (which it would otherwise get right)
    invokers = {CANDIDATE: answering(set(range(10)), fail={3, 7})}
    # When evaluated
    report = evaluate(CASES, invokers, concurrency=3)
    # Then those cases score 0, keep the error text, and count as errors
    failed = {r.case_id: r for r in report.results if r.error}
    assert set(failed) == {"c3", "c7"}
    assert failed["c3"].error == "RuntimeError: boom on 3"
    assert failed["c3"].score == 0.0
    cand = report.sides[CANDIDATE]
    assert (cand.accuracy, cand.error_rate, cand.errors) == (0.8, 0.2, 2)
    # And cost and tokens count successful calls only
    assert cand.cost_per_request_usd == pytest.approx(0.001)
    assert cand.total_tokens == 8 * 13


def test_a_response_without_text_output_is_an_error() -> None:
    report = evaluate(CASES[:1], {CANDIDATE: lambda inputs: {"result": "x"}}, concurrency=1)
    assert report.results[0].error == "KeyError: 'output'"


def test_accuracy_is_weighted() -> None:
    # Given a heavy case answered right and a light one answered wrong
    cases = [
        DatasetCase(id="c0", inputs={"question": "q0"}, expected="answer 0", weight=3.0),
        DatasetCase(id="c1", inputs={"question": "q1"}, expected="answer 1", weight=1.0),
    ]
    report = evaluate(cases, {CANDIDATE: answering({0})}, concurrency=2)
    assert report.sides[CANDIDATE].accuracy == pytest.approx(0.75)


def test_latency_is_wall_clock_around_each_call() -> None:
    # Given an invoker that takes at least 5 ms
    def slow(inputs: dict[str, str]) -> Mapping[str, Any]:
        time.sleep(0.005)
        return {"output": "x"}

    report = evaluate(CASES[:3], {CANDIDATE: slow}, concurrency=3)
    # Then every measured latency is at least that (a lower bound, not a timing assert)
    assert all(r.latency_ms >= 5.0 for r in report.results)


def test_concurrency_is_bounded_and_used() -> None:
    # Given invokers that all wait at a barrier for 3 parties
    barrier = threading.Barrier(3, timeout=10)
    lock = threading.Lock()
    running, peak = 0, 0

    def invoke(inputs: dict[str, str]) -> Mapping[str, Any]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            barrier.wait()  # only passes if 3 calls run at once
        finally:
            with lock:
                running -= 1
        return {"output": "answer"}

    # When 6 cases x 2 sides run with concurrency 3
    report = evaluate(CASES[:6], {CANDIDATE: invoke, LIVE: invoke}, concurrency=3)
    # Then no call failed at the barrier and never more than 3 ran at once
    assert all(r.error is None for r in report.results)
    assert peak == 3


def test_evaluate_needs_a_candidate_side() -> None:
    with pytest.raises(EvaluationFailed, match="no 'candidate' side"):
        evaluate(CASES, {LIVE: answering(set())}, concurrency=1)


def test_a_scorer_out_of_range_fails_the_evaluation() -> None:
    @register_scorer("broken")
    def _broken(output: str, c: DatasetCase) -> float:
        return 2.0

    try:
        cases = [DatasetCase(id="c0", inputs={"question": "q0"}, expected="x", scorer="broken")]
        with pytest.raises(EvaluationFailed, match="'broken' returned 2.0 for case 'c0'"):
            evaluate(cases, {CANDIDATE: answering({0})}, concurrency=1)
    finally:
        SCORERS.pop("broken", None)


# --------------------------------------------------------------------------- report


def test_summary_is_small_and_has_deltas_and_the_full_report_round_trips() -> None:
    # Given a 40-case report on both sides
    cases = [
        DatasetCase(id=f"c{i}", inputs={"question": f"q{i}"}, expected=f"answer {i}")
        for i in range(40)
    ]
    report = evaluate(
        cases,
        {CANDIDATE: answering(set(range(30)), cost=0.003), LIVE: answering(set(range(36)))},
        concurrency=8,
    )
    # When summarised
    summary = report.summary()
    # Then deltas are candidate minus live, and it is small (no per-case results)
    assert summary["deltas"]["accuracy_delta"] == pytest.approx(0.75 - 0.9)
    assert summary["deltas"]["cost_delta_usd"] == pytest.approx(0.002)
    assert "p95_latency_delta_ms" in summary["deltas"]
    assert len(json.dumps(summary)) < 2_000
    assert "results" not in summary
    # And the full report is JSON for S3 and reads back equal
    full = report.model_dump_json()
    assert EvaluationReport.model_validate_json(full) == report
    assert len(json.loads(full)["results"]) == 80


def test_summary_without_live_has_no_deltas() -> None:
    report = evaluate(CASES, {CANDIDATE: answering(set())}, concurrency=2)
    assert report.summary()["deltas"] is None
    assert set(report.summary()["sides"]) == {CANDIDATE}


def test_build_report_merges_shards_by_concatenating_results() -> None:
    # Given two shards of the same evaluation
    shard_a = evaluate(CASES[:5], {CANDIDATE: answering({0, 1})}, concurrency=2)
    shard_b = evaluate(CASES[5:], {CANDIDATE: answering({5, 6, 7})}, concurrency=2)
    # When merged / Then the metrics are those of the whole dataset
    merged = build_report(shard_a.results + shard_b.results)
    assert merged.sides[CANDIDATE].n == 10
    assert merged.sides[CANDIDATE].accuracy == pytest.approx(0.5)


# --------------------------------------------------------------------------- judge


def results(side: str, scores: list[float], errors: int = 0) -> list[CaseResult]:
    out = [
        CaseResult(side=side, case_id=f"c{i}", score=s, latency_ms=1.0)
        for i, s in enumerate(scores)
    ]
    out += [
        CaseResult(side=side, case_id=f"e{i}", score=0.0, error="Boom: x", latency_ms=1.0)
        for i in range(errors)
    ]
    return out


def report_of(
    candidate: list[CaseResult], live: list[CaseResult] | None = None
) -> EvaluationReport:
    return build_report(candidate + (live or []))


def verdicts(verdict: Any) -> dict[str, str]:
    return {c.name: c.verdict for c in verdict.criteria}


def test_judge_passes_a_candidate_within_every_criterion() -> None:
    # Given candidate 0.85 vs live 0.85 on 20 cases, no errors
    report = report_of(
        results(CANDIDATE, [1.0] * 17 + [0.0] * 3), results(LIVE, [1.0] * 17 + [0.0] * 3)
    )
    # When judged with the default policy
    verdict = judge(report, ReleasePolicy())
    # Then it passes and raise_if_failed is silent
    assert verdict.passed
    assert verdicts(verdict) == {
        "min_cases": "pass",
        "accuracy_drop": "pass",
        "min_accuracy": "pass",
        "max_error_rate": "pass",
    }
    verdict.raise_if_failed()


def test_judge_allows_a_drop_of_exactly_the_allowed_points() -> None:
    # Given candidate 0.80 vs live 0.85: a 5.0 point drop, the default allowance
    report = report_of(
        results(CANDIDATE, [1.0] * 16 + [0.0] * 4), results(LIVE, [1.0] * 17 + [0.0] * 3)
    )
    assert judge(report, ReleasePolicy()).passed


def test_judge_fails_an_accuracy_drop_with_the_numbers() -> None:
    # Given candidate 0.62 vs live 0.85 over 100 cases
    report = report_of(
        results(CANDIDATE, [1.0] * 62 + [0.0] * 38), results(LIVE, [1.0] * 85 + [0.0] * 15)
    )
    # When judged
    verdict = judge(report, ReleasePolicy(max_accuracy_drop=0.05))
    # Then it fails on the drop, and the error says by how much
    assert not verdict.passed
    assert verdicts(verdict)["accuracy_drop"] == "fail"
    with pytest.raises(GateFailed) as raised:
        verdict.raise_if_failed()
    assert str(raised.value) == (
        "accuracy_drop: candidate 0.62 vs live 0.85 (drop 23.0 pts > 5.0 pts allowed)"
    )


def test_the_gate_failure_names_every_failed_and_inconclusive_criterion() -> None:
    # Given 8 cases (2 errors), accuracy 0.25 vs live 1.0, against a strict policy
    report = report_of(
        results(CANDIDATE, [1.0] * 2 + [0.0] * 4, errors=2), results(LIVE, [1.0] * 8)
    )
    policy = ReleasePolicy(
        min_cases=10, min_accuracy=0.7, max_error_rate=0.05, max_accuracy_drop=0.05
    )
    # When judged
    verdict = judge(report, policy)
    # Then every criterion but none passes, and the message names each with its numbers
    assert verdicts(verdict) == {
        "min_cases": "inconclusive",
        "accuracy_drop": "fail",
        "min_accuracy": "fail",
        "max_error_rate": "fail",
    }
    with pytest.raises(GateFailed) as raised:
        verdict.raise_if_failed()
    message = str(raised.value)
    assert "min_cases: 8 cases evaluated, policy needs at least 10" in message
    assert "accuracy_drop: candidate 0.25 vs live 1.00 (drop 75.0 pts > 5.0 pts allowed)" in message
    assert "min_accuracy: candidate accuracy 0.25 < 0.70 required" in message
    assert "max_error_rate: candidate error rate 25.0% (2/8) > 5.0% allowed" in message


def test_too_few_cases_is_inconclusive_and_fails_closed() -> None:
    # Given a perfect candidate on 5 cases, the policy needing 10
    verdict = judge(report_of(results(CANDIDATE, [1.0] * 5)), ReleasePolicy(min_cases=10))
    # Then the gate is not passed: missing evidence is never a pass
    assert verdicts(verdict)["min_cases"] == "inconclusive"
    assert not verdict.passed
    with pytest.raises(GateFailed, match="min_cases: 5 cases evaluated"):
        verdict.raise_if_failed()


def test_a_first_release_has_no_accuracy_drop_to_judge() -> None:
    # Given no live side
    verdict = judge(report_of(results(CANDIDATE, [1.0] * 12)), ReleasePolicy())
    # Then the drop criterion is not applicable and the gate passes on the rest
    assert verdicts(verdict)["accuracy_drop"] == "not_applicable"
    assert verdict.passed


def test_judge_needs_a_candidate() -> None:
    with pytest.raises(EvaluationFailed, match="no candidate side"):
        judge(report_of([], results(LIVE, [1.0] * 12)), ReleasePolicy())
