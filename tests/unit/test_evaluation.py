"""Evaluation: dataset parsing, running both sides (throttling, rate limit), metrics, the gate."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError

from modelgate import gate_stats
from modelgate.contract import Criterion
from modelgate.errors import (
    DatasetInvalid,
    EvaluationFailed,
    GateFailed,
    Throttled,
    is_throttle,
)
from modelgate.evaluation.comparison import (
    CANDIDATE,
    LIVE,
    CaseResult,
    EvaluationReport,
    build_report,
)
from modelgate.evaluation.dataset import DatasetCase, parse_dataset
from modelgate.evaluation.gate import evaluate_gate
from modelgate.evaluation.runner import RetryPolicy, TokenBucket, evaluate
from modelgate.evaluation.scorers import SCORERS, register_scorer
from modelgate.policy import ReleasePolicy


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
        (json.dumps({"id": "c3", "inputs": {"question": "q"}}), "scorer .contains. needs expected"),
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


def test_summary_carries_intervals_and_the_paired_test() -> None:
    # Given candidate and live on 40 cases, the candidate losing 6 of live's right answers
    cases = [
        DatasetCase(id=f"c{i}", inputs={"question": f"q{i}"}, expected=f"answer {i}")
        for i in range(40)
    ]
    report = evaluate(
        cases,
        {CANDIDATE: answering(set(range(30))), LIVE: answering(set(range(36)))},
        concurrency=8,
    )
    summary = report.summary()
    # Then the accuracy delta has a 95% interval around it and the exact test its counts
    lo, hi = summary["deltas_ci95"]["accuracy_delta"]
    assert lo <= summary["deltas"]["accuracy_delta"] <= hi < 0
    assert summary["paired_test"] == {
        "method": "exact McNemar",
        "b": 6,
        "c": 0,
        "p_value": pytest.approx(2 / 64),
    }
    # And deltas stay plain numbers (readers format each one as a number)
    assert all(isinstance(v, float) for v in summary["deltas"].values() if v is not None)
    assert summary["throttled_cases"] == 0


def test_the_comparison_does_not_depend_on_how_shards_were_concatenated() -> None:
    # Given one evaluation, and its results split in shards and merged in another order
    whole = evaluate(
        CASES, {CANDIDATE: answering({0, 1, 2, 5}), LIVE: answering({0, 1, 2, 3, 4})}, concurrency=4
    )
    shuffled = list(whole.results)
    random.Random(1).shuffle(shuffled)
    merged = build_report(shuffled)
    # Then the comparison (intervals included) is the same
    assert merged.comparison == whole.comparison
    assert merged.sides == whole.sides


# --------------------------------------------------------------------------- throttling


class FakeClock:
    """Time that moves only when someone sleeps: rate limits tested without wall clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def throttling(fail_times: int, exc: Exception) -> tuple[Any, list[int]]:
    """An invoker that raises ``exc`` the first ``fail_times`` calls per case, then answers."""
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def invoke(inputs: dict[str, str]) -> Mapping[str, Any]:
        with lock:
            calls[inputs["question"]] = calls.get(inputs["question"], 0) + 1
            n = calls[inputs["question"]]
        if n <= fail_times:
            raise exc
        return {"output": f"This is answer {inputs['question'][1:]}."}

    return invoke, calls


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "Rate exceeded"}}, "Converse")


class TooManyRequestsException(Exception):
    """Named like boto3's modeled Lambda throttle."""


