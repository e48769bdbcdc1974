"""What CI uploads: the release manifest (model-config.json), its key and its digests.

The manifest means what it says (:func:`parse_manifest`): its size is capped before it is
read, a key given twice in one JSON object is refused (a reviewer and the pipeline could
otherwise read different values), NaN and infinities are refused, nothing is coerced (strict
models: ``"256"`` and ``true`` are not numbers), unknown fields are errors (a typo is
reported instead of silently ignored), and every string has a length limit, so an error or
a ledger record built from a manifest stays bounded.
"""

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from modelgate.errors import ManifestInvalid, shown
from modelgate.model_base import Nested as _Nested
from modelgate.model_base import Strict as _Strict

MANIFEST_FILENAME = "model-config.json"
RELEASES_PREFIX = "releases/"

# Bedrock model ids and inference profiles end in an explicit version: "-v1:0", "-v2:1".
# Anything else ("...-latest", a bare family name) can change under us without a release.
_PINNED_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9.\-]*-v\d+(:\d+)?$")
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,40}[a-z0-9]$")
_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _printable(field: str, value: str | None) -> str | None:
    """Text a person reads (branch, author, paths) is one printable line: no control, format
    or line-separator characters that could forge lines or hide text in a mail or a terminal."""
    if value is not None and not value.isprintable():
        bad = next(ch for ch in value if not ch.isprintable())
        raise ValueError(f"{field} contains the non-printable character {bad!r} (U+{ord(bad):04X})")
    return value


def digest_problem(name: str, expected_sha256: str, data: bytes, where: str) -> str | None:
    """The one prompt-digest check: None when ``data`` is what the manifest names, else why not."""
    actual = sha256_hex(data)
    if actual == expected_sha256:
        return None
    return f"prompt {name!r}: sha256 of {where} is {actual}, manifest says {expected_sha256}"


# Length limits of the manifest's free-text fields. Bedrock model ids and inference profile
# ids are tens of characters (the API accepts up to 2,048 for ARNs, which a pinned id is not);
# git sets no length limit on branch or author names, so these are generous but finite.
MAX_MODEL_ID = 256
MAX_BRANCH = 256
MAX_AUTHOR = 256
MAX_REPOSITORY = 512


class ModelSpec(_Nested):
    provider: Literal["bedrock", "local"] = "bedrock"
    model_id: str = Field(max_length=MAX_MODEL_ID)

    @field_validator("model_id")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if value.lower().endswith("latest") or ":latest" in value.lower():
            raise ValueError(f"model_id {shown(value)} is not pinned: 'latest' moves without a release")
        if not _PINNED_MODEL_ID.fullmatch(value):
            raise ValueError(
                f"model_id {shown(value)} is not pinned: it must end in an explicit version "
                "such as '-v1:0' (e.g. 'anthropic.claude-3-haiku-20240307-v1:0')"
            )
        return value


class InferenceParameters(_Nested):
    """How the model is called (the providers read it as the manifest's attribute; never validated,
    built or dumped on its own)."""

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


class PromptFile(_Nested):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=MAX_PROMPT_NAME)
    file: str = Field(min_length=1, max_length=MAX_PROMPT_PATH)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("file")
    @classmethod
    def _relative(cls, value: str) -> str:
        _printable("file", value)
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"prompt file {shown(value)} must be a path inside the release folder")
        return value


class SourceInfo(_Nested):
    commit: str = Field(max_length=40)
    branch: str = Field(min_length=1, max_length=MAX_BRANCH)
    repository: str | None = Field(default=None, min_length=1, max_length=MAX_REPOSITORY)
    author: str | None = Field(default=None, max_length=MAX_AUTHOR)

    @field_validator("commit")
    @classmethod
    def _sha(cls, value: str) -> str:
        if not _COMMIT.fullmatch(value):
            raise ValueError(f"commit {shown(value)} is not a git commit sha (7-40 lower-case hex digits)")
        return value

    @field_validator("branch", "repository", "author")
    @classmethod
    def _one_printable_line(cls, value: str | None, info: Any) -> str | None:
        return _printable(info.field_name, value)


