"""The typed state contract between the state machine (ASL) and the Python tasks.

Everything the ASL reads or writes in the release's state is a field here, with its type:
``$.policy.approval`` and ``$.policy.approval_timeout_seconds`` (ApprovalMode, the approval
timeout), ``$.eval_plan.shards`` (the evaluation Map's items), ``$.eval_shards`` (the Map's
results), ``$.approval`` (what an approver's SendTaskSuccess returns), ``$.step`` and
``$.step.bake_seconds`` (the rollout step in progress; null: no step left, promote),
``$.judge_action`` (NextStep's choice), ``$.error`` (what a Catch caught) and
``$.ledger_check`` (the ledger read after a closing step failed for good). (The
last-resort path's ``$.last_resort`` reaches one Lambda, LastResortAttest's, whose event
model adds it: functions/attest; ``$.attest_error`` reaches none.) Nothing else travels: the
context forbids unknown fields, so a typo on either side fails at the task
that reads it, by name. Big things (evaluation reports) live in S3; the state carries
where they are.

Events the ASL builds around the context: ``CallbackEvent`` (a waitForTaskToken task:
context + token) and ``ShardEvent`` (one item of the evaluation Map).
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelgate.errors import GateFailed
from modelgate.manifest import ArtifactRef, Manifest
from modelgate.policy import ReleasePolicy
from modelgate.rollout import PlannedStep

__all__ = [
    "Approval",
    "BatchJob",
    "BatchPlan",
    "CallbackEvent",
    "Criterion",
    "EvalPlan",
    "EvaluationSummary",
    "GateVerdict",
    "JudgeAction",
    "Outcome",
    "PlannedStep",
    "ReleaseContext",
    "Shard",
    "ShardEvent",
    "ShardResult",
    "TaskError",
    "Verdict",
]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------- evaluation
class Shard(_Contract):
    """A slice [start, end) of the dataset's cases, evaluated in one Lambda invocation."""

    index: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class ShardResult(_Contract):
    """One shard's per-case results: where EvaluateShard wrote them."""

    index: int = Field(ge=0)
    key: str
    version: str | None = None
    cases: int = Field(ge=0)


class BatchJob(_Contract):
    """One side's Bedrock batch inference job (SubmitBatch): its input and where it writes."""

    side: str
    job_arn: str
    model_id: str
    input_key: str  # the JSONL the job reads (in the artefact bucket)
    output_prefix: str  # the job writes <output_prefix><job id>/<input file name>.out
    records: int = Field(ge=0)
    unsendable_key: str  # the cases that could not be put in the input, and why (JSON)


class BatchPlan(_Contract):
    """A batch evaluation in progress: the jobs, the on-demand latency sample, the wait loop.

    ``state`` is what the ASL's BatchDone choice reads (``$.eval_plan.batch.state``);
    ``wait_seconds`` its WaitForBatch state's ``SecondsPath``."""

    jobs: list[BatchJob]
    sample: ShardResult
    submitted_at: str  # ISO 8601, the pipeline's clock
    deadline: str  # ISO 8601: past it, PollBatch fails the evaluation (the jobs' own timeout + margin)
    wait_seconds: int = Field(ge=1)
    polls: int = Field(default=0, ge=0)
    state: Literal["running", "done"] = "running"


class EvalPlan(_Contract):
    """PlanEvaluation's output: the dataset pinned to one object version, cut into shards
    (``mode`` ``on_demand``), or to be run by Bedrock batch inference jobs (``batch``:
    SubmitBatch fills ``batch``; ``shards`` is empty)."""

    dataset_key: str
    dataset_version: str
    n_cases: int = Field(ge=1)
    live_configured: bool
    shards: list[Shard]
    mode: Literal["on_demand", "batch"] = "on_demand"
    batch: BatchPlan | None = None


class EvaluationSummary(_Contract):
    """The evaluation's numbers, small enough for the state and the ledger (the full
    report is in S3 at ``report_key``; its HTML page at ``report_html_key`` once gated)."""

    n_cases: int
    sides: dict[str, dict[str, Any]]
    deltas: dict[str, float | None] | None = None
    deltas_ci95: dict[str, list[float] | None] | None = None
    paired_test: dict[str, Any] | None = None
    throttled_cases: int = 0
    report_key: str
    report_version: str | None = None
    report_html_key: str | None = None
    dataset_key: str
    dataset_version: str
    shards: int
    baseline: str


Verdict = Literal["pass", "fail", "inconclusive", "not_applicable"]
Interval = tuple[float, float]


