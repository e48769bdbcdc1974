"""Offline evaluation: the same dataset against candidate and live, then a gate.

Shape (so later work slots in without a rewrite):

* ``evaluate`` only runs calls and records one ``CaseResult`` per (side, case);
* ``build_report`` turns results into per-side metrics, a pure function: evaluation shards
  can be merged by concatenating their results, and paired statistics (bootstrap CIs,
  McNemar) can pair candidate and live by ``case_id``;
* ``judge`` turns a report and the service's ``ReleasePolicy`` into criteria verdicts.

Accuracy is the weight-averaged score over all cases; a call that raised scores 0 and is
also counted in ``error_rate``, so a broken candidate can't hide behind "no answer".
Latency percentiles and cost are over successful calls only: a fast failure must not make
a broken candidate look fast or cheap.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelgate.errors import DatasetInvalid, EvaluationFailed, GateFailed
from modelgate.models import ReleasePolicy

CANDIDATE = "candidate"
LIVE = "live"
_MAX_OUTPUT_CHARS = 2_000  # per-case output kept in the full report (S3), bounded
_EPSILON = 1e-9  # float slack so 0.80 vs 0.85 - 0.05 is not a failure by rounding

Invoker = Callable[[dict[str, str]], Mapping[str, Any]]
Scorer = Callable[[str, "DatasetCase"], float]

# --------------------------------------------------------------------------- scorers

SCORERS: dict[str, Scorer] = {}


def register_scorer(name: str) -> Callable[[Scorer], Scorer]:
    """Add a scorer usable as ``"scorer": "<name>"`` in dataset lines.

    A scorer takes the model output and the case and returns a score in [0, 1]::

        @register_scorer("starts_with")
        def _starts_with(output: str, case: DatasetCase) -> float:
            return float(normalise(output).startswith(normalise(str(case.expected))))
    """

    def decorate(fn: Scorer) -> Scorer:
        if name in SCORERS:
            raise ValueError(f"scorer {name!r} is already registered")
        SCORERS[name] = fn
        return fn

    return decorate


def normalise(text: str) -> str:
    """Case-folded, whitespace-collapsed text: formatting isn't what we measure."""
    return " ".join(text.casefold().split())


def _expected_list(case: DatasetCase) -> list[str]:
    return case.expected if isinstance(case.expected, list) else [case.expected]


@register_scorer("exact")
def _exact(output: str, case: DatasetCase) -> float:
    return float(normalise(output) == normalise(str(case.expected)))


@register_scorer("contains")
def _contains(output: str, case: DatasetCase) -> float:
    return float(normalise(str(case.expected)) in normalise(output))


@register_scorer("any_of")
def _any_of(output: str, case: DatasetCase) -> float:
    """1 if the output contains any of the expected phrases (normalised)."""
    text = normalise(output)
    return float(any(normalise(e) in text for e in _expected_list(case)))


@register_scorer("regex")
def _regex(output: str, case: DatasetCase) -> float:
    """``re.search`` as written: use ``(?i)`` in the pattern for case-insensitive."""
    return float(re.search(str(case.expected), output) is not None)


# --------------------------------------------------------------------------- dataset


