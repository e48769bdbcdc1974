"""The release item's fields as the pipeline's tasks record them (``Ledger.record``).

Apart from the ledger's code so that the record read back (``modelgate.release_record``, which
extends these fields) is a module the ledger loads only when a record is read, without an import
cycle between the two.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from modelgate.contract import Approval, EvaluationSummary, GateVerdict, PlannedStep
from modelgate.errors import validation_problems
from modelgate.manifest import ArtifactRef


class ReleaseFields(BaseModel):
    """The release's own fields, as the pipeline's tasks record them (all optional: each
    task sets the ones it knows): what ``record``, ``receive`` and ``set_fields`` accept as
    keywords, nothing else. ``ReleaseRecord`` (the item read back) adds the item's keys.

    Built at import: every task that records validates it. (No separate base class of the
    shared fields: pydantic collects and copies a class's fields when it is created, and every
    handler imports this module; issue #7.)"""

    # model_id is the release's model.
    model_config = ConfigDict(protected_namespaces=(), extra="forbid")

    # intake and validate
    service: str | None = None
    commit: str | None = None
    branch: str | None = None
    author: str | None = None
    model_id: str | None = None
    artifact: ArtifactRef | None = None
    execution_arn: str | None = None
    function_name: str | None = None
    alias: str | None = None
    # What CI's `modelgate eval` found, from the upload's metadata (an upload_metadata.CiEvaluation:
    # Validate's alone, checked by _loaded_models like the canary's verdict and thresholds).
    ci_evaluation: Any = None
    # candidate
    candidate_version: str | None = None
    live_version: str | None = None
    # evaluation, gate, approval request
    evaluation: EvaluationSummary | None = None
    gate: GateVerdict | None = None
    four_eyes: bool | None = None  # the policy as it was when approval was asked
    approvers: list[str] | None = None  # the named approvers whose links may approve (same moment)
    # SageMaker Model Registry (policy model_registry): the release's model package and the
    # approval status last mirrored there (or why mirroring failed)
    model_package_arn: str | None = None
    model_package_status: str | None = None
    identities: dict[str, str] | None = None  # the policy's login / IAM name -> email map (four eyes)
    # canary
    canary_alarms: list[str] | None = None
    canary_started_at: str | None = None
    step: PlannedStep | None = None
    # The judge's verdict (a canary_judge.CanaryVerdict) and each canary alarm's threshold and its
    # inputs (alarm_thresholds.AlarmThreshold): checked against those models by _loaded_models.
    verdict: Any = None
    canary_invocations: int | None = None
    canary_thresholds: Any = None
    # the end
    promoted_at: str | None = None
    reason: str | None = None
    error: str | None = None
    # the release's attestation: why a release ended on a path that signs none (superseded in
    # flight, refused at intake, a manifest over Attest's hashing cap; chained, so it can't be
    # added later to excuse a missing one),
    # or what made its Attest step fail for good (not chained: written after the chain record)
    unattested: str | None = None
    attestation_error: str | None = None
    # monitoring (modelgate.monitor.baseline): the promoted version's drift baseline, asked for
    # by Promote and built asynchronously by the monitor function
    baseline_requested_at: str | None = None
    baseline_built_at: str | None = None
    baseline_key: str | None = None
    baseline_sources: dict[str, int] | None = None
    baseline_error: str | None = None
    approval: Approval | None = None  # an automatic approval; people decide through ``decide``

    @field_validator("ci_evaluation", "verdict", "canary_thresholds")
    @classmethod
    def _loaded_models(cls, value: Any, info: ValidationInfo) -> Any:
        """CI's evaluation, the verdict and the thresholds validated into their models, which are loaded
        here: only Validate (upload_metadata) and the canary steps (pipeline.canary) build them, and
        they load them at init, so no other handler's cold start builds their schemas into this
        model's (issue #7). The same checks as a typed field."""
        if value is None:
            return None
        if info.field_name == "canary_thresholds":
            from modelgate.alarm_thresholds import AlarmThreshold

            if not isinstance(value, (list, tuple)):
                raise ValueError(f"a list of alarm thresholds, not {type(value).__name__}")
            return [_validated(AlarmThreshold, threshold, "threshold", f"[{index}] ")
                    for index, threshold in enumerate(value)]
        if info.field_name == "ci_evaluation":
            from modelgate.upload_metadata import CiEvaluation as model
        else:
            from modelgate.canary_judge import CanaryVerdict as model
        return _validated(model, value, info.field_name)


def _validated(model: type[BaseModel], value: Any, name: str, prefix: str = "") -> BaseModel:
    """``value`` as ``model``; a ValueError naming each problem (under ``name``) otherwise."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ValueError(prefix + validation_problems(exc, name)) from None
