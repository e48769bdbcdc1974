"""Function settings, validated from ``os.environ`` once per cold start.

Resource names have no defaults: a function deployed without them fails at its first
invocation with an error that names the missing variable, instead of calling AWS with "".
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelgate.errors import ConfigurationError


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    ledger_table: str = Field(alias="LEDGER_TABLE", min_length=1)
    artifact_bucket: str = Field(alias="ARTIFACT_BUCKET", min_length=1)
    services_prefix: str = Field(alias="SERVICES_PREFIX", min_length=1)
    approval_topic_arn: str = Field(alias="APPROVAL_TOPIC_ARN", min_length=1)
    stack_name: str = Field(alias="STACK_NAME", min_length=1)
    state_machine_arn: str | None = Field(default=None, alias="STATE_MACHINE_ARN")
    # Approval links: RequestApproval signs them (both set), ApprovalCallback verifies them.
    signing_secret_arn: str | None = Field(default=None, alias="SIGNING_SECRET_ARN")
    approval_base_url: str | None = Field(default=None, alias="APPROVAL_BASE_URL")


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    try:
        return Settings.model_validate(env)
    except ValidationError as exc:
        missing = [str(e["loc"][0]) for e in exc.errors()]
        raise ConfigurationError(
            f"function environment is incomplete or wrong: {', '.join(missing)}"
        ) from exc


_KEYS = tuple(f.alias for f in Settings.model_fields.values())


@lru_cache(maxsize=16)
def _cached(values: tuple[str | None, ...]) -> Settings:
    return load_settings({k: v for k, v in zip(_KEYS, values) if v is not None})


def get_settings() -> Settings:
    """Validated once per distinct environment (a cold start on AWS; per function locally,
    where several functions share one process)."""
    return _cached(tuple(os.environ.get(k) for k in _KEYS))
