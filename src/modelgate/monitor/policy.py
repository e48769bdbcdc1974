"""A service's monitoring policy: data capture and the drift check (part of its registration).

Defaults: capture off, drift check off. The drift check needs captured traffic, so turning
it on without capture is refused at registration.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    action: Literal["alert", "none"] = "alert"


class MonitoringPolicy(_Strict):
    capture: CapturePolicy = CapturePolicy()
    drift: DriftPolicy = DriftPolicy()
    # The service's output schema (a JSON Schema object): when set, each answer's validity
    # is a metric (SchemaValid) and a drift feature.
    output_schema: dict | None = None

    @model_validator(mode="after")
    def _drift_needs_capture(self) -> MonitoringPolicy:
        if self.drift.enabled and not (self.capture.enabled and self.capture.sample_rate > 0):
            raise ValueError(
                "monitoring: the drift check compares captured live traffic with the baseline; enable capture "
                "(capture.enabled with a sample_rate above 0) or turn the drift check off"
            )
        return self
