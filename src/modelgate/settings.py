"""Function settings: pydantic models validated from ``os.environ``, one per function.

Every pipeline function has the stack's common variables (``PipelineSettings``: what
template.yaml's Globals set); a function that needs more declares its own model with those
fields required. A handler loads its model before it does anything (``load(IntakeSettings)``), so a function
deployed without a variable fails at its first invocation naming it, never halfway
through a step and never by calling AWS with "". Resource names have no defaults.
"""

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelgate.errors import ConfigurationError

__all__ = [
    "ApprovalCallbackSettings",
    "ApprovalRequestSettings",
    "AttestSettings",
    "InferenceSettings",
    "IntakeSettings",
    "MonitorSettings",
    "PipelineSettings",
    "PromoteSettings",
    "Settings",
    "ValidateSettings",
    "load",
    "load_settings",
]


class _Env(BaseModel):
    # defer_build: a function validates one of these models, once; building the other dozen at
    # import was most of this module's cold-start cost. Each is built at its first validation
    # (pydantic ConfigDict.defer_build: "defer model validator and serializer construction until
    # the first model validation", https://docs.pydantic.dev/latest/api/config/).
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", defer_build=True)


# ---------------------------------------------------------------------- per function
class PipelineSettings(_Env):
    """What every pipeline task has (template.yaml's Globals).

    Its fields are declared here, not gathered from a mixin per variable: each class costs every
    cold start its creation (pydantic collects and copies its fields), and the handlers import
    all of this module's (issue #7)."""

    stack_name: str = Field(alias="STACK_NAME", min_length=1)
    approval_topic_arn: str = Field(alias="APPROVAL_TOPIC_ARN", min_length=1)
    services_prefix: str = Field(alias="SERVICES_PREFIX", min_length=1)
    artifact_bucket: str = Field(alias="ARTIFACT_BUCKET", min_length=1)
    ledger_table: str = Field(alias="LEDGER_TABLE", min_length=1)


class IntakeSettings(PipelineSettings):
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN", min_length=1)


class ApprovalRequestSettings(PipelineSettings):
    signing_secret_arn: str = Field(alias="SIGNING_SECRET_ARN", min_length=1)
    approval_base_url: str = Field(alias="APPROVAL_BASE_URL", min_length=1)


class ApprovalCallbackSettings(PipelineSettings):
    """The approval links' Function URL."""

    signing_secret_arn: str = Field(alias="SIGNING_SECRET_ARN", min_length=1)


class MonitorSettings(PipelineSettings):
    """The monitor function (scheduled re-evaluation, model lifecycle watch) and anything that
    runs ``modelgate.monitor.actions.act``: where alerts go (the operations topic), and which
    function re-evaluates live (template.yaml names it ``<stack>-monitor``)."""

    alert_topic_arn: str = Field(alias="ALERT_TOPIC_ARN", min_length=1)
    monitor_function_name: str = Field(alias="MONITOR_FUNCTION_NAME", min_length=1)
    # the stack's signer: a rollback action has it revoke the rolled-back release (pipeline/revocation.py)
    attest_function_name: str = Field(alias="ATTEST_FUNCTION_NAME", min_length=1)


class PromoteSettings(PipelineSettings):
    """Promote: the monitor function, which builds the promoted version's drift baseline after
    Promote returns (``modelgate.monitor.baseline.request_baseline``)."""

    monitor_function_name: str = Field(alias="MONITOR_FUNCTION_NAME", min_length=1)


class DriftCheckSettings(PipelineSettings):
    """The scheduled drift check (modelgate.monitor.check): the monitor function, which runs the
    policy's ``on_drift`` actions (``modelgate.monitor.actions.act``) with the grants they need."""

    monitor_function_name: str = Field(alias="MONITOR_FUNCTION_NAME", min_length=1)


class ValidateSettings(PipelineSettings):
    """The Validate function: the stack's ``RequiresStage`` parameter (empty: none). When set,
    every artefact this stack releases must have been promoted in that stage first, whatever
    the service's policy says (a policy's own ``requires_stage`` is required as well)."""

    requires_stage: str = Field(default="", alias="REQUIRES_STAGE", pattern=r"^([a-z][a-z0-9-]{0,31})?$")


class AttestSettings(PipelineSettings):
    """The Attest function: the stack's asymmetric signing key and the stage it attests for."""

    signing_key_id: str = Field(alias="SIGNING_KEY_ID", min_length=1)
    stage: str = Field(alias="STAGE", min_length=1)


class InferenceSettings(_Env):
    """A managed service's inference function (one model: provider and where configs live).

    The release pin itself (``modelgate.manifest.PIN_VARIABLES``) is per published version
    and may be absent (a version that serves no release yet): the inference service reads
    it per request (``modelgate.inference.read_pin``), not here. ``bootstrap``: a folder of
    the function's code with the configuration a version that pins no release serves
    (``modelgate.inference.load_bootstrap``); unset, such a version serves nothing.
    """

    provider: Literal["bedrock", "local"] = Field(alias="MODEL_PROVIDER")
    bucket: str = Field(alias="MODEL_CONFIG_BUCKET", min_length=1)
    bootstrap: str | None = Field(default=None, alias="MODEL_BOOTSTRAP", pattern=r"^[a-z0-9_-]+(/[a-z0-9_-]+)*$")
    # The service's registration (SSM parameter name): its monitoring policy (data capture,
    # output schema) is read from it. Unset: no capture, no schema metric.
    registration: str | None = Field(default=None, alias="SERVICE_REGISTRATION", min_length=1)


# The settings of a plain pipeline task (kept as the short name the stages use).
Settings = PipelineSettings
S = TypeVar("S", bound=_Env)


def load_settings(environ: Mapping[str, str] | None = None, model: type[S] = PipelineSettings) -> S:  # type: ignore[assignment]
    env = dict(os.environ if environ is None else environ)
    try:
        return model.model_validate(env)
    except ValidationError as exc:
        wrong = sorted({str(e["loc"][0]) for e in exc.errors()})
        raise ConfigurationError(f"function environment is incomplete or wrong: {', '.join(wrong)}") from exc


def _aliases(model: type[_Env]) -> tuple[str, ...]:
    return tuple(f.alias for f in model.model_fields.values() if f.alias)


@lru_cache(maxsize=64)
def _cached(model: type[_Env], values: tuple[str | None, ...]) -> _Env:
    return load_settings({k: v for k, v in zip(_aliases(model), values) if v is not None}, model)


def load(model: type[S]) -> S:
    """``model`` validated from the environment, once per distinct environment (a cold
    start on AWS; per function locally, where several functions share one process)."""
    return _cached(model, tuple(os.environ.get(k) for k in _aliases(model)))  # type: ignore[return-value]


class BatchSubmitSettings(PipelineSettings):
    """SubmitBatch: the Bedrock batch inference service role its jobs run as (iam:PassRole)."""

    batch_role_arn: str = Field(alias="BATCH_ROLE_ARN", min_length=1)
