"""Offline evaluation of a candidate against live, on the same cases, then a gate.

One module per concern, each importing only the ones before it:
``scorers`` (grading one output; the registry and the text scorers) -> ``model_scorers``
(``semantic``, ``llm_judge`` and their models) -> ``dataset`` (the JSONL cases) -> ``results``
(one call's result) -> ``comparison`` (the report: per-side metrics, paired deltas) ->
``runner`` (calls, rate limit, retries; the report only when asked for one) and ``gate``
(criteria verdicts) -> ``report`` (the HTML page).

Their small immutable records (a scorer's spec, a case's outcome, a rate-limiter ticket, a batch
answer) are ``NamedTuple``s, not frozen dataclasses: a dataclass compiles its generated methods
when its module is imported (about 4 M instructions each under CPython 3.12, a NamedTuple under
1 M), which every evaluation step's cold start paid (issue #7, bench/cold_start.py).
"""

from typing import Any

# The two sides of every comparison and a side's one-line summary (modelgate.evaluation.comparison
# re-exports them): here, so a step that only names a side (PlanEvaluation pricing each side's
# release) or prints its metrics (RequestApproval's mail) loads no result model (issue #7).
CANDIDATE = "candidate"
LIVE = "live"


def format_side(name: str, metrics: dict[str, Any]) -> str:
    """One line of a side's metrics for people (approval message, `modelgate status`)."""

    def num(key: str, fmt: str, unit: str = "") -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{format(value, fmt)}{unit}"

    return (
        f"{name:9} accuracy {num('accuracy', '.3f')}  p95 {num('latency_p95_ms', '.1f', ' ms')}  "
        f"cost/request {num('cost_per_request_usd', '.6f', ' USD')}  errors {num('error_rate', '.1%')}"
    )
