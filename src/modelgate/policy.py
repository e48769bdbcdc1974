"""A managed service and its release policy: owned by the control plane, never by the artefact."""

import re
from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from modelgate.judge_policy import JudgePolicy
from modelgate.model_base import Nested as _Nested
from modelgate.model_base import Strict as _Strict
from modelgate.monitor.policy import MonitoringPolicy
from modelgate.rollout import (
    PlannedStep,
    Rollout,
    RolloutStep,
    resolve_rollout,
    step_plan,
)

# CloudWatch percentile statistics: "p0.0" to "p100" (PutMetricAlarm ExtendedStatistic,
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html).
_PERCENTILE = re.compile(r"^p(100(\.0+)?|\d{1,2}(\.\d+)?)$")
BASIC_STATISTICS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")
# The evaluation summary measures live's latency at these percentiles (latency_pNN_ms).
EVALUATED_PERCENTILES = ("p50", "p95", "p99")


_MODEL_PATTERN = re.compile(r"[A-Za-z0-9.\-_:/*?\[\]!]{1,128}")


def is_percentile(statistic: str) -> bool:
    return bool(_PERCENTILE.match(statistic))


class LiveRelativeThreshold(_Nested):
    """A latency alarm's threshold from live's measured latency, not a number tuned once.

    threshold = max(``floor_ms``, ``factor`` x live's value of the alarm's own statistic of
    ``Duration``), where live's value is measured (in this order of preference):

    1. ``cloudwatch``: the live alias's ``Duration`` over the ``window_seconds`` before the
       canary starts (the alias routes all of it to live then), if it holds at least
       ``min_samples`` invocations: live's production traffic, the very metric the alarm
       watches on the candidate;
    2. ``evaluation``: the live side's latency measured by this release's evaluation (the
       same cases, through the live version, minutes earlier), if the alarm's statistic is
       one the evaluation measures (p50, p95, p99) and at least ``min_samples`` live calls
       succeeded. It is the caller's latency around Invoke, a little above Lambda's
       ``Duration`` (it includes the invoke overhead), so the alarm errs on the lenient side.

    Neither (live had no traffic and serves no release the evaluation could measure, as
    on a first release): live's latency is unknown, and "unknown" is not enough evidence,
    never "healthy". ``without_live_data`` says what then:

    - ``fail`` (the default): the release ends before any traffic moves (NotEnoughEvidence,
      rolled back with that reason);
    - ``candidate``: the candidate's own latency as the evaluation measured it takes live's
      place (max(floor, factor x that)): the alarm then fires on production latency well
      above what the evaluation measured. Still evidence, and the ledger names it;
    - ``floor``: the alarm is armed at ``floor_ms`` alone, and the ledger says so and why.
    """

    factor: float = Field(ge=1.0, le=100.0)
    floor_ms: float = Field(ge=0.0)
    window_seconds: int = Field(default=3600, ge=300, le=86_400)
    min_samples: int = Field(default=20, ge=1)
    without_live_data: Literal["fail", "candidate", "floor"] = "fail"

    @model_validator(mode="after")
    def _whole_minutes(self) -> "LiveRelativeThreshold":
        if self.window_seconds % 60:
            raise ValueError(
                f"window_seconds must be a whole number of minutes (Lambda metrics are per minute), "
                f"got {self.window_seconds}"
            )
        return self