@pytest.mark.parametrize(
    "exc",
    [
        client_error("ThrottlingException"),
        client_error("TooManyRequestsException"),
        TooManyRequestsException("slow down"),
        Throttled("function error ThrottlingException"),
    ],
)
def test_throttling_is_retried_with_backoff_and_scored_on_the_answer(exc: Exception) -> None:
    # Given a provider that throttles each case twice before answering
    invoke, calls = throttling(2, exc)
    clock = FakeClock()
    retry = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=0.8)
    # When evaluated under a known, far higher quota (no adaptive pacing: every sleep is a backoff)
    report = evaluate(
        CASES[:4], {CANDIDATE: invoke}, concurrency=2, retry=retry, rate_limit=1e9, sleep=clock.sleep
    )
    # Then every case was called 3 times, answered, and scored right (never as wrong)
    assert set(calls.values()) == {3}
    assert all(r.score == 1.0 and r.error is None and r.attempts == 3 for r in report.results)
    # And it waited with jittered exponential backoff, capped
    assert len(clock.sleeps) == 8
    assert all(0.0 <= s <= 0.8 for s in clock.sleeps)


def test_backoff_delays_are_full_jitter_under_a_growing_cap() -> None:
    policy = RetryPolicy(base_delay=0.25, max_delay=2.0)
    rng = random.Random(0)
    for attempt, cap in [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (7, 2.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert 0.0 <= min(delays) and max(delays) <= cap
        assert max(delays) > cap * 0.8  # it uses the whole range


def test_a_throttle_that_outlasts_the_retries_is_recorded_never_scored_wrong() -> None:
    # Given a candidate that is always throttled on case 3, and a live side that answers
    def candidate(inputs: dict[str, str]) -> Mapping[str, Any]:
        if inputs["question"] == "q3":
            raise client_error("ThrottlingException")
        return {"output": f"This is answer {inputs['question'][1:]}."}

    clock = FakeClock()
    # When evaluated with 3 attempts
    report = evaluate(
        CASES,
        {CANDIDATE: candidate, LIVE: answering(set(range(10)))},
        concurrency=3,
        retry=RetryPolicy(max_attempts=3),
        sleep=clock.sleep,
    )
    # Then the case is recorded as throttled with its error, after 3 attempts
    [throttled] = [r for r in report.results if r.throttled]
    assert throttled.case_id == "c3" and throttled.attempts == 3
    assert throttled.error is not None and "ThrottlingException" in throttled.error
    # And it is left out on both sides: no wrong answer, no error, accuracy untouched
    cand, live = report.sides[CANDIDATE], report.sides[LIVE]
    assert (cand.n, cand.accuracy, cand.errors, cand.throttled) == (9, 1.0, 0, 1)
    assert (live.n, live.accuracy, live.throttled) == (9, 1.0, 0)
    assert report.throttled_case_ids == ["c3"] and report.n_cases == 9
    assert report.comparison is not None and report.comparison.n_pairs == 9
    # And the gate sees one case less: too few is inconclusive, naming why
    verdict = evaluate_gate(report, ReleasePolicy(min_cases=10))
    assert verdicts(verdict)["min_cases"] == "inconclusive"
    assert "(1 left out: throttled)" in verdict.failures[0].message


def test_other_errors_are_not_retried() -> None:
    invoke, calls = throttling(5, client_error("ValidationException"))
    clock = FakeClock()
    report = evaluate(CASES[:2], {CANDIDATE: invoke}, concurrency=1, sleep=clock.sleep)
    assert set(calls.values()) == {1} and clock.sleeps == []
    assert all(r.error and "ValidationException" in r.error and not r.throttled for r in report.results)


@pytest.mark.parametrize(
    ("exc", "throttle"),
    [
        (client_error("ThrottlingException"), True),
        (client_error("ProvisionedThroughputExceededException"), True),
        (client_error("AccessDeniedException"), False),
        (TooManyRequestsException(), True),
        (Throttled(), True),
        (RuntimeError("ThrottlingException: in the message only"), False),
    ],
)
def test_is_throttle(exc: Exception, throttle: bool) -> None:
    assert is_throttle(exc) is throttle


# --------------------------------------------------------------------------- rate limit


def test_the_token_bucket_spaces_grants_across_threads() -> None:
    # Given a 10/s bucket on a clock that stands still (so every grant is a reservation)
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock.time, sleep=lambda s: None)
    grants: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            granted = bucket.acquire()
            with lock:
                grants.append(granted)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then 200 grants are exactly 0.1 s apart: no window of 1 s holds more than 1 + 10
    grants.sort()
    assert grants == pytest.approx([i / 10 for i in range(200)])
    assert max(sum(1 for g in grants if start <= g < start + 1.0) for start in grants) <= 11


def test_a_burst_is_allowed_then_the_rate_holds() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, burst=3, clock=clock.time, sleep=clock.sleep)
    grants = [bucket.acquire() for _ in range(7)]
    assert grants == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0])


