"""Running an evaluation: a bounded pool of calls, a rate limit, throttles retried.

``run_cases`` only runs calls and records one ``CaseResult`` per (side, case) and the judge's
checks; ``evaluate`` adds the report (``comparison.build_report``). A *throttled*
call says nothing about the model: it is retried with backoff (full jitter); if it is
still throttled it is recorded (with its error text) but never scored, and its case is
left out on every side.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from modelgate import stats
from modelgate.errors import (
    EvaluationFailed,
    is_throttle,
)
from modelgate.evaluation.adaptive import AdaptiveRateLimiter, Ticket
from modelgate.evaluation import CANDIDATE
from modelgate.evaluation.dataset import DatasetCase
from modelgate.evaluation.judges import JUDGE_SCORER, JudgeCheck, JudgeRun, rubric_digest
from modelgate.evaluation.model_scorers import JudgeOptions, ScoringModels
from modelgate.evaluation.results import CaseResult
from modelgate.evaluation.scorers import SCORERS, uses_models

if TYPE_CHECKING:
    # The report's models: ``evaluate`` and ``score_answers`` import them when they build one.
    from modelgate.evaluation.comparison import EvaluationReport

_MAX_OUTPUT_CHARS = 2_000  # per-case output kept in the full report (S3), bounded

Invoker = Callable[[dict[str, str]], Mapping[str, Any]]

# --------------------------------------------------------------------------- throttling

@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter for throttled calls (AWS's recommended shape).

    Attempt k (1-based) that is throttled waits uniform(0, min(max_delay, base * 2**(k-1)))
    seconds before attempt k+1; after ``max_attempts`` the case is recorded as throttled.
    """

    max_attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError(f"invalid retry policy {self}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class TokenBucket:
    """A thread-safe token bucket: at most ``rate`` calls per second, ``burst`` at once.

    ``acquire`` reserves the next slot under a lock and sleeps outside it, so waiting
    threads queue fairly and any window of t seconds admits at most ``burst + rate * t``
    calls. The default burst of 1 spreads calls evenly (providers count quotas over short
    windows). ``clock`` and ``sleep`` are injectable: tests use a fake clock, not wall time.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number of calls per second, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = clock()

    def acquire(self) -> float:
        """Wait for a slot; return the clock time the slot was granted for."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return now + wait


# --------------------------------------------------------------------------- running


class _Runner(NamedTuple):
    limiter: TokenBucket | AdaptiveRateLimiter | None
    retry: RetryPolicy
    models: ScoringModels | None
    sleep: Callable[[float], None]
    rng: random.Random

    def run(self, side: str, case: DatasetCase, invoke: Invoker, repeat: int = 0) -> CaseResult:
        base: dict[str, Any] = {
            "side": side,
            "case_id": case.id,
            "repeat": repeat,
            "weight": case.weight,
            "scorer": case.scorer,
            "expected": case.expected,
            "inputs": dict(case.inputs),
            "tags": list(case.tags),
        }
        attempt = 0
        while True:
            attempt += 1
            ticket = self.limiter.acquire() if self.limiter is not None else None
            start = time.perf_counter()
            try:
                response = invoke(dict(case.inputs))
                latency_ms = (time.perf_counter() - start) * 1000.0
                output = response["output"]
                if not isinstance(output, str):
                    raise TypeError(f"response 'output' is {type(output).__name__}, not str")
                usage = response.get("usage") or {}
                input_tokens = int(usage.get("input_tokens", 0))
                output_tokens = int(usage.get("output_tokens", 0))
                cost = response.get("cost_usd")
                cost_usd = float(cost) if cost is not None else None
            except Exception as exc:  # noqa: BLE001 - any invoker failure is the side's error
                latency_ms = (time.perf_counter() - start) * 1000.0
                if is_throttle(exc):
                    self._feedback(ticket, throttled=True)
                    if attempt < self.retry.max_attempts:
                        self.sleep(self.retry.delay(attempt, self.rng))
                        continue
                    return self._throttled(base, exc, attempt, latency_ms, "call")
                self._feedback(ticket, throttled=False)  # answered (with an error): frees its window slot
                return CaseResult(
                    **base,
                    score=0.0,
                    error=f"{type(exc).__name__}: {exc}"[:_MAX_OUTPUT_CHARS],
                    attempts=attempt,
                    latency_ms=latency_ms,
                )
            self._feedback(ticket, throttled=False, latency_s=latency_ms / 1000.0)
            break

        scoring_attempt = 0
        while True:
            scoring_attempt += 1
            try:
                score = _score(output, case, self.models)
            except _ScorerThrottled as throttled:
                if scoring_attempt < self.retry.max_attempts:
                    self.sleep(self.retry.delay(scoring_attempt, self.rng))
                    continue
                return self._throttled(base, throttled.cause, attempt, latency_ms, "scoring")
            break
        return CaseResult(
            **base,
            score=score,
            attempts=attempt,
            latency_ms=latency_ms,
            output=output[:_MAX_OUTPUT_CHARS],
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd,
        )

    def _feedback(self, ticket: Ticket | float | None, *, throttled: bool, latency_s: float | None = None) -> None:
        """Tell an adaptive limiter how a call went (a fixed rate needs no feedback)."""
        if isinstance(self.limiter, AdaptiveRateLimiter) and isinstance(ticket, Ticket):
            self.limiter.observe(ticket, throttled=throttled, latency_s=latency_s)

    def _throttled(
        self, base: dict[str, Any], exc: BaseException, attempts: int, latency_ms: float, what: str
    ) -> CaseResult:
        return CaseResult(
            **base,
            score=0.0,
            throttled=True,
            error=(
                f"throttled ({what}) after {self.retry.max_attempts} attempts: "
                f"{type(exc).__name__}: {exc}"
            )[:_MAX_OUTPUT_CHARS],
            attempts=attempts,
            latency_ms=latency_ms,
        )


    def check_judge(self, case: DatasetCase, index: int) -> JudgeCheck | None:
        """The judge's grade of the case's ``index``-th human-graded answer (``None``: throttled
        through every retry; the check is left out and the judge's record counts one fewer)."""
        answer = case.graded_answers[index]
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                score = _score(answer.output, case, self.models)
            except _ScorerThrottled:
                if attempt < self.retry.max_attempts:
                    self.sleep(self.retry.delay(attempt, self.rng))
                continue
            return JudgeCheck(case_id=case.id, index=index, human_grade=answer.grade, judge_score=score)
        return None


def judge_run(cases: list[DatasetCase], models: ScoringModels | None, checks: list[JudgeCheck]) -> JudgeRun | None:
    """Which judge graded, under which rubrics (``None``: no llm_judge case)."""
    judged = [c for c in cases if c.scorer == JUDGE_SCORER]
    if not judged or models is None:
        return None
    return JudgeRun(
        model_id=str(getattr(models, "judge_model_id", None) or models.name),
        rubric_sha256=sorted({rubric_digest(JudgeOptions.model_validate(c.options).rubric) for c in judged}),
        checks=sorted(checks, key=lambda c: (c.case_id, c.index)),
    )


class _ScorerThrottled(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _score(output: str, case: DatasetCase, models: ScoringModels | None) -> float:
    """A scorer bug is the dataset's problem, not the candidate's: it fails the evaluation."""
    scorer = SCORERS[case.scorer]
    try:
        score = float(scorer(output, case, models) if uses_models(case.scorer) else scorer(output, case))
    except Exception as exc:
        if is_throttle(exc):  # a judge / embedding model throttled: retried, never scored
            raise _ScorerThrottled(exc) from exc
        raise EvaluationFailed(f"scorer {case.scorer!r} failed on case {case.id!r}: {exc}") from exc
    if not 0.0 <= score <= 1.0:
        raise EvaluationFailed(
            f"scorer {case.scorer!r} returned {score} for case {case.id!r}, outside [0, 1]"
        )
    return score


class CaseResults(NamedTuple):
    """What running the cases gives: one result per call, and the judge's run (None: no llm_judge case)."""

    results: list[CaseResult]
    judge: JudgeRun | None


def evaluate(
    cases: list[DatasetCase],
    invokers: Mapping[str, Invoker],
    *,
    concurrency: int,
    rate_limit: float | Literal["adaptive"] | None = None,
    retry: RetryPolicy | None = None,
    scoring_models: ScoringModels | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    jitter_seed: int | None = None,
    resamples: int = stats.DEFAULT_RESAMPLES,
    repeats: int = 1,
) -> EvaluationReport:
    """``run_cases`` (see there for every argument but ``resamples``), then the report over its
    results: per-side metrics and the paired comparison (``comparison.build_report``)."""
    from modelgate.evaluation.comparison import build_report

    results, judge = run_cases(
        cases, invokers, concurrency=concurrency, rate_limit=rate_limit, retry=retry,
        scoring_models=scoring_models, clock=clock, sleep=sleep, jitter_seed=jitter_seed, repeats=repeats,
    )
    return build_report(results, resamples=resamples, judge=judge)


def run_cases(
    cases: list[DatasetCase],
    invokers: Mapping[str, Invoker],
    *,
    concurrency: int,
    rate_limit: float | Literal["adaptive"] | None = None,
    retry: RetryPolicy | None = None,
    scoring_models: ScoringModels | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    jitter_seed: int | None = None,
    repeats: int = 1,
) -> CaseResults:
    """Run every case against every side (same cases for all), ``concurrency`` calls at once:
    every call's result and the judge's run, no report (``evaluate`` builds one from them).

    ``rate_limit``: calls per second over all sides together (candidate and live usually
    share one account quota), enforced by a ``TokenBucket``; retries pass through it too.
    ``None`` or ``"adaptive"``: the quota is not known, so an ``AdaptiveRateLimiter`` finds it
    from the calls' throttles and latency (unpaced until the first sign of one).
    Throttled calls are retried per ``retry`` (see ``RetryPolicy``); other invoker
    exceptions become per-case errors. Latency is wall-clock around the attempt that
    answered: rate-limit waits and backoff are ours, not the model's.
    ``scoring_models`` is required, and only used, when a case's scorer needs a model
    (``semantic``, ``llm_judge``): local or Bedrock is the caller's explicit choice.
    ``repeats``: calls per case per side (the policy's ``repeats``); the report treats the
    case as the unit (see ``modelgate.evaluation.comparison``).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not cases:
        raise EvaluationFailed("no cases to evaluate")
    if CANDIDATE not in invokers:
        raise EvaluationFailed(f"no {CANDIDATE!r} side to evaluate (sides: {list(invokers)})")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    _require_scoring_models(cases, scoring_models, ": pass scoring_models (modelgate.evaluation.model_scorers."
                            "scoring_models_for('local' or 'bedrock')); Modelgate never picks one for you")
    if rate_limit is None or rate_limit == "adaptive":
        limiter: TokenBucket | AdaptiveRateLimiter = AdaptiveRateLimiter(clock=clock, sleep=sleep)
    elif isinstance(rate_limit, str):
        raise ValueError(f"rate_limit must be calls per second or 'adaptive', got {rate_limit!r}")
    else:
        limiter = TokenBucket(rate_limit, clock=clock, sleep=sleep)
    runner = _Runner(
        limiter=limiter,
        retry=retry or RetryPolicy(),
        models=scoring_models,
        sleep=sleep,
        rng=random.Random(jitter_seed),
    )
    jobs = [
        (side, case, invoke, repeat)
        for side, invoke in invokers.items()
        for case in cases
        for repeat in range(repeats)
    ]
    return _run(runner, jobs, cases, concurrency)


def _require_scoring_models(cases: list[DatasetCase], scoring_models: ScoringModels | None, fix: str) -> None:
    """EvaluationFailed naming the dataset's model-using scorers when no scoring models are given;
    ``fix`` ends the message (what the caller should pass)."""
    needing = sorted({c.scorer for c in cases if uses_models(c.scorer)})
    if needing and scoring_models is None:
        raise EvaluationFailed(
            f"the dataset uses scorer(s) {', '.join(map(repr, needing))}, which need scoring models{fix}"
        )


def _run(
    runner: _Runner, jobs: list[tuple[str, DatasetCase, Invoker, int]], cases: list[DatasetCase], concurrency: int
) -> CaseResults:
    graded = [(case, i) for case in cases for i in range(len(case.graded_answers))]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval") as pool:
        results = list(pool.map(lambda job: runner.run(*job), jobs))
        checks = [c for c in pool.map(lambda job: runner.check_judge(*job), graded) if c is not None]
    return CaseResults(results, judge_run(cases, runner.models, checks))


Answer = Callable[[], Mapping[str, Any]]


def score_answers(
    cases: list[DatasetCase],
    answers: Mapping[str, Mapping[str, Answer]],
    *,
    concurrency: int,
    scoring_models: ScoringModels | None = None,
    resamples: int = stats.DEFAULT_RESAMPLES,
) -> EvaluationReport:
    """Score answers obtained elsewhere (a Bedrock batch job's) exactly as ``evaluate`` scores calls.

    ``answers[side][case id]`` returns the response an invoker would have (``{"output", "usage",
    "cost_usd"}``) or raises what a failed call raises; it goes through the same ``_Runner.run``
    (error text, scorers, judge checks, report), so a gate verdict on batch outputs is the verdict
    on-demand scoring gives on the same outputs. Latencies are those of the replay (none of a
    model): the caller replaces them with measured ones. Every side must answer every case.
    """
    if not cases:
        raise EvaluationFailed("no cases to score")
    if CANDIDATE not in answers:
        raise EvaluationFailed(f"no {CANDIDATE!r} side to score (sides: {list(answers)})")
    for side, by_case in answers.items():
        if missing := [c.id for c in cases if c.id not in by_case]:
            raise EvaluationFailed(f"side {side!r} has no answer for {len(missing)} case(s), first {missing[0]!r}")
    _require_scoring_models(cases, scoring_models, " (policy scoring_models)")
    from modelgate.evaluation.comparison import build_report

    runner = _Runner(limiter=None, retry=RetryPolicy(), models=scoring_models, sleep=time.sleep, rng=random.Random(0))
    jobs = [
        (side, case, (lambda _inputs, answer=by_case[case.id]: answer()), 0)
        for side, by_case in answers.items()
        for case in cases
    ]
    results, judge = _run(runner, jobs, cases, concurrency)
    return build_report(results, resamples=resamples, judge=judge)


# --------------------------------------------------------------------------- gate

