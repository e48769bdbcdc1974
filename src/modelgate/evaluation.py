"""Offline evaluation: the same dataset against candidate and live, then a gate.

Shape:

* ``evaluate`` only runs calls (bounded pool, rate limit, throttling retried) and records
  one ``CaseResult`` per (side, case);
* ``build_report`` turns results into per-side metrics and the paired comparison, a pure
  function: evaluation shards merge by concatenating their results;
* ``judge`` turns a report and the service's ``ReleasePolicy`` into criteria verdicts.

Accuracy is the weight-averaged score over all cases; a call that raised scores 0 and is
also counted in ``error_rate``, so a broken candidate can't hide behind "no answer".
Latency percentiles and cost are over successful calls only: a fast failure must not make
a broken candidate look fast or cheap.

A *throttled* call is different: the provider refused to run it, so it says nothing about
the model. It is retried with backoff; if it is still throttled it is recorded (with its
error text) but never scored. Its case is left out on every side, so the comparison stays
paired, and the gate's ``min_cases`` sees fewer cases: a heavily throttled evaluation is
inconclusive, never a wrong answer.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from modelgate import stats
from modelgate.errors import DatasetInvalid, EvaluationFailed, GateFailed, ModelgateError
from modelgate.models import ReleasePolicy
from modelgate.scorers import (
    SCORERS,
    Scorer,
    ScoringModels,
    check_case,
    normalise,
    register_scorer,
    uses_models,
)
from modelgate.stats import percentile

__all__ = [
    "CANDIDATE",
    "LIVE",
    "SCORERS",
    "CaseResult",
    "Comparison",
    "Criterion",
    "DatasetCase",
    "DeltaEstimate",
    "EvaluationReport",
    "GateVerdict",
    "PairedTest",
    "RetryPolicy",
    "Scorer",
    "SideMetrics",
    "Throttled",
    "TokenBucket",
    "build_report",
    "compare",
    "evaluate",
    "format_side",
    "is_throttle",
    "judge",
    "normalise",
    "parse_dataset",
    "percentile",
    "register_scorer",
]

CANDIDATE = "candidate"
LIVE = "live"
_MAX_OUTPUT_CHARS = 2_000  # per-case output kept in the full report (S3), bounded
_EPSILON = 1e-9  # float slack so 0.80 vs 0.85 - 0.05 is not a failure by rounding

Invoker = Callable[[dict[str, str]], Mapping[str, Any]]

# --------------------------------------------------------------------------- dataset

# Any JSON value: each scorer checks the shape it needs, with a message naming the scorer.
Expected = JsonValue


class DatasetCase(BaseModel):
    """One JSONL line of a service's evaluation dataset (see modelgate.scorers for scorers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    inputs: dict[str, str]
    expected: Expected = None
    # A registered scorer name (not a Literal, so register_scorer extends it).
    scorer: str = "contains"
    options: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    weight: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)

    @field_validator("scorer")
    @classmethod
    def _known_scorer(cls, value: str) -> str:
        if value not in SCORERS:
            raise ValueError(f"unknown scorer {value!r} (known: {', '.join(sorted(SCORERS))})")
        return value

    @model_validator(mode="after")
    def _fits_scorer(self) -> DatasetCase:
        check_case(self)
        return self


def parse_dataset(text: str) -> list[DatasetCase]:
    """Parse a JSONL dataset; the first bad line is reported by its 1-based line number."""
    cases: list[DatasetCase] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = DatasetCase.model_validate_json(line)
        except ValidationError as exc:
            raise DatasetInvalid(f"dataset line {number}: {_problems(exc)}") from exc
        if case.id in seen:
            raise DatasetInvalid(
                f"dataset line {number}: duplicate case id {case.id!r} "
                f"(first on line {seen[case.id]})"
            )
        seen[case.id] = number
        cases.append(case)
    if not cases:
        raise DatasetInvalid("dataset has no cases")
    return cases


