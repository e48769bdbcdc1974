"""What CI uploads: the release manifest (model-config.json), its key and its digests.

Input models are strict: unknown fields are errors, so a typo in a manifest is reported
instead of silently ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelgate.errors import ManifestInvalid

MANIFEST_FILENAME = "model-config.json"
RELEASES_PREFIX = "releases/"

# Bedrock model ids and inference profiles end in an explicit version: "-v1:0", "-v2:1".
# Anything else ("...-latest", a bare family name) can change under us without a release.
_PINNED_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9.\-]*-v\d+(:\d+)?$")
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_problem(name: str, expected_sha256: str, data: bytes, where: str) -> str | None:
    """The one prompt-digest check: None when ``data`` is what the manifest names, else why not."""
    actual = sha256_hex(data)
    if actual == expected_sha256:
        return None
    return f"prompt {name!r}: sha256 of {where} is {actual}, manifest says {expected_sha256}"


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
    # Sent only when the manifest sets it: newer Claude models on Bedrock refuse temperature
    # and top_p together ("temperature and top_p cannot both be specified").
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int = Field(default=512, ge=1, le=8192)


# The release's state (modelgate.contract.ReleaseContext) carries the manifest and one
# version per prompt file through Step Functions, whose state input and output is at most
# 256 KiB (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html): these
# bounds keep the largest manifest's share of it under ~125 KiB, so an artefact that would
# blow the limit is refused at Validate, by name, instead of failing a task with
# States.DataLimitExceeded.
MAX_PROMPT_FILES = 200
MAX_PROMPT_NAME = 64
MAX_PROMPT_PATH = 256


class PromptFile(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=MAX_PROMPT_NAME)
    file: str = Field(min_length=1, max_length=MAX_PROMPT_PATH)
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
    prompts: list[PromptFile] = Field(min_length=1, max_length=MAX_PROMPT_FILES)
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



# ---------------------------------------------------------------------- the release pin
# The environment variables that pin one release on a published version of a service's
# function: written by PublishCandidate, checked after it publishes, read by the inference
# service and by whoever asks "does this version serve a release?". Named here only.
PIN_KEY = "MODEL_CONFIG_KEY"
PIN_VERSION = "MODEL_CONFIG_VERSION"
# The prompt files' versions don't fit in the environment (Lambda allows 4 KB in all, and
# 100 prompt files' version ids alone take ~3.5 KB): they are one JSON document, the
# prompt pin, written once per release and pinned here by its own object version.
PIN_PROMPTS_KEY = "MODEL_PROMPT_PIN_KEY"
PIN_PROMPTS_VERSION = "MODEL_PROMPT_PIN_VERSION"
PIN_VARIABLES = (PIN_KEY, PIN_VERSION, PIN_PROMPTS_KEY, PIN_PROMPTS_VERSION)


def prompt_pin_key(service: str, release_id: str) -> str:
    """Where a release's prompt pin lives: beside its reports, written by the pipeline only."""
    return f"reports/{service}/{release_id}/prompt-pin.json"


def prompt_pin_document(artifact: ArtifactRef, prompt_versions: Mapping[str, str]) -> str:
    """The prompt pin: which manifest version it belongs to and each prompt file's version."""
    return json.dumps(
        {"manifest": {"key": artifact.key, "version_id": artifact.version_id}, "prompt_versions": dict(prompt_versions)},
        sort_keys=True,
        separators=(",", ":"),
    )


def pin_environment(artifact: ArtifactRef, prompt_pin_key: str, prompt_pin_version: str) -> dict[str, str]:
    """The pin of one release as environment variables: the manifest's object version and
    the prompt pin's. Its size does not grow with the number of prompt files."""
    return {
        PIN_KEY: artifact.key,
        PIN_VERSION: artifact.version_id,
        PIN_PROMPTS_KEY: prompt_pin_key,
        PIN_PROMPTS_VERSION: prompt_pin_version,
    }


def is_pinned(environment: Mapping[str, str]) -> bool:
    """A version serves a model release only when its environment pins one."""
    return bool(environment.get(PIN_KEY))


def parse_release_key(key: str) -> tuple[str, str]:
    """releases/<service>/<commit>/model-config.json -> (service, commit)."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] + "/" != RELEASES_PREFIX or parts[3] != MANIFEST_FILENAME:
        raise ManifestInvalid(
            f"{key!r} is not a release manifest key: expected "
            f"{RELEASES_PREFIX}<service>/<commit>/{MANIFEST_FILENAME}"
        )
    return parts[1], parts[2]