def test_evaluate_honours_the_rate_limit_per_window_of_a_fake_clock() -> None:
    # Given a 5 calls/s limit and an invoker that notes the (fake) time of each call
    clock = FakeClock()
    called_at: list[float] = []

    def invoke(inputs: dict[str, str]) -> Mapping[str, Any]:
        called_at.append(clock.time())
        return {"output": "x"}

    cases = [DatasetCase(id=f"c{i}", inputs={"question": f"q{i}"}, expected="x") for i in range(20)]
    # When 20 cases x 2 sides are evaluated
    evaluate(
        cases, {CANDIDATE: invoke, LIVE: invoke}, concurrency=1, rate_limit=5,
        clock=clock.time, sleep=clock.sleep,
    )
    # Then no 1-second window saw more than 1 + 5 calls, and 40 calls took >= 39 / 5 s
    assert len(called_at) == 40
    assert max(sum(1 for t in called_at if s <= t < s + 1.0) for s in called_at) <= 6
    assert called_at[-1] >= 39 / 5 - 1e-9


def test_a_rate_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)


# --------------------------------------------------------------------------- judge


class GatePolicy(ReleasePolicy):
    """The policy with the latency and cost limits (proposed for models.ReleasePolicy)."""

    max_p95_latency_increase_ms: float | None = None
    max_p95_latency_increase_ratio: float | None = None
    max_cost_increase_ratio: float | None = None


def side(
    name: str,
    scores: list[float],
    *,
    errors: set[int] = frozenset(),
    latencies: list[float] | None = None,
    cost: float | None = None,
) -> list[CaseResult]:
    """One side's results on cases c0..c(n-1) (the same ids on every side: paired)."""
    return [
        CaseResult(
            side=name,
            case_id=f"c{i}",
            score=0.0 if i in errors else s,
            error="Boom: x" if i in errors else None,
            latency_ms=latencies[i] if latencies else 1.0,
            cost_usd=cost,
        )
        for i, s in enumerate(scores)
    ]


def pair(n: int, *, worse: int, better: int = 0, live_right: int | None = None) -> EvaluationReport:
    """n cases; live right on ``live_right`` of them (default all but ``better``); the
    candidate loses ``worse`` of live's right answers and wins ``better`` of its wrong ones."""
    live_right = n - better if live_right is None else live_right
    live = [1.0] * live_right + [0.0] * (n - live_right)
    cand = list(live)
    for i in range(worse):
        cand[i] = 0.0
    for i in range(better):
        cand[n - 1 - i] = 1.0
    return build_report(side(CANDIDATE, cand) + side(LIVE, live))


def verdicts(verdict: Any) -> dict[str, str]:
    return {c.name: c.verdict for c in verdict.criteria}


def criterion(report: EvaluationReport, name: str, policy: ReleasePolicy | None = None) -> Criterion:
    return next(c for c in evaluate_gate(report, policy or GatePolicy()).criteria if c.name == name)


def test_judge_passes_a_candidate_within_every_criterion() -> None:
    # Given candidate and live equal on 20 cases, no errors
    scores = [1.0] * 17 + [0.0] * 3
    report = build_report(side(CANDIDATE, scores) + side(LIVE, scores))
    # When judged with the default policy
    verdict = evaluate_gate(report, ReleasePolicy())
    # Then it passes, the criteria the policy doesn't set don't apply, raise_if_failed is silent
    assert verdict.passed
    assert verdicts(verdict) == {
        "min_cases": "pass",
        "accuracy_drop": "pass",
        "min_accuracy": "pass",
        "max_error_rate": "pass",
        "p95_latency_increase_ms": "not_applicable",
        "p95_latency_increase_ratio": "not_applicable",
        "cost_increase_ratio": "not_applicable",
    }
    verdict.raise_if_failed()


