"""How the canary judge decides, per service: the release policy's ``judge`` section.

Apart from the judge (``modelgate.canary_judge``, which re-exports it): every pipeline handler
validates the release policy, while only the canary steps run the judge and build its verdict's
models (issue #7).
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class JudgePolicy(BaseModel):
    """How the judge decides, per service (part of the release policy).

    Validated only inside the release policy (``ReleasePolicy.judge_policy`` copies it without
    validating): built with the policy's schema, never on its own at import (modelgate.model_base.Nested)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    min_invocations: int = Field(default=20, ge=1)
    significance_level: float = Field(default=0.05, gt=0.0, lt=0.5)
    # Absolute: 0.01 allows the candidate's error rate to be 1 point above stable's.
    max_error_rate_increase: float = Field(default=0.01, ge=0.0, le=1.0)
    # Off unless a service asks (as in the evaluation gate: a bigger model is often the
    # point of a release). Either limit, when set, fails the canary if exceeded.
    max_latency_increase_ratio: float | None = Field(default=None, ge=0.0)
    max_latency_increase_ms: float | None = Field(default=None, ge=0.0)
    min_latency_samples: int = Field(default=5, ge=1)
    on_not_enough_evidence: Literal["wait", "synthetic", "fail"] = "wait"
    max_extensions: int = Field(default=2, ge=0)

    @property
    def judges_latency(self) -> bool:
        return self.max_latency_increase_ratio is not None or self.max_latency_increase_ms is not None