class Manifest(_Strict):
    """model-config.json: what one release of one service is."""

    schema_version: Literal[1] = 1
    service: str
    model: ModelSpec
    # The default is validated by this model's schema (validate_default), like the policy's sections.
    parameters: InferenceParameters = Field(default={}, validate_default=True)
    prompts: list[PromptFile] = Field(min_length=1, max_length=MAX_PROMPT_FILES)
    source: SourceInfo

    @field_validator("schema_version", mode="before")
    @classmethod
    def _integer_one(cls, value: Any) -> Any:
        # Literal[1] alone takes true and 1.0 as 1, even in strict mode: the schema version is a number
        if type(value) is not int:
            raise ValueError(f"schema_version must be the integer 1, got {type(value).__name__} {str(value)[:20]}")
        return value

    @field_validator("service")
    @classmethod
    def _service_name(cls, value: str) -> str:
        if not _SERVICE_NAME.fullmatch(value):
            raise ValueError(f"service {shown(value)} must be 3-42 lower-case letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _unique_prompts(self) -> "Manifest":
        names = [p.name for p in self.prompts]
        if len(names) != len(set(names)):
            raise ValueError(f"prompt names must be unique, got {names}")
        if "system" not in names:
            raise ValueError("prompts must include one named 'system'")
        return self

    def prompt(self, name: str) -> PromptFile:
        return next(p for p in self.prompts if p.name == name)


# ---------------------------------------------------------------------- the parser
# Size caps, checked against the object's size (HeadObject's ContentLength) before a byte
# of it is read. The manifest travels in the release's state, which Step Functions caps at
# 256 KiB ("Step Functions service quotas", docs.aws.amazon.com/step-functions/latest/dg/
# service-quotas.html): a larger manifest could never fit, whatever it holds. A prompt file
# is sent with every request; 512 KiB is over 100k tokens, the order of a large model's
# context window. All of a release's prompt files are read at Validate: 4 MiB in all.
MAX_MANIFEST_BYTES = 256 * 1024
MAX_PROMPT_BYTES = 512 * 1024
MAX_PROMPTS_TOTAL_BYTES = 4 * 1024 * 1024
MAX_PROBLEMS_SHOWN = 10


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{shown(text, 40)} is not a finite number")
    return value


def manifest_too_large(size: int, where: str) -> str:
    return (
        f"{where} is {size:,} bytes; a manifest may be at most {MAX_MANIFEST_BYTES:,} bytes "
        "(the release's state in Step Functions is at most 256 KiB)"
    )


def manifest_document(data: bytes, where: str = MANIFEST_FILENAME) -> dict[str, Any]:
    """The manifest's bytes as one JSON object, read as a strict JSON reader would: UTF-8,
    no key twice in one object (Python's json keeps the last one silently), no NaN or
    infinity, not nested beyond what the parser handles. ManifestInvalid says what is wrong."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestInvalid(manifest_too_large(len(data), where))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestInvalid(f"{where} is not UTF-8 text (byte {exc.start})") from None
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite)
    except _DuplicateKey as exc:
        raise ManifestInvalid(
            f"{where}: key {shown(exc.key, 60)} appears twice in one JSON object; duplicate keys are refused "
            "(readers disagree on which one counts)"
        ) from None
    except RecursionError:
        raise ManifestInvalid(f"{where} is nested too deeply to be a manifest") from None
    except ValueError as exc:  # JSONDecodeError, NaN / Infinity, an integer of thousands of digits
        raise ManifestInvalid(f"{where} is not valid JSON: {str(exc)[:300]}") from None
    if not isinstance(document, dict):
        raise ManifestInvalid(f"{where} must hold a JSON object, not a JSON {type(document).__name__}")
    return document


def _location(loc: tuple[Any, ...], root: str) -> str:
    parts = [str(p) if isinstance(p, int) or str(p).isidentifier() and len(str(p)) <= 64 else shown(p, 40) for p in loc]
    return ".".join(parts) or root


def manifest_problems(exc: ValidationError) -> str:
    """pydantic's problems, each with its field path, bounded: at most ``MAX_PROBLEMS_SHOWN``
    of them, and no field name or value echoed in full (an unknown key can be any length)."""
    errors = exc.errors(include_url=False, include_input=False)
    shown_errors = [f"{_location(e['loc'], 'manifest')}: {e['msg'][:300]}" for e in errors[:MAX_PROBLEMS_SHOWN]]
    more = len(errors) - MAX_PROBLEMS_SHOWN
    return "; ".join(shown_errors + ([f"and {more} more problem(s)"] if more > 0 else []))


def manifest_from_document(document: Mapping[str, Any], where: str = MANIFEST_FILENAME) -> Manifest:
    """The manifest's JSON object as a ``Manifest``, in strict mode: no type is coerced."""
    try:
        return Manifest.model_validate(document, strict=True)
    except ValidationError as exc:
        raise ManifestInvalid(f"{where} is invalid: {manifest_problems(exc)}") from None


def parse_manifest(data: bytes, where: str = MANIFEST_FILENAME) -> Manifest:
    """model-config.json's bytes -> the Manifest, or ManifestInvalid naming every problem
    (bounded). The one parser: Validate, the inference function and the CLI all use it."""
    return manifest_from_document(manifest_document(data, where), where)



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
    """releases/<service>/<commit>/model-config.json -> (service, commit), each checked:
    the release id and the execution name are made of them, and Step Functions refuses an
    execution name with whitespace, brackets, wildcards, ``" # % \\ ^ | ~ ` $ & , ; : /`` or
    control characters (StartExecution, "name", docs.aws.amazon.com/step-functions/latest/
    apireference/API_StartExecution.html). A service name and a commit sha have none."""
    parts = key.split("/")
    expected = f"expected {RELEASES_PREFIX}<service>/<commit>/{MANIFEST_FILENAME}"
    if len(parts) != 4 or parts[0] + "/" != RELEASES_PREFIX or parts[3] != MANIFEST_FILENAME:
        extra = f" ({len(parts) - 4} path segment(s) too many)" if len(parts) > 4 else ""
        raise ManifestInvalid(f"{shown(key)} is not a release manifest key{extra}: {expected}")
    service, commit = parts[1], parts[2]
    if not _SERVICE_NAME.fullmatch(service):
        raise ManifestInvalid(
            f"{shown(key)}: service segment {shown(service, 60)} is not a service name "
            f"(3-42 lower-case letters, digits and '-'); {expected}"
        )
    if not _COMMIT.fullmatch(commit):
        raise ManifestInvalid(
            f"{shown(key)}: commit segment {shown(commit, 60)} is not a git commit sha "
            f"(7-40 lower-case hex digits); {expected}"
        )
    return service, commit


def key_service(key: str) -> str | None:
    """The service segment of a release key, if it is a service name (for a refused key's record)."""
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and _SERVICE_NAME.fullmatch(parts[1]) else None


def refused_release_id(key: str, version_id: str) -> str:
    """The ledger id of an upload refused for its key alone (no release id can be made of it):
    the service segment when it is a service name, and a digest of the key and version, so a
    duplicate event finds the same record. Valid as an execution name, though none starts."""
    digest = sha256_hex(f"{key}\n{version_id}".encode())[:16]
    return f"{key_service(key) or 'unknown'}-refused-{digest}"