def test_judge_allows_a_drop_of_exactly_the_allowed_points() -> None:
    # Given candidate 0.80 vs live 0.85 on 20 cases: a 5.0 point drop, the default allowance
    assert criterion(pair(20, worse=1, live_right=17), "accuracy_drop").verdict == "pass"


def test_a_two_point_wobble_is_not_a_regression() -> None:
    # Given 40 cases where the candidate lost one of live's answers (2.5 points)
    c = criterion(pair(40, worse=1), "accuracy_drop")
    # Then it passes: within the allowance and no evidence of being worse at all
    assert c.verdict == "pass"
    assert c.p_value == 1.0 and c.interval is not None and c.interval[1] > 0.05


def test_a_real_but_small_drop_on_many_cases_passes() -> None:
    # Given 2,000 cases and a significant 3-point drop whose whole interval is under 5 points
    c = criterion(pair(2000, worse=60), "accuracy_drop")
    assert c.p_value is not None and c.p_value < 1e-10
    assert c.interval is not None and c.interval[1] < 0.05
    # Then it passes: measurably worse, but confidently within the allowance
    assert c.verdict == "pass"


def test_a_significant_drop_beyond_the_allowance_fails_with_its_numbers() -> None:
    # Given candidate 0.62 vs live 0.85 over 100 cases (23 lost answers)
    report = pair(100, worse=23, live_right=85)
    verdict = evaluate_gate(report, ReleasePolicy(max_accuracy_drop=0.05))
    # Then it fails on the drop, and the error gives the drop, its interval and the test
    assert verdicts(verdict)["accuracy_drop"] == "fail"
    with pytest.raises(GateFailed) as raised:
        verdict.raise_if_failed()
    message = str(raised.value)
    assert message.startswith(
        "accuracy_drop: candidate 0.62 vs live 0.85 (drop 23.0 pts > 5.0 pts allowed; 95% CI "
    )
    assert "exact McNemar p=2.4e-07, 23 worse / 0 better)" in message


def test_a_drop_beyond_the_allowance_within_noise_is_inconclusive() -> None:
    # Given 40 cases where the candidate lost 3 answers: 7.5 points, p = 0.25
    c = criterion(pair(40, worse=3), "accuracy_drop")
    # Then it is inconclusive (and fails closed): more cases are needed to tell
    assert c.verdict == "inconclusive"
    assert c.p_value == pytest.approx(0.25)
    # and it says how many cases would settle it: Connor's n for the observed drop at the observed discordance
    needed = gate_stats.cases_needed(0.075, 3 / 40, 0.05)
    assert "not significant" in c.message
    assert f"about {needed} cases in all ({needed - 40} more) would settle it" in c.message
    assert not evaluate_gate(pair(40, worse=3), GatePolicy()).passed


def test_a_significant_drop_within_the_allowance_whose_interval_reaches_past_it_is_inconclusive() -> None:
    # Given 200 cases, 9 lost answers: 4.5 points, p = 0.004, the interval reaching 7+ points
    c = criterion(pair(200, worse=9), "accuracy_drop")
    assert c.interval is not None and c.interval[1] > 0.05 and c.observed == pytest.approx(0.045)
    # Then it is inconclusive: really worse, and maybe by more than allowed
    assert c.verdict == "inconclusive"
    assert "measurably worse" in c.message
    # and how many cases would bring the interval's upper end within the limit (its width ~ 1/sqrt(n))
    needed = math.ceil(200 * ((c.interval[1] - 0.045) / (0.05 - 0.045)) ** 2)
    assert f"about {needed} cases in all" in c.message


