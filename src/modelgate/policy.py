"""A managed service and its release policy: owned by the control plane, never by the artefact."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelgate.canary_judge import JudgePolicy
from modelgate.rollout import (
    PlannedStep,
    Rollout,
    RolloutStep,
    resolve_rollout,
    step_plan,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CanaryAlarmSpec(_Strict):
    """One alarm created on the candidate alone (ExecutedVersion dimension) for a canary."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    metric: Literal["Errors", "Duration", "Throttles"]
    statistic: Literal["Sum", "Average", "Maximum", "SampleCount"] = "Sum"
    threshold: float
    comparison: Literal[
        "GreaterThanOrEqualToThreshold", "GreaterThanThreshold"
    ] = "GreaterThanOrEqualToThreshold"
    period_seconds: int = Field(default=60, ge=10)
    evaluation_periods: int = Field(default=1, ge=1)


class ReleasePolicy(_Strict):
    """Owned by the control plane, never by the artefact: an artefact can't lower its bar."""

    max_accuracy_drop: float = Field(default=0.05, ge=0.0, le=1.0)
    min_accuracy: float = Field(default=0.0, ge=0.0, le=1.0)
    max_error_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    min_cases: int = Field(default=10, ge=1)
    # Latency and cost limits are off unless a service asks for them (a bigger model is
    # often the point of a release); when set they are judged like accuracy (paired).
    max_p95_latency_increase_ms: float | None = Field(default=None, ge=0.0)
    max_p95_latency_increase_ratio: float | None = Field(default=None, ge=0.0)
    max_cost_increase_ratio: float | None = Field(default=None, ge=0.0)
    significance_level: float = Field(default=0.05, gt=0.0, lt=0.5)
    eval_concurrency: int = Field(default=8, ge=1, le=64)
    eval_shard_size: int = Field(default=500, ge=1, le=5000)
    eval_rate_limit_rps: float | None = Field(default=None, gt=0.0)
    scoring_models: Literal["local", "bedrock"] | None = None
    approval: Literal["auto", "manual"] = "manual"
    approval_timeout_seconds: int = Field(default=86_400, ge=1)
    # Four eyes: the commit's author (manifest source.author) can't approve the release;
    # anyone may reject it. A release without an author can then only be rejected.
    four_eyes: bool = False
    # The rollout: a CodeDeploy preset name ("Canary10Percent15Minutes", "Linear10Percent
    # Every1Minute", "AllAtOnce", ...) or explicit steps ending at weight 1.0; the last step's
    # bake is the post-promotion watch (rollback still armed). Unset: one canary step
    # (canary_weight for bake_seconds), then 100% watched for post_promotion_watch_seconds.
    rollout: str | list[RolloutStep] | None = None
    post_promotion_watch_seconds: int | None = Field(default=None, ge=0)
    canary_weight: float = Field(default=0.10, gt=0.0, lt=1.0)
    bake_seconds: int = Field(default=900, ge=1)
    # The judge's minimum sample per side (the judge's own min_invocations is set from it).
    min_canary_invocations: int = Field(default=20, ge=1)
    # How late AWS/Lambda metrics arrive: Lambda sends them to CloudWatch in 1-minute
    # intervals ("Using CloudWatch metrics with Lambda", docs.aws.amazon.com/lambda/latest/
    # dg/monitoring-metrics.html), so the last minute before "now" is still incomplete. The
    # judge's window ends this long before now, so both sides are counted in full.
    metrics_delay_seconds: int = Field(default=60, ge=0, le=3600)
    judge: JudgePolicy = Field(default_factory=JudgePolicy)
    canary_alarms: list[CanaryAlarmSpec] = Field(
        default_factory=lambda: [
            CanaryAlarmSpec(name="errors", metric="Errors", statistic="Sum", threshold=1),
        ]
    )
    lock_lease_seconds: int = Field(default=3 * 86_400, ge=60)

    @model_validator(mode="after")
    def _rollout_resolves(self) -> ReleasePolicy:
        self.rollout_plan()  # an unknown preset or a bad step list fails at registration
        return self

    def rollout_plan(self) -> Rollout:
        return resolve_rollout(
            self.rollout if isinstance(self.rollout, str) else None,
            self.rollout if isinstance(self.rollout, list) else None,
            canary_weight=self.canary_weight,
            bake_seconds=self.bake_seconds,
            post_promotion_watch_seconds=self.post_promotion_watch_seconds,
        )

    def step_plan(self) -> list[PlannedStep]:
        return step_plan(self.rollout_plan())

    def judge_policy(self) -> JudgePolicy:
        return self.judge.model_copy(update={"min_invocations": self.min_canary_invocations})


class ServiceConfig(_Strict):
    """One managed service, as registered with the control plane (an SSM parameter)."""

    service: str
    function_name: str
    alias: str = "live"
    dataset_key: str
    alarms: list[str] = Field(default_factory=list)
    policy: ReleasePolicy = ReleasePolicy()


# Managed services' functions are named <stack>-svc-<service>: template.yaml scopes every
# pipeline role to that name prefix (no statement names one service), so registering a
# service is an SSM parameter and a function of that name, never a template change.
MANAGED_FUNCTION_INFIX = "-svc-"


def managed_function_prefix(stack_name: str) -> str:
    return f"{stack_name}{MANAGED_FUNCTION_INFIX}"
