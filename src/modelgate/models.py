"""Domain models shared by the handlers, the CLI and the local runtime.

Input models (what CI uploads, what the control plane stores) are strict: unknown fields
are errors, so a typo in a manifest or a policy is reported instead of silently ignored.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelgate.judge import JudgePolicy
from modelgate.rollout import Rollout, RolloutStep, resolve_rollout, step_plan

MANIFEST_FILENAME = "model-config.json"
RELEASES_PREFIX = "releases/"

# Bedrock model ids and inference profiles end in an explicit version: "-v1:0", "-v2:1".
# Anything else ("...-latest", a bare family name) can change under us without a release.
_PINNED_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9.\-]*-v\d+(:\d+)?$")
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def validation_problems(exc: ValidationError, root: str) -> str:
    """Every problem pydantic found, each with its field path: "model.model_id: ..."."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}" for e in exc.errors())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ModelSpec(_Strict):
    provider: Literal["bedrock", "local"] = "bedrock"
    model_id: str

    @field_validator("model_id")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if value.lower().endswith("latest") or ":latest" in value.lower():
            raise ValueError(f"model_id {value!r} is not pinned: 'latest' moves without a release")
        if not _PINNED_MODEL_ID.match(value):
            raise ValueError(
                f"model_id {value!r} is not pinned: it must end in an explicit version "
                "such as '-v1:0' (e.g. 'anthropic.claude-3-haiku-20240307-v1:0')"
            )
        return value


class InferenceParameters(_Strict):
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=512, ge=1, le=8192)


class PromptFile(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    file: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("file")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"prompt file {value!r} must be a path inside the release folder")
        return value


class SourceInfo(_Strict):
    commit: str
    branch: str = Field(min_length=1)
    repository: str | None = None
    author: str | None = None

    @field_validator("commit")
    @classmethod
    def _sha(cls, value: str) -> str:
        if not _COMMIT.match(value):
            raise ValueError(f"commit {value!r} is not a git commit sha (7-40 hex digits)")
        return value


class Manifest(_Strict):
    """model-config.json: what one release of one service is."""

    schema_version: Literal[1] = 1
    service: str
    model: ModelSpec
    parameters: InferenceParameters = InferenceParameters()
    prompts: list[PromptFile] = Field(min_length=1)
    source: SourceInfo

    @field_validator("service")
    @classmethod
    def _service_name(cls, value: str) -> str:
        if not _SERVICE_NAME.match(value):
            raise ValueError(f"service {value!r} must be lower-case letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _unique_prompts(self) -> Manifest:
        names = [p.name for p in self.prompts]
        if len(names) != len(set(names)):
            raise ValueError(f"prompt names must be unique, got {names}")
        if "system" not in names:
            raise ValueError("prompts must include one named 'system'")
        return self

    def prompt(self, name: str) -> PromptFile:
        return next(p for p in self.prompts if p.name == name)


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

    def step_plan(self) -> list[dict[str, Any]]:
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


class ArtifactRef(_Strict):
    bucket: str
    key: str
    version_id: str

    @property
    def prefix(self) -> str:
        return self.key.rsplit("/", 1)[0] + "/"


def release_id_for(service: str, commit: str, key: str, version_id: str) -> str:
    """One release per (S3 key, object version): a duplicate event can't start a second one.

    Valid as a Step Functions execution name (<= 80 chars of [A-Za-z0-9-_]).
    """
    digest = sha256_hex(f"{key}\n{version_id}".encode())[:10]
    return f"{service[:40]}-{commit[:12]}-{digest}"


class ReleaseContext(BaseModel):
    """The state one release carries through the state machine.

    Every pipeline task takes it (plus task-specific fields) and returns it updated, so
    the ASL stays a plain chain; big things (evaluation reports) live in S3, not here.
    """

    model_config = ConfigDict(extra="allow")

    release_id: str
    service: str
    artifact: ArtifactRef
    commit: str
    branch: str
    manifest: Manifest | None = None
    policy: ReleasePolicy | None = None
    function_name: str | None = None
    alias: str | None = None
    prompt_versions: dict[str, str] = Field(default_factory=dict)
    live_version: str | None = None
    candidate_version: str | None = None
    dataset_key: str | None = None
    eval_plan: dict | None = None
    evaluation: dict | None = None
    gate: dict | None = None
    approval: dict | None = None
    canary_alarms: list[str] = Field(default_factory=list)
    canary_started_at: str | None = None
    canary_invocations: int | None = None
    step: dict | None = None  # the rollout step in progress (a step_plan() entry)
    step_started_at: str | None = None
    extensions_used: int = 0
    judge_action: str | None = None  # proceed / wait / synthetic (a rollback raises)