def test_a_better_candidate_passes_the_drop() -> None:
    c = criterion(pair(40, worse=0, better=12, live_right=28), "accuracy_drop")
    assert c.verdict == "pass" and c.observed == pytest.approx(-0.3)


def test_the_gate_failure_names_every_failed_and_inconclusive_criterion() -> None:
    # Given 8 cases (2 errors), accuracy 0.25 vs live 1.0, against a strict policy
    report = build_report(
        side(CANDIDATE, [1.0] * 2 + [0.0] * 6, errors={6, 7}) + side(LIVE, [1.0] * 8)
    )
    policy = ReleasePolicy(
        min_cases=10, min_accuracy=0.7, max_error_rate=0.05, max_accuracy_drop=0.05
    )
    # When judged
    verdict = evaluate_gate(report, policy)
    # Then every criterion but none passes, and the message names each with its numbers
    assert {k: v for k, v in verdicts(verdict).items() if v != "not_applicable"} == {
        "min_cases": "inconclusive",
        "accuracy_drop": "fail",
        "min_accuracy": "fail",
        "max_error_rate": "fail",
    }
    with pytest.raises(GateFailed) as raised:
        verdict.raise_if_failed()
    message = str(raised.value)
    assert "min_cases: 8 cases evaluated, policy needs at least 10" in message
    assert "accuracy_drop: candidate 0.25 vs live 1.00 (drop 75.0 pts > 5.0 pts allowed" in message
    assert "exact McNemar p=0.031, 6 worse / 0 better" in message
    assert "min_accuracy: candidate accuracy 0.25 < 0.70 required" in message
    assert "max_error_rate: candidate error rate 25.0% (2/8) > 5.0% allowed" in message


def test_too_few_cases_is_inconclusive_and_fails_closed() -> None:
    # Given a perfect candidate on 5 cases, the policy needing 10
    verdict = evaluate_gate(build_report(side(CANDIDATE, [1.0] * 5)), ReleasePolicy(min_cases=10))
    # Then the gate is not passed: missing evidence is never a pass
    assert verdicts(verdict)["min_cases"] == "inconclusive"
    assert not verdict.passed
    with pytest.raises(GateFailed, match="min_cases: 5 cases evaluated"):
        verdict.raise_if_failed()


def test_a_first_release_has_no_comparison_to_judge() -> None:
    # Given no live side, and a policy with every limit set
    policy = GatePolicy(
        max_p95_latency_increase_ms=10, max_p95_latency_increase_ratio=0.1, max_cost_increase_ratio=0.1
    )
    verdict = evaluate_gate(build_report(side(CANDIDATE, [1.0] * 12)), policy)
    # Then the comparative criteria don't apply and the gate passes on the rest
    assert {k for k, v in verdicts(verdict).items() if v == "not_applicable"} == {
        "accuracy_drop", "p95_latency_increase_ms", "p95_latency_increase_ratio", "cost_increase_ratio",
    }
    assert verdict.passed


def test_judge_needs_a_candidate() -> None:
    with pytest.raises(EvaluationFailed, match="no candidate side"):
        evaluate_gate(build_report(side(LIVE, [1.0] * 12)), ReleasePolicy())


@pytest.mark.parametrize(
    ("errors", "verdict"), [(set(), "pass"), ({0}, "pass"), ({0, 1}, "fail")]
)
def test_max_error_rate(errors: set[int], verdict: str) -> None:
    # Given 20 cases and at most 5% errors allowed (1 of 20)
    report = build_report(side(CANDIDATE, [1.0] * 20, errors=errors))
    assert criterion(report, "max_error_rate").verdict == verdict


def test_max_error_rate_and_accuracy_are_inconclusive_with_nothing_scored() -> None:
    report = build_report(
        [CaseResult(side=CANDIDATE, case_id="c0", score=0.0, throttled=True, error="t", latency_ms=1)]
    )
    verdict = evaluate_gate(report, ReleasePolicy())
    assert verdicts(verdict)["max_error_rate"] == "inconclusive"
    assert verdicts(verdict)["min_accuracy"] == "inconclusive"