def _problems(exc: ValidationError) -> str:
    """Pydantic's errors as "field: message"; a whole-line error is just its message."""
    out = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        where = ".".join(str(p) for p in error["loc"])
        out.append(f"{where}: {message}" if where else message)
    return "; ".join(out)


# --------------------------------------------------------------------------- results


class CaseResult(BaseModel):
    """One call of one side on one case (with what the case asked, for the report)."""

    model_config = ConfigDict(frozen=True)

    side: str
    case_id: str
    weight: float = 1.0
    score: float
    error: str | None = None
    throttled: bool = False
    attempts: int = 1
    latency_ms: float
    output: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    scorer: str | None = None
    expected: Expected = None
    inputs: dict[str, str] | None = None
    tags: list[str] = Field(default_factory=list)


class SideMetrics(BaseModel):
    """One side's metrics over the scored cases (throttled cases are left out)."""

    model_config = ConfigDict(frozen=True)

    n: int
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


def side_metrics(results: list[CaseResult], *, throttled: int = 0) -> SideMetrics:
    ok = [r for r in results if r.error is None]
    total_weight = sum(r.weight for r in results)
    latencies = [r.latency_ms for r in ok]
    costs = [r.cost_usd for r in ok if r.cost_usd is not None]
    input_tokens = sum(r.input_tokens for r in ok)
    output_tokens = sum(r.output_tokens for r in ok)
    return SideMetrics(
        n=len(results),
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
    by_id = {r.case_id: r for r in live}
    pairs = sorted(
        ((c, by_id[c.case_id]) for c in candidate if c.case_id in by_id),
        key=lambda p: p[0].case_id,
    )
    if not pairs:
        return None
    cs = [c.score for c, _ in pairs]
    ls = [lv.score for _, lv in pairs]
    weights = [c.weight for c, _ in pairs]

    def errors(side: int) -> list[float]:
        return [float(p[side].error is not None) for p in pairs]

    def latencies(side: int) -> list[float | None]:
        return [None if p[side].error else p[side].latency_ms for p in pairs]

    def costs(side: int) -> list[float | None]:
        return [None if p[side].error else p[side].cost_usd for p in pairs]

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
) -> EvaluationReport:
    """Metrics per side and the paired comparison (merge shards by concatenating results).

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
    )


# --------------------------------------------------------------------------- throttling

THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)


class Throttled(ModelgateError):
    """The provider refused a call for now (rate or quota): retry it, never score it.

    Raise it from an invoker when the throttle arrives in some other shape (e.g. a Lambda
    function error whose errorType is ThrottlingException).
    """


def is_throttle(exc: BaseException) -> bool:
    """Whether ``exc`` is a throttle: ``Throttled``, a botocore ClientError with a throttling
    code, or any exception class named like one (boto3's modeled exceptions)."""
    if isinstance(exc, Throttled):
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = (response.get("Error") or {}).get("Code")
        if code in THROTTLE_CODES:
            return True
    return any(cls.__name__ in THROTTLE_CODES for cls in type(exc).__mro__)


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


@dataclass(frozen=True)
class _Runner:
    limiter: TokenBucket | None
    retry: RetryPolicy
    models: ScoringModels | None
    sleep: Callable[[float], None]
    rng: random.Random

    def run(self, side: str, case: DatasetCase, invoke: Invoker) -> CaseResult:
        base: dict[str, Any] = {
            "side": side,
            "case_id": case.id,
            "weight": case.weight,
            "scorer": case.scorer,
            "expected": case.expected,
            "inputs": dict(case.inputs),
            "tags": list(case.tags),
        }
        attempt = 0
        while True:
            attempt += 1
            if self.limiter is not None:
                self.limiter.acquire()
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
                    if attempt < self.retry.max_attempts:
                        self.sleep(self.retry.delay(attempt, self.rng))
                        continue
                    return self._throttled(base, exc, attempt, latency_ms, "call")
                return CaseResult(
                    **base,
                    score=0.0,
                    error=f"{type(exc).__name__}: {exc}"[:_MAX_OUTPUT_CHARS],
                    attempts=attempt,
                    latency_ms=latency_ms,
                )
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


def evaluate(
    cases: list[DatasetCase],
    invokers: Mapping[str, Invoker],
    *,
    concurrency: int,
    rate_limit: float | None = None,
    retry: RetryPolicy | None = None,
    scoring_models: ScoringModels | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    jitter_seed: int | None = None,
    resamples: int = stats.DEFAULT_RESAMPLES,
) -> EvaluationReport:
    """Run every case against every side (same cases for all), ``concurrency`` calls at once.

    ``rate_limit``: calls per second over all sides together (candidate and live usually
    share one account quota), enforced by a ``TokenBucket``; retries pass through it too.
    Throttled calls are retried per ``retry`` (see ``RetryPolicy``); other invoker
    exceptions become per-case errors. Latency is wall-clock around the attempt that
    answered: rate-limit waits and backoff are ours, not the model's.
    ``scoring_models`` is required, and only used, when a case's scorer needs a model
    (``semantic``, ``llm_judge``): local or Bedrock is the caller's explicit choice.
    """
    if not cases:
        raise EvaluationFailed("no cases to evaluate")
    if CANDIDATE not in invokers:
        raise EvaluationFailed(f"no {CANDIDATE!r} side to evaluate (sides: {list(invokers)})")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    needing = sorted({c.scorer for c in cases if uses_models(c.scorer)})
    if needing and scoring_models is None:
        raise EvaluationFailed(
            f"the dataset uses scorer(s) {', '.join(map(repr, needing))}, which need scoring "
            "models: pass scoring_models (modelgate.scorers.scoring_models_for('local' or "
            "'bedrock')); Modelgate never picks one for you"
        )
    runner = _Runner(
        limiter=TokenBucket(rate_limit, clock=clock, sleep=sleep) if rate_limit else None,
        retry=retry or RetryPolicy(),
        models=scoring_models,
        sleep=sleep,
        rng=random.Random(jitter_seed),
    )
    jobs = [(side, case, invoke) for side, invoke in invokers.items() for case in cases]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval") as pool:
        results = list(pool.map(lambda job: runner.run(*job), jobs))
    return build_report(results, resamples=resamples)


# --------------------------------------------------------------------------- gate

Verdict = Literal["pass", "fail", "inconclusive", "not_applicable"]
SIGNIFICANCE = 0.05


class Criterion(BaseModel):
    """One gate criterion: its verdict, the observed number, the policy's threshold and,
    where the number is an estimate, its 95% interval and the paired test's p-value."""

    model_config = ConfigDict(frozen=True)

    name: str
    verdict: Verdict
    observed: float | None
    threshold: float | None
    message: str
    interval: Interval | None = None
    p_value: float | None = None
    unit: str = ""


class GateVerdict(BaseModel):
    """Every criterion's verdict; inconclusive fails closed."""

    model_config = ConfigDict(frozen=True)

    criteria: list[Criterion]

    @property
    def passed(self) -> bool:
        return all(c.verdict in ("pass", "not_applicable") for c in self.criteria)

    @property
    def failures(self) -> list[Criterion]:
        return [c for c in self.criteria if c.verdict in ("fail", "inconclusive")]

    def raise_if_failed(self) -> None:
        """Raise ``GateFailed`` naming every failed or inconclusive criterion with its numbers."""
        if not self.passed:
            raise GateFailed("; ".join(f"{c.name}: {c.message}" for c in self.failures))


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


def judge(report: EvaluationReport, policy: ReleasePolicy) -> GateVerdict:
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


def format_side(name: str, metrics: dict[str, Any]) -> str:
    """One line of a side's metrics for people (approval message, `modelgate status`)."""

    def num(key: str, fmt: str, unit: str = "") -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{format(value, fmt)}{unit}"

    return (
        f"{name:9} accuracy {num('accuracy', '.3f')}  p95 {num('latency_p95_ms', '.1f', ' ms')}  "
        f"cost/request {num('cost_per_request_usd', '.6f', ' USD')}  errors {num('error_rate', '.1%')}"
    )