class DatasetCase(BaseModel):
    """One JSONL line of a service's evaluation dataset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    inputs: dict[str, str]
    expected: str | list[str]
    # A registered scorer name (not a Literal, so register_scorer extends it).
    scorer: str = "contains"
    tags: list[str] = Field(default_factory=list)
    weight: float = Field(default=1.0, gt=0.0)

    @field_validator("scorer")
    @classmethod
    def _known_scorer(cls, value: str) -> str:
        if value not in SCORERS:
            raise ValueError(f"unknown scorer {value!r} (known: {', '.join(sorted(SCORERS))})")
        return value

    @model_validator(mode="after")
    def _expected_fits_scorer(self) -> DatasetCase:
        if self.scorer == "any_of":
            if not isinstance(self.expected, list) or not self.expected:
                raise ValueError("scorer 'any_of' needs expected to be a non-empty list")
        elif self.scorer in ("exact", "contains", "regex") and not isinstance(self.expected, str):
            raise ValueError(f"scorer {self.scorer!r} needs expected to be a string")
        if self.scorer == "regex":
            try:
                re.compile(str(self.expected))
            except re.error as exc:
                raise ValueError(f"expected is not a valid regex: {exc}") from exc
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
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'line'}: {e['msg']}" for e in exc.errors()
            )
            raise DatasetInvalid(f"dataset line {number}: {problems}") from exc
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


# --------------------------------------------------------------------------- results


class CaseResult(BaseModel):
    """One call of one side on one case."""

    model_config = ConfigDict(frozen=True)

    side: str
    case_id: str
    weight: float = 1.0
    score: float
    error: str | None = None
    latency_ms: float
    output: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


class SideMetrics(BaseModel):
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


def percentile(values: Iterable[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default, Hyndman & Fan type 7).

    Chosen over nearest-rank because it is stable on small samples: with 30 cases,
    nearest-rank p95 and p99 would both be the single slowest call.
    """
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside [0, 100]")
    h = (len(xs) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def side_metrics(results: list[CaseResult]) -> SideMetrics:
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
    )


class EvaluationReport(BaseModel):
    """Full report (per-case results: for S3) with a small ``summary()`` (for state)."""

    model_config = ConfigDict(frozen=True)

    n_cases: int
    percentile_method: Literal["linear"] = "linear"
    sides: dict[str, SideMetrics]
    results: list[CaseResult]

    def summary(self) -> dict[str, Any]:
        """Per-side metrics and candidate-minus-live deltas: small enough for SFN state."""
        out: dict[str, Any] = {
            "n_cases": self.n_cases,
            "sides": {name: m.model_dump() for name, m in self.sides.items()},
            "deltas": None,
        }
        cand, live = self.sides.get(CANDIDATE), self.sides.get(LIVE)
        if cand is not None and live is not None:
            out["deltas"] = {
                "accuracy_delta": cand.accuracy - live.accuracy,
                "error_rate_delta": cand.error_rate - live.error_rate,
                "p95_latency_delta_ms": _delta(cand.latency_p95_ms, live.latency_p95_ms),
                "cost_delta_usd": _delta(cand.cost_per_request_usd, live.cost_per_request_usd),
            }
        return out


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def build_report(results: list[CaseResult]) -> EvaluationReport:
    """Metrics per side from per-case results (merge shards by concatenating results)."""
    by_side: dict[str, list[CaseResult]] = {}
    for result in results:
        by_side.setdefault(result.side, []).append(result)
    return EvaluationReport(
        n_cases=len({r.case_id for r in results}),
        sides={side: side_metrics(rs) for side, rs in sorted(by_side.items())},
        results=results,
    )


# --------------------------------------------------------------------------- running


def _run_one(side: str, case: DatasetCase, invoke: Invoker) -> CaseResult:
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
        return CaseResult(
            side=side,
            case_id=case.id,
            weight=case.weight,
            score=0.0,
            error=f"{type(exc).__name__}: {exc}"[:_MAX_OUTPUT_CHARS],
            latency_ms=(time.perf_counter() - start) * 1000.0,
        )
    return CaseResult(
        side=side,
        case_id=case.id,
        weight=case.weight,
        score=_score(output, case),
        latency_ms=latency_ms,
        output=output[:_MAX_OUTPUT_CHARS],
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost_usd,
    )