@pytest.mark.parametrize(("floor", "verdict"), [(0.85, "pass"), (0.9, "fail")])
def test_min_accuracy(floor: float, verdict: str) -> None:
    report = build_report(side(CANDIDATE, [1.0] * 17 + [0.0] * 3))
    assert criterion(report, "min_accuracy", GatePolicy(min_accuracy=floor)).verdict == verdict


def latency_report(cand: list[float], live: list[float]) -> EvaluationReport:
    n = len(cand)
    return build_report(
        side(CANDIDATE, [1.0] * n, latencies=cand) + side(LIVE, [1.0] * n, latencies=live)
    )


STEADY = [50.0 + (i % 5) for i in range(40)]


@pytest.mark.parametrize(
    ("cand", "limit", "verdict"),
    [
        ([x + 5 for x in STEADY], 20.0, "pass"),  # 5 ms slower, 20 allowed
        ([x + 50 for x in STEADY], 20.0, "fail"),  # 50 ms slower, clearly
        ([x + 18 for x in STEADY], 20.0, "pass"),
        # one slow outlier among 10: p95 up 33 ms but the interval includes 0
        ([10, 20, 30, 40, 50, 60, 70, 80, 90, 160], 10.0, "inconclusive"),
    ],
)
def test_p95_latency_increase_in_ms(cand: list[float], limit: float, verdict: str) -> None:
    live = STEADY if len(cand) == 40 else [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    c = criterion(
        latency_report(cand, live), "p95_latency_increase_ms",
        GatePolicy(max_p95_latency_increase_ms=limit, min_cases=1),
    )
    assert c.verdict == verdict, c.message
    assert c.unit == "ms" and c.threshold == limit


@pytest.mark.parametrize(("factor", "verdict"), [(1.05, "pass"), (1.5, "fail")])
def test_p95_latency_increase_as_a_ratio(factor: float, verdict: str) -> None:
    report = latency_report([x * factor for x in STEADY], STEADY)
    c = criterion(report, "p95_latency_increase_ratio", GatePolicy(max_p95_latency_increase_ratio=0.2))
    assert c.verdict == verdict
    assert c.observed == pytest.approx(factor - 1)


def cost_report(cand: float | None, live: float | None) -> EvaluationReport:
    return build_report(side(CANDIDATE, [1.0] * 20, cost=cand) + side(LIVE, [1.0] * 20, cost=live))


@pytest.mark.parametrize(
    ("cand", "live", "verdict"),
    [(1.1e-5, 1e-5, "pass"), (2e-5, 1e-5, "fail"), (5e-6, 1e-5, "pass"), (2e-5, None, "inconclusive")],
)
def test_cost_increase(cand: float, live: float | None, verdict: str) -> None:
    c = criterion(cost_report(cand, live), "cost_increase_ratio", GatePolicy(max_cost_increase_ratio=0.2))
    assert c.verdict == verdict, c.message


def test_a_cost_fail_names_its_numbers() -> None:
    verdict = evaluate_gate(cost_report(2e-5, 1e-5), GatePolicy(max_cost_increase_ratio=0.2))
    with pytest.raises(GateFailed, match=r"cost_increase_ratio: cost per request \(USD\) candidate 2e-05 "
                       r"vs live 1e-05 \(\+100\.0% > \+20\.0% allowed; 95% CI \+100\.0% to \+100\.0%\)"):
        verdict.raise_if_failed()


def test_a_report_stored_before_comparisons_is_judged_the_same() -> None:
    # Given a report as stored before it carried a comparison
    report = pair(100, worse=23, live_right=85)
    old = EvaluationReport.model_validate(report.model_dump(exclude={"comparison"}))
    assert old.comparison is None
    # Then judging computes the comparison and reaches the same verdict
    assert evaluate_gate(old, ReleasePolicy()) == evaluate_gate(report, ReleasePolicy())