class CanaryAlarmSpec(_Nested):
    """One alarm created on the candidate alone (ExecutedVersion dimension) for a canary.

    Its threshold is fixed (``threshold``) or, for ``Duration``, relative to live's measured
    latency (``relative_to_live``): exactly one of the two. ``statistic`` is a basic
    statistic or a percentile (``p95``, ``p99.9``: the alarm's ExtendedStatistic).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    metric: Literal["Errors", "Duration", "Throttles"]
    # Where the metric comes from: "lambda", AWS/Lambda's metrics (one-minute resolution,
    # published about a minute late), or "service", the service's own high-resolution EMF
    # metrics (modelgate.service_metrics: Errors is its Failures, Duration its Latency, by
    # service and the version that ran), which allow a 10, 20 or 30 s period
    # (PutMetricAlarm Period: "Be sure to specify 10, 20, or 30 only for metrics that are
    # stored by a PutMetricData call with a StorageResolution of 1",
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html).
    source: Literal["lambda", "service"] = "lambda"
    statistic: str = "Sum"
    threshold: float | None = None
    relative_to_live: LiveRelativeThreshold | None = None
    comparison: Literal[
        "GreaterThanOrEqualToThreshold", "GreaterThanThreshold"
    ] = "GreaterThanOrEqualToThreshold"
    period_seconds: int = Field(default=60, ge=10)
    evaluation_periods: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _one_threshold(self) -> "CanaryAlarmSpec":
        if self.period_seconds not in (10, 20, 30) and self.period_seconds % 60:
            raise ValueError(
                f"alarm {self.name}: period_seconds must be 10, 20, 30 or a multiple of 60, got {self.period_seconds}"
            )
        if self.source == "lambda" and self.period_seconds % 60:
            raise ValueError(
                f"alarm {self.name}: AWS/Lambda metrics have one-minute resolution, so a {self.period_seconds} s "
                "period sees no data in most periods; use a multiple of 60, or source: service (the service's "
                "high-resolution metrics)"
            )
        if self.source == "service" and self.metric == "Throttles":
            raise ValueError(
                f"alarm {self.name}: a throttled request never reaches the service's code, so the service's metrics "
                "have no Throttles; use source: lambda"
            )
        if self.statistic not in BASIC_STATISTICS and not is_percentile(self.statistic):
            raise ValueError(
                f"alarm {self.name}: statistic {self.statistic!r} is neither one of {', '.join(BASIC_STATISTICS)} "
                "nor a percentile p0.0 to p100 (e.g. p95)"
            )
        if (self.threshold is None) == (self.relative_to_live is None):
            raise ValueError(
                f"alarm {self.name}: give exactly one of threshold (a fixed value) and relative_to_live "
                "(a factor of live's measured latency with a floor)"
            )
        if self.relative_to_live is not None and self.metric != "Duration":
            raise ValueError(
                f"alarm {self.name}: relative_to_live is for Duration (latency); {self.metric} counts scale "
                "with each side's share of traffic, so give it a fixed threshold"
            )
        if self.relative_to_live is not None and self.statistic in ("Sum", "SampleCount"):
            raise ValueError(
                f"alarm {self.name}: a {self.statistic} of Duration grows with traffic, not latency; "
                "use Average, Maximum or a percentile with relative_to_live"
            )
        return self


# A dataset tag a policy can name as a slice (the same characters a tag may sensibly hold).
SLICE_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


class SliceCriteria(_Nested):
    """A slice's own gate: the cases tagged with its name, judged on their own.

    ``max_accuracy_drop`` is judged like the overall one (paired, with the family's Holm
    correction); 0.0 means "no measurable drop at all on this slice". ``min_accuracy`` is a
    plain floor on the candidate's accuracy over the slice.
    """

    max_accuracy_drop: float = Field(ge=0.0, le=1.0)
    min_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)


# A named approver: a lower-case ASCII email (approval links sign it as is).
APPROVER_EMAIL = re.compile(r"^[a-z0-9._%+-]{1,64}@[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})+$")
# Another name of a person (policy `identities`): a GitHub login, an IAM user or session name.
IDENTITY_NAME = re.compile(r"^[a-z0-9._+=,-]{1,128}$")


class EvaluationMode(_Nested):
    """How the evaluation calls the models (evaluation/batch.py).

    ``on_demand``: every case through the service's function (the default). ``batch``: every
    case through a Bedrock batch inference job per side (CreateModelInvocationJob), plus
    ``latency_sample`` cases on demand for latency, which a batch doesn't measure per call.
    ``auto``: batch from ``batch_above_cases`` cases up. A batch job needs at least the
    account's "Minimum number of records per batch inference job" (a per-model Bedrock service
    quota, "Format and upload your batch inference data", Amazon Bedrock User Guide):
    ``min_batch_records`` is that quota as the service's account has it. Fewer cases: ``auto``
    evaluates on demand, ``batch`` refuses at PlanEvaluation, before any job is created.
    ``batch_timeout_hours``: the jobs' ``timeoutDurationInHours`` (CreateModelInvocationJob:
    24 to 168); the state machine stops waiting an hour after it. ``poll_seconds``: the wait
    between two GetModelInvocationJob polls.
    """

    mode: Literal["on_demand", "batch", "auto"] = "on_demand"
    latency_sample: int = Field(default=50, ge=1, le=1000)
    batch_above_cases: int = Field(default=1000, ge=1)
    min_batch_records: int = Field(default=100, ge=1)
    batch_timeout_hours: int = Field(default=24, ge=24, le=168)
    poll_seconds: int = Field(default=300, ge=10, le=3600)


class ModelRegistryPolicy(_Nested):
    """Mirror each release in SageMaker Model Registry (``modelgate.pipeline.model_registry``).

    ``group``: the model package group (created if missing when a release is registered), a
    SageMaker name ("CreateModelPackageGroup", API Reference: 1-63 characters,
    ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``) starting with the stack's name and a hyphen: the
    pipeline's IAM grants are scoped to that prefix (template.yaml) and to nothing else."""

    group: str = Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def model_registry_group_prefix(stack_name: str) -> str:
    """What every model package group of the stack's services starts with (its IAM scope)."""
    return f"{stack_name}-"


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
    # Each case runs this many times per side (non-deterministic models); the statistics
    # treat the case, not the call, as the unit (modelgate.evaluation.comparison).
    repeats: int = Field(default=1, ge=1, le=20)
    # Dataset tags judged as slices with their own criteria: {"security": {"max_accuracy_drop": 0.0}}.
    slices: dict[str, SliceCriteria] = Field(default_factory=dict, max_length=20)
    # An llm_judge gates only when its Cohen's kappa with the dataset's human grades is at
    # least this, over at least judge_min_graded graded answers (modelgate.evaluation.judges).
    judge_min_kappa: float = Field(default=0.6, ge=0.0, le=1.0)
    judge_min_graded: int = Field(default=10, ge=2)
    eval_concurrency: int = Field(default=8, ge=1, le=64)
    eval_shard_size: int = Field(default=500, ge=1, le=5000)
    # Calls per second over both sides, when the provider's quota is known; unset or "adaptive":
    # the evaluation finds it from throttles and latency (evaluation/adaptive.py).
    eval_rate_limit_rps: Annotated[float, Field(gt=0.0)] | Literal["adaptive"] | None = None
    scoring_models: Literal["local", "bedrock"] | None = None
    # USD the evaluation may cost (both sides, every repeat), estimated before any call from the
    # dataset, the prompts and modelgate.pricing (evaluation/cost.py); over it, the release
    # ends Failed (OverBudget) before a model is called. Unset: no cap.
    max_cost_usd: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    # The nested sections' defaults are validated by this model's own schema (validate_default), so
    # a policy that omits them builds no model of its own for them (see _Nested).
    evaluation: EvaluationMode = Field(default={}, validate_default=True)
    approval: Literal["auto", "manual"] = "manual"
    approval_timeout_seconds: int = Field(default=86_400, ge=1)
    # Four eyes: the release's author (who uploaded it: the CI actor, see
    # modelgate.approval.identity; never the manifest's source.author) can't approve it;
    # anyone may reject it. A release without a verified author can then only be rejected.
    four_eyes: bool = False
    # Named approvers (lower-case emails): each is mailed their own signed approve link,
    # which approves as them and nobody else. None named: the mail carries a reject link
    # only, and approving is `modelgate approve` (an IAM identity).
    approvers: list[str] = Field(default_factory=list, max_length=50)
    # Another name of a person -> their email, so four eyes knows a GitHub login (the author
    # CI reports) or an IAM user / session name is the same person as an approver's email:
    # {"alice-dev": "alice@example.com"}. Names are compared in lower case
    # (modelgate.approval.identity.resolve); under four eyes a name this map doesn't hold
    # can't approve or be the author of an approvable release.
    identities: dict[str, str] = Field(default_factory=dict, max_length=200)
    # The rollout: a CodeDeploy preset name ("Canary10Percent15Minutes", "Linear10Percent
    # Every1Minute", "AllAtOnce", ...) or explicit steps ending at weight 1.0; the last step's
    # bake is the final bake (rollback still armed) with the alias still weighted at 99.99%
    # (rollout.FINAL_BAKE_WEIGHT), and Promote then routes 100%. Unset: one canary step
    # (canary_weight for bake_seconds), then the final bake for post_promotion_watch_seconds.
    rollout: str | list[RolloutStep] | None = None
    post_promotion_watch_seconds: int | None = Field(default=None, ge=0)
    canary_weight: float = Field(default=0.10, gt=0.0, lt=1.0)
    bake_seconds: int = Field(default=900, ge=1)
    # The judge's minimum sample per side (the judge's own min_invocations is set from it).
    min_canary_invocations: int = Field(default=20, ge=1)
    # Synthetic traffic (judge's insufficient action "synthetic") goes through the production
    # alias this many calls at a time.
    synthetic_concurrency: int = Field(default=8, ge=1, le=64)
    # How late AWS/Lambda metrics arrive: Lambda sends them to CloudWatch in 1-minute
    # intervals ("Using CloudWatch metrics with Lambda", docs.aws.amazon.com/lambda/latest/
    # dg/monitoring-metrics.html), so the last minute before "now" is still incomplete. The
    # judge's window ends this long before now, so both sides are counted in full.
    metrics_delay_seconds: int = Field(default=60, ge=0, le=3600)
    judge: JudgePolicy = Field(default={}, validate_default=True)
    canary_alarms: list[CanaryAlarmSpec] = Field(
        default=[{"name": "errors", "metric": "Errors", "statistic": "Sum", "threshold": 1}], validate_default=True
    )
    lock_lease_seconds: int = Field(default=3 * 86_400, ge=60)
    # The models a release may use: shell-style patterns over the manifest's model id
    # (fnmatch, case-sensitive: "anthropic.claude-3-5-haiku-*", "local.*"), checked at
    # Validate, before anything is evaluated. Unset: any pinned model id.
    allowed_models: list[str] | None = Field(default=None, min_length=1, max_length=32)
    # SageMaker Model Registry: each release a model package version in this group, its
    # evaluation attached and its approval status mirrored. Unset (the default): not used.
    model_registry: ModelRegistryPolicy | None = None
    # What to do when live is found wanting after its release (drift, a re-evaluation regression,
    # a LEGACY model), and whether Validate refuses a LEGACY model: modelgate.monitor.policy.
    monitoring: MonitoringPolicy = Field(default={}, validate_default=True)
    # Promotion across stages: an artefact is accepted only if the same artefact (manifest and
    # every prompt, by sha256) was promoted in this upstream stage, proven by that stage's
    # attestation signed with a key this stack trusts (pipeline/upstream.py). Unset: any
    # valid artefact.
    requires_stage: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,31}$")
    # Validate refuses an upload whose metadata carries no passing CI evaluation
    # (`modelgate submit --eval-summary`) of exactly this artefact (upload_metadata.py). It is
    # CI's recorded claim, checked for consistency, not a proof: the gate still evaluates.
    require_ci_evaluation: bool = False

    @field_validator("allowed_models")
    @classmethod
    def _model_patterns(cls, patterns: list[str] | None) -> list[str] | None:
        for pattern in patterns or []:
            if not _MODEL_PATTERN.fullmatch(pattern):
                raise ValueError(
                    f"allowed_models: {pattern[:140]!r} is not a model id pattern (1-128 of a-z A-Z 0-9 . - _ : / "
                    "and the wildcards * ? [ ] !)"
                )
        return patterns

    def model_allowed(self, model_id: str) -> bool:
        return self.allowed_models is None or any(fnmatchcase(model_id, p) for p in self.allowed_models)

    def allowed_models_text(self) -> str:
        """The allow list as approvers and errors show it."""
        if self.allowed_models is None:
            return "not restricted (any pinned model id)"
        return ", ".join(repr(p) for p in self.allowed_models)

    @field_validator("slices")
    @classmethod
    def _slice_tags(cls, value: dict[str, SliceCriteria]) -> dict[str, SliceCriteria]:
        bad = [tag[:80] for tag in value if not SLICE_TAG.match(tag)]
        if bad:
            raise ValueError(f"slices: {bad} are not dataset tags (1-64 of A-Z a-z 0-9 _ . : -, starting alphanumeric)")
        return value

    @field_validator("approvers")
    @classmethod
    def _named_approvers(cls, value: list[str]) -> list[str]:
        bad = [a[:80] for a in value if not APPROVER_EMAIL.match(a)]
        if bad:
            raise ValueError(f"approvers must be lower-case email addresses, got {bad}")
        if len(set(value)) != len(value):
            raise ValueError("approvers must be unique")
        return value

    @field_validator("identities")
    @classmethod
    def _identity_map(cls, value: dict[str, str]) -> dict[str, str]:
        mapped: dict[str, str] = {}
        for name, email in value.items():
            key = name.strip().lower()
            if not IDENTITY_NAME.match(key) or "@" in key:
                raise ValueError(
                    f"identities: {name[:80]!r} is not a login or IAM name (1-128 of a-z 0-9 . _ - + = ,; an email "
                    "needs no mapping)"
                )
            if not APPROVER_EMAIL.match(email):
                raise ValueError(f"identities: {name[:80]!r} maps to {email[:80]!r}, not a lower-case email address")
            if key in mapped:
                raise ValueError(f"identities: {key!r} is given twice (names compare in lower case)")
            mapped[key] = email
        return mapped

    @model_validator(mode="after")
    def _rollout_resolves(self) -> "ReleasePolicy":
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
    """One managed service, as registered with the control plane (an SSM parameter).

    Built at its first validation (``registry.get_service``): most handlers that import the
    policy never read a registration."""

    model_config = ConfigDict(defer_build=True)

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
