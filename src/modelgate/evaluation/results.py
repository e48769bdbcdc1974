"""One call's result: what a side answered on one case, how it scored, what it cost.

``runner.run_cases`` records these and ``comparison.build_report`` turns them into per-side
metrics and the paired comparison. On its own, without the report's models, so the steps that
only record results (EvaluateShard, SubmitBatch's latency sample) load none of them (issue #7).
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    # The case's ``expected``, already checked as a JSON value where it is read (dataset.Expected, from the
    # uploaded dataset). A result is only produced (the runner copies it from a parsed case) and read back
    # from the JSON its own steps wrote, so ``Any``: pydantic builds no JSON-value schema for it again.
    expected: Any = None
    inputs: dict[str, str] | None = None
    tags: list[str] = Field(default_factory=list)
    repeat: int = Field(default=0, ge=0)  # 0 .. k-1 with the policy's repeats: k