class Criterion(BaseModel):
    """One gate criterion: its verdict, the observed number, the policy's threshold and,
    where the number is an estimate, its 95% interval and the paired test's p-value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    verdict: Verdict
    observed: float | None
    threshold: float | None
    message: str
    interval: Interval | None = None
    p_value: float | None = None
    unit: str = ""


class JudgeRecord(BaseModel):
    """The LLM judge behind a verdict: which model, which rubric(s), and whether it gated
    (its agreement with the dataset's human grades; modelgate.evaluation.judges)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str
    rubric_sha256: list[str]
    graded: int
    kappa: float | None
    accuracy: float | None
    min_kappa: float
    gating: bool
    reason: str


class GateVerdict(BaseModel):
    """Every criterion's verdict; inconclusive fails closed. ``multiple_comparisons`` says
    how the paired tests' p-values were corrected (Holm) when several were tested."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    criteria: list[Criterion]
    judge: JudgeRecord | None = None
    multiple_comparisons: str | None = None

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


# ---------------------------------------------------------------------- approval, canary, end
class Approval(_Contract):
    """The decision that let the release through (``$.approval``)."""

    decision: Literal["approve"]
    approver: str = Field(min_length=1)
    comment: str = ""
    at: str | None = None


# What CheckCanary tells NextStep: go on, bake longer, or send synthetic traffic first.
# (A rollback is an error the ASL catches, never an action.)
JudgeAction = Literal["proceed", "wait", "synthetic"]


class TaskError(BaseModel):
    """What a Catch puts at ``$.error``: the error name and its cause (Step Functions' shape)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    error: str = Field(alias="Error")
    cause: str | None = Field(default=None, alias="Cause")

    def as_asl(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class Outcome(_Contract):
    """How a release ended, as RecordOutcome and Rollback return it."""

    status: str
    error: str
    reason: str = Field(max_length=32_000)


# ---------------------------------------------------------------------- the context
class ReleaseContext(_Contract):
    """The state one release carries through the state machine.

    Every pipeline task takes it and returns it updated, so the ASL stays a plain chain.
    """

    release_id: str
    service: str
    artifact: ArtifactRef
    commit: str
    branch: str
    # Who uploaded the release (the verified author four eyes compares; set by Validate from
    # the upload's metadata, never from the manifest: modelgate.approval.identity).
    author: str | None = None
    lease_generation: int | None = None  # the service lease's generation AcquireLock took (the fencing token)
    manifest: Manifest | None = None
    policy: ReleasePolicy | None = None
    function_name: str | None = None
    alias: str | None = None
    prompt_versions: dict[str, str] = Field(default_factory=dict)
    live_version: str | None = None
    candidate_version: str | None = None
    dataset_key: str | None = None
    eval_plan: EvalPlan | None = None
    eval_shards: list[ShardResult] | None = None
    evaluation: EvaluationSummary | None = None
    gate: GateVerdict | None = None
    approval: Approval | None = None
    model_package_arn: str | None = None  # the release's SageMaker model package (policy model_registry)
    canary_alarms: list[str] = Field(default_factory=list)
    canary_started_at: str | None = None
    canary_invocations: int | None = None
    step: PlannedStep | None = None  # the rollout step in progress; None: none left
    step_started_at: str | None = None
    extensions_used: int = 0
    judge_action: JudgeAction | None = None
    error: TaskError | None = None  # what the Catch that led to RecordOutcome/Rollback caught
    outcome: Outcome | None = None
    # What the state machine read of the release's ledger record after Promote, Rollback or
    # RecordOutcome failed for good (CheckPromoted...: DynamoDB GetItem's answer, its Item's
    # status, error and reason), to tell whether the step's write had landed. No task reads it.
    ledger_check: dict[str, Any] | None = None

    def dump(self) -> dict[str, Any]:
        """As the state machine carries it (JSON-able, ASL-spelt error)."""
        return self.model_dump(mode="json", by_alias=True)


# ---------------------------------------------------------------------- events around it
class CallbackEvent(_Contract):
    """A waitForTaskToken task: the context and the task token (stored, never logged)."""

    # Built at its first validation: two of the handlers that import the contract take it.
    model_config = ConfigDict(defer_build=True)

    release: ReleaseContext
    task_token: str = Field(min_length=1)


class ShardEvent(_Contract):
    """One item of the evaluation's Distributed Map."""

    model_config = ConfigDict(defer_build=True)  # Evaluate's alone: built at its first validation

    release: ReleaseContext
    shard: Shard
