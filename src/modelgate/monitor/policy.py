"""A service's monitoring policy (the release policy's ``monitoring`` section): data capture
and the scheduled drift check (off by default; the drift check needs capture), what to do when
live is found wanting, and how the scheduled checks judge.

    "monitoring": {
      "on_drift": ["alert"],
      "on_reevaluation_regression": ["alert", "rollback"],
      "on_model_legacy": ["alert"],
      "refuse_legacy_models": true,
      "reevaluation": {"significance_level": 0.05, "max_accuracy_drop": 0.0, "min_cases": 10}
    }

Owned by the control plane like the rest of the release policy (an artefact can't change
what happens when it regresses).
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# What can set an action off (``actions.act``'s ``trigger``).
Trigger = Literal["drift", "reevaluation_regression", "model_legacy"]
TRIGGERS: tuple[Trigger, ...] = ("drift", "reevaluation_regression", "model_legacy")
# What an action does: an SNS message to the operations topic, a re-evaluation of live now, or
# live back to its last known good version (``modelgate rollback``'s own path).
ActionName = Literal["alert", "reevaluate", "rollback"]


class _Strict(BaseModel):
    # Validated inside the release policy's schema by every pipeline handler; on its own only
    # where a handler reads a registration's monitoring section (the inference function's
    # capture, which imports this module on that path): no validator and serializer of its
    # own at import (defer_build; see modelgate.model_base.Nested).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ReevaluationPolicy(_Strict):
    """When a scheduled re-evaluation of live is a regression: live now against the evaluation
    that promoted it, case by case (exact McNemar / sign test, ``comparison.compare``).

    A regression needs both: the paired test significant at ``significance_level`` with more
    cases worse than better, and accuracy down by more than ``max_accuracy_drop``. Fewer than
    ``min_cases`` paired cases is "insufficient", never "no regression"."""

    significance_level: float = Field(default=0.05, gt=0.0, lt=0.5)
    max_accuracy_drop: float = Field(default=0.0, ge=0.0, le=1.0)
    min_cases: int = Field(default=10, ge=1)


def _unique(field: str, actions: list[str]) -> list[str]:
    if len(set(actions)) != len(actions):
        raise ValueError(f"{field}: each action once, got {actions}")
    return actions


class CapturePolicy(_Strict):
    """Which live requests the inference function writes to the artefact bucket, and how.

    ``sample_rate``: the share of requests captured (0 to 1, by a per-request random draw);
    ``max_field_chars``: each captured text (an input, the output) is cut to this many
    characters; ``redact``: input names whose values are never stored (replaced by
    ``"[redacted]"``); ``batch_records``: records buffered per execution environment before
    one PutObject (and at most ``flush_seconds`` old), so a request pays no S3 call.
    """

    enabled: bool = False
    sample_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    max_field_chars: int = Field(default=2000, ge=16, le=100_000)
    redact: list[str] = Field(default_factory=list, max_length=64)
    batch_records: int = Field(default=50, ge=1, le=10_000)
    flush_seconds: int = Field(default=60, ge=1, le=3600)


class DriftPolicy(_Strict):
    """The scheduled drift check: which features, how much data, which thresholds.

    Per numeric feature, drift = KS p-value below ``ks_p_value`` AND PSI at least
    ``psi_threshold`` (significant and material: with thousands of records KS alone flags
    differences too small to matter; PSI alone on a few records is noise). Per categorical
    feature, chi-square p below ``chi2_p_value`` AND categorical PSI at least
    ``psi_threshold``. Embeddings: the cosine distance between the baseline's and the
    window's centroids at least ``centroid_distance``. A feature with fewer than
    ``min_samples`` values on either side is "insufficient", never "no drift".
    """

    enabled: bool = False
    # how often it runs is the service's AWS::Scheduler::Schedule (template.yaml); the window
    # should be at least that long so no captured request goes unchecked
    window_minutes: int = Field(default=60, ge=1, le=7 * 1440)
    min_samples: int = Field(default=100, ge=10)
    psi_threshold: float = Field(default=0.2, gt=0.0)
    ks_p_value: float = Field(default=0.01, gt=0.0, lt=0.5)
    chi2_p_value: float = Field(default=0.01, gt=0.0, lt=0.5)
    centroid_distance: float = Field(default=0.3, gt=0.0, le=2.0)
    categorical_inputs: list[str] = Field(default_factory=list, max_length=16)
    text_inputs: list[str] = Field(default_factory=lambda: ["question"], max_length=8)
    embedding: Literal["local", "bedrock"] = "local"
    embedding_model_id: str = "amazon.titan-embed-text-v2:0"
    max_records: int = Field(default=200_000, ge=100)
    # what a drift verdict does is the policy's on_drift (alert / reevaluate / rollback)


class MonitoringPolicy(_Strict):
    """Actions per trigger, in order (an alert first says what the rollback after it does)."""

    on_drift: list[ActionName] = Field(default_factory=lambda: ["alert"], max_length=3)
    on_reevaluation_regression: list[Literal["alert", "rollback"]] = Field(
        default_factory=lambda: ["alert"], max_length=2
    )
    on_model_legacy: list[Literal["alert"]] = Field(default_factory=lambda: ["alert"], max_length=1)
    # Validate refuses a release whose pinned Bedrock model is LEGACY (lifecycle.py).
    refuse_legacy_models: bool = False
    # defaults validated by this schema (validate_default): no model of their own is built for them
    reevaluation: ReevaluationPolicy = Field(default={}, validate_default=True)
    capture: CapturePolicy = Field(default={}, validate_default=True)
    drift: DriftPolicy = Field(default={}, validate_default=True)
    # The service's output schema (a JSON Schema object): when set, each answer's validity
    # is a metric (SchemaValid) and a drift feature.
    output_schema: dict | None = None

    @model_validator(mode="after")
    def _drift_needs_capture(self) -> "MonitoringPolicy":
        if self.drift.enabled and not (self.capture.enabled and self.capture.sample_rate > 0):
            raise ValueError(
                "monitoring: the drift check compares captured live traffic with the baseline; enable capture "
                "(capture.enabled with a sample_rate above 0) or turn the drift check off"
            )
        return self

    @field_validator("on_drift", "on_reevaluation_regression", "on_model_legacy", mode="before")
    @classmethod
    def _known_actions(cls, value: object, info) -> object:
        if isinstance(value, list):
            allowed = {
                "on_drift": ("alert", "reevaluate", "rollback"),
                # re-evaluating again would loop; a re-evaluation can only alert or roll back
                "on_reevaluation_regression": ("alert", "rollback"),
                # a rollback keeps the same pinned model in most services; new releases are refused instead
                "on_model_legacy": ("alert",),
            }[info.field_name]
            bad = [a for a in value if a not in allowed]
            if bad:
                raise ValueError(
                    f"{info.field_name}: unknown action(s) {bad!r}; allowed here: {', '.join(allowed)}"
                )
            _unique(info.field_name, value)
        return value

    def actions_for(self, trigger: Trigger) -> list[str]:
        return list(getattr(self, f"on_{trigger}"))