def _score(output: str, case: DatasetCase) -> float:
    """A scorer bug is the dataset's problem, not the candidate's: it fails the evaluation."""
    try:
        score = float(SCORERS[case.scorer](output, case))
    except Exception as exc:
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
) -> EvaluationReport:
    """Run every case against every side (same cases for all), ``concurrency`` calls at once.

    Invoker exceptions become per-case errors; latency is wall-clock around each call.
    """
    if not cases:
        raise EvaluationFailed("no cases to evaluate")
    if CANDIDATE not in invokers:
        raise EvaluationFailed(f"no {CANDIDATE!r} side to evaluate (sides: {list(invokers)})")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    jobs = [(side, case, invoke) for side, invoke in invokers.items() for case in cases]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval") as pool:
        results = list(pool.map(lambda job: _run_one(*job), jobs))
    return build_report(results)


# --------------------------------------------------------------------------- gate

Verdict = Literal["pass", "fail", "inconclusive", "not_applicable"]


class Criterion(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    verdict: Verdict
    observed: float | None
    threshold: float | None
    message: str


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
        if not self.passed:
            raise GateFailed("; ".join(f"{c.name}: {c.message}" for c in self.failures))


def _pts(x: float) -> str:
    return f"{x * 100:.1f} pts"


def judge(report: EvaluationReport, policy: ReleasePolicy) -> GateVerdict:
    """Apply the service's policy to a report (pure: the same inputs, the same verdict)."""
    cand = report.sides.get(CANDIDATE)
    if cand is None:
        raise EvaluationFailed("the report has no candidate side to judge")
    live = report.sides.get(LIVE)
    criteria: list[Criterion] = []

    enough = cand.n >= policy.min_cases
    criteria.append(
        Criterion(
            name="min_cases",
            verdict="pass" if enough else "inconclusive",
            observed=cand.n,
            threshold=policy.min_cases,
            message=f"{cand.n} cases evaluated, policy needs at least {policy.min_cases}",
        )
    )

    if live is None:
        criteria.append(
            Criterion(
                name="accuracy_drop",
                verdict="not_applicable",
                observed=None,
                threshold=policy.max_accuracy_drop,
                message="no live version to compare with (first release)",
            )
        )
    else:
        drop = live.accuracy - cand.accuracy
        ok = drop <= policy.max_accuracy_drop + _EPSILON
        criteria.append(
            Criterion(
                name="accuracy_drop",
                verdict="pass" if ok else "fail",
                observed=drop,
                threshold=policy.max_accuracy_drop,
                message=(
                    f"candidate {cand.accuracy:.2f} vs live {live.accuracy:.2f} "
                    f"(drop {_pts(drop)} {'<=' if ok else '>'} "
                    f"{_pts(policy.max_accuracy_drop)} allowed)"
                ),
            )
        )

    ok = cand.accuracy + _EPSILON >= policy.min_accuracy
    criteria.append(
        Criterion(
            name="min_accuracy",
            verdict="pass" if ok else "fail",
            observed=cand.accuracy,
            threshold=policy.min_accuracy,
            message=(
                f"candidate accuracy {cand.accuracy:.2f} "
                f"{'>=' if ok else '<'} {policy.min_accuracy:.2f} required"
            ),
        )
    )

    ok = cand.error_rate <= policy.max_error_rate + _EPSILON
    criteria.append(
        Criterion(
            name="max_error_rate",
            verdict="pass" if ok else "fail",
            observed=cand.error_rate,
            threshold=policy.max_error_rate,
            message=(
                f"candidate error rate {cand.error_rate:.1%} ({cand.errors}/{cand.n}) "
                f"{'<=' if ok else '>'} {policy.max_error_rate:.1%} allowed"
            ),
        )
    )
    return GateVerdict(criteria=criteria)


def format_side(name: str, metrics: dict[str, Any]) -> str:
    """One line of a side's metrics for people (approval message, `modelgate status`)."""

    def num(key: str, fmt: str, unit: str = "") -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{format(value, fmt)}{unit}"

    return (
        f"{name:9} accuracy {num('accuracy', '.3f')}  p95 {num('latency_p95_ms', '.1f', ' ms')}  "
        f"cost/request {num('cost_per_request_usd', '.6f', ' USD')}  errors {num('error_rate', '.1%')}"
    )
