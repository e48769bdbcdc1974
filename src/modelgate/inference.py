"""The managed inference service: serve one request with the release its version pins.

Why the environment pins S3 object versions: a Lambda version's environment is frozen
when the version is published, so pinning the manifest's and every prompt file's object
version there makes "version N" mean one model + one prompt forever, even after CI
overwrites ``releases/<service>/<commit>/`` or a later release is promoted. The sha256
digests in the manifest are checked too, so a pinned version that doesn't hold what the
release was evaluated with is an error, not a silent drift.

Environment, in two parts:

- the function's settings (``modelgate.settings.InferenceSettings``: the model provider,
  which must match the manifest's ``model.provider``, and the artefact bucket), set by
  template.yaml and validated once when the handler starts;
- the release pin (``modelgate.manifest.PIN_VARIABLES``, written by PublishCandidate on
  each published version: the manifest's key and object version, and a JSON object of
  each prompt file's path as in the manifest -> its object version). It is read per
  request (:func:`read_pin`). A version that pins no release (the unpublished $LATEST, or
  the stack's first version, before any release) serves the function's **bootstrap
  configuration** when it has one (``MODEL_BOOTSTRAP``: a folder bundled with the function's
  code, holding a manifest and its prompts, :func:`load_bootstrap`), so a new service
  answers from its first request; without one it answers ``ModelNotConfigured``.
  A bootstrap is not a release: the pipeline still treats the first release as one with no
  live release to compare with (``lambda_alias.is_configured`` reads the pin only).

Prompt templates use ``{name}`` placeholders filled from the request's ``inputs``
(``{{``/``}}`` for literal braces). The ``system`` prompt is required; an optional
``user`` prompt shapes the user message and defaults to ``{question}``.
"""

import string
import threading
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelgate import pricing
from modelgate.errors import (
    ConfigurationError,
    ManifestInvalid,
    ModelgateError,
    ModelNotConfigured,
    PromptVariableMissing,
    validation_problems,
)
from modelgate.manifest import (
    PIN_KEY,
    PIN_PROMPTS_KEY,
    PIN_PROMPTS_VERSION,
    PIN_VARIABLES,
    PIN_VERSION,
    Manifest,
    PromptFile,
    digest_problem,
    is_pinned,
)
from modelgate.observability import logger
from modelgate.settings import InferenceSettings

if TYPE_CHECKING:  # the caller passes its provider: the inference function, which imports providers itself
    from modelgate.providers import ModelProvider

DEFAULT_USER_TEMPLATE = "{question}"
_MISSING_OBJECT_CODES = {"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404", "InvalidArgument"}


class InvalidRequest(ModelgateError):
    """The inference request does not have the documented shape."""


# --------------------------------------------------------------------------- templates


class PromptTemplate(NamedTuple):
    """A parsed ``{name}`` template: literal text and the variables between it."""

    name: str
    file: str
    parts: tuple[tuple[str, str | None], ...]  # (literal, variable or None)

    @classmethod
    def parse(cls, name: str, file: str, text: str) -> "PromptTemplate":
        """Parse once at load time, so a malformed template fails the release, not a request."""
        parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:  # a lone "{" or "}"
            raise ManifestInvalid(
                f"prompt {name!r} ({file}) is not a valid template: {exc} "
                "(write literal braces as '{{' and '}}')"
            ) from exc
        for literal, variable, spec, conversion in parsed:
            if variable is not None and (not variable.isidentifier() or spec or conversion):
                raise ManifestInvalid(
                    f"prompt {name!r} ({file}) has placeholder {{{variable}"
                    f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}: "
                    "only plain {name} placeholders are supported"
                )
            parts.append((literal, variable))
        return cls(name=name, file=file, parts=tuple(parts))

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(v for _, v in self.parts if v is not None)

    def render(self, values: Mapping[str, str]) -> str:
        missing = sorted(self.variables - values.keys())
        if missing:
            raise PromptVariableMissing(
                f"prompt {self.name!r} ({self.file}) needs variable "
                f"{', '.join(repr(m) for m in missing)}, which the request does not carry "
                f"(request inputs: {', '.join(sorted(values)) or 'none'})"
            )
        return "".join(lit + (values[var] if var is not None else "") for lit, var in self.parts)


# --------------------------------------------------------------------------- release


class LoadedRelease(NamedTuple):
    """A release as one function version serves it: manifest + verified, parsed prompts."""

    bucket: str
    key: str
    config_version: str
    manifest: Manifest
    prompts: Mapping[str, PromptTemplate] = MappingProxyType({})

    @property
    def system(self) -> PromptTemplate:
        return self.prompts["system"]

    @property
    def user(self) -> PromptTemplate:
        return self.prompts.get("user") or _DEFAULT_USER


_DEFAULT_USER = PromptTemplate.parse("user", "<default>", DEFAULT_USER_TEMPLATE)


_CacheKey = tuple[str, str, str, tuple[tuple[str, str], ...]]
_cache: dict[_CacheKey, LoadedRelease] = {}
_cache_lock = threading.Lock()
_CACHE_SIZE = 8  # several functions share one process locally; on AWS there is one entry


def clear_release_cache() -> None:
    """Forget loaded releases (tests; the local runtime when it resets)."""
    with _cache_lock:
        _cache.clear()
        _pin_cache.clear()


def _get_bytes(s3_client: Any, bucket: str, key: str, version_id: str, what: str) -> bytes:
    try:
        response = s3_client.get_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _MISSING_OBJECT_CODES:
            raise ConfigurationError(
                f"{what} s3://{bucket}/{key} version {version_id!r} does not exist ({code})"
            ) from exc
        raise
    return response["Body"].read()


def load_release(
    s3_client: Any,
    bucket: str,
    key: str,
    version_id: str,
    prompt_versions: Mapping[str, str],
) -> LoadedRelease:
    """Read the manifest and its prompts at their pinned versions; cached per version.

    Warm invocations reuse the cache: the pinned versions are immutable, so there is
    nothing to refresh.
    """
    cache_key: _CacheKey = (bucket, key, version_id, tuple(sorted(prompt_versions.items())))
    if (cached := _cache.get(cache_key)) is not None:
        return cached

    raw = _get_bytes(s3_client, bucket, key, version_id, "model config")
    # What Validate accepted is served: a rule Validate gained later (modelgate.manifest.
    # parse_manifest, checked_template) must not stop a version already live.
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise ManifestInvalid(f"s3://{bucket}/{key} version {version_id!r}: {exc}") from exc

    folder = key.rsplit("/", 1)[0] if "/" in key else ""
    prompts: dict[str, PromptTemplate] = {}
    for prompt in manifest.prompts:
        pinned = prompt_versions.get(prompt.file)
        if not pinned:
            raise ConfigurationError(
                f"the prompt pin ({PIN_PROMPTS_KEY}) pins no version for prompt file {prompt.file!r} "
                f"(pinned: {', '.join(sorted(prompt_versions)) or 'none'})"
            )
        prompt_key = f"{folder}/{prompt.file}" if folder else prompt.file
        data = _get_bytes(s3_client, bucket, prompt_key, pinned, f"prompt {prompt.name!r}")
        prompts[prompt.name] = _verified_template(
            prompt, data, f"s3://{bucket}/{prompt_key} version {pinned!r}"
        )

    release = LoadedRelease(bucket, key, version_id, manifest, prompts)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[cache_key] = release
    logger.info(
        "model release loaded",
        managed_service=manifest.service,
        commit=manifest.source.commit,
        config_version=version_id,
        model_id=manifest.model.model_id,
    )
    return release


def _verified_template(prompt: PromptFile, data: bytes, where: str) -> PromptTemplate:
    """A prompt file's bytes as a template, once they match the manifest's digest."""
    problem = digest_problem(prompt.name, prompt.sha256, data, where)
    if problem is not None:
        raise ManifestInvalid(problem)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestInvalid(f"prompt {prompt.name!r} ({prompt.file}) is not UTF-8 (byte {exc.start})") from None
    return PromptTemplate.parse(prompt.name, prompt.file, text)


def checked_template(prompt: PromptFile, data: bytes, where: str) -> PromptTemplate:
    """What Validate (and the CLI, before upload) requires of a prompt file, so a bad template
    fails before its evaluation is paid for: the manifest's digest, UTF-8, some text, and a
    template this module's renderer renders (parsed, then rendered with every variable it
    names). ManifestInvalid says why not."""
    template = _verified_template(prompt, data, where)
    if not data.decode("utf-8").strip():
        raise ManifestInvalid(f"prompt {prompt.name!r} ({prompt.file}) has no text ({len(data):,} bytes, all blank)")
    template.render({name: "" for name in template.variables})  # the renderer's own path, end to end
    return template


def release_from_files(
    manifest: Manifest, files: Mapping[str, bytes], *, source: str = "local"
) -> LoadedRelease:
    """A release from a manifest and its prompt files' bytes (a folder, before upload).

    Digests are checked here too (``files`` maps each prompt's ``file`` to its bytes), so
    a release built this way holds exactly what its manifest names. ``source`` stands in
    for the S3 location in ``LoadedRelease`` (``key``) and its version (``"local"``).
    """
    prompts: dict[str, PromptTemplate] = {}
    for prompt in manifest.prompts:
        data = files.get(prompt.file)
        if data is None:
            raise ManifestInvalid(f"prompt {prompt.name!r}: no file {prompt.file!r} given")
        prompts[prompt.name] = checked_template(prompt, data, f"{prompt.file} ({source})")
    return LoadedRelease("", source, "local", manifest, prompts)


# --------------------------------------------------------------------------- pin and request


class ReleasePin(BaseModel):
    """One published version's pin of its release (``modelgate.manifest.pin_environment``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str = Field(alias=PIN_KEY, min_length=1)
    version: str = Field(alias=PIN_VERSION, min_length=1)
    prompts_key: str = Field(alias=PIN_PROMPTS_KEY, min_length=1)
    prompts_version: str = Field(alias=PIN_PROMPTS_VERSION, min_length=1)


def read_pin(env: Mapping[str, str]) -> ReleasePin:
    """The release this function version serves; ``ModelNotConfigured`` when it pins none."""
    if not is_pinned(env):
        raise ModelNotConfigured(
            "this function version has no model configuration: no model release has been "
            f"promoted to it yet ({PIN_KEY} is not set)"
        )
    try:
        return ReleasePin.model_validate({name: env[name] for name in PIN_VARIABLES if name in env})
    except ValidationError as exc:
        wrong = sorted({str(e["loc"][0]) for e in exc.errors()})
        raise ConfigurationError(
            f"inference function environment is incomplete or wrong: {', '.join(wrong)}"
        ) from exc


class _PromptPin(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest: dict[str, str]
    prompt_versions: dict[str, str]


_pin_cache: dict[tuple[str, str, str], dict[str, str]] = {}


def load_prompt_pin(s3_client: Any, bucket: str, pin: ReleasePin) -> dict[str, str]:
    """The prompt files' versions of the pinned release (``modelgate.manifest.prompt_pin_document``),
    read once per pinned version: it is immutable."""
    cache_key = (bucket, pin.prompts_key, pin.prompts_version)
    if (cached := _pin_cache.get(cache_key)) is not None:
        return cached
    where = f"s3://{bucket}/{pin.prompts_key} version {pin.prompts_version!r}"
    raw = _get_bytes(s3_client, bucket, pin.prompts_key, pin.prompts_version, "prompt pin")
    try:
        document = _PromptPin.model_validate_json(raw)
    except ValidationError as exc:
        raise ConfigurationError(f"prompt pin {where} is not a prompt pin: {validation_problems(exc, 'pin')}") from exc
    if document.manifest != {"key": pin.key, "version_id": pin.version}:
        raise ConfigurationError(
            f"prompt pin {where} belongs to {document.manifest}, not to the pinned model config "
            f"{pin.key} version {pin.version!r}"
        )
    with _cache_lock:
        if len(_pin_cache) >= _CACHE_SIZE:
            _pin_cache.pop(next(iter(_pin_cache)))
        _pin_cache[cache_key] = document.prompt_versions
    return document.prompt_versions


class InferenceRequest(BaseModel):
    """``{"inputs": {"question": "...", ...}}``: the template variables of one request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: dict[str, str]


def parse_request(event: Any) -> InferenceRequest:
    try:
        return InferenceRequest.model_validate(event)
    except ValidationError as exc:
        problems = validation_problems(exc, "event")
        raise InvalidRequest(
            f'request must be {{"inputs": {{"<variable>": "<text>", ...}}}}: {problems}'
        ) from exc


def handle_request(
    event: dict[str, Any],
    settings: InferenceSettings,
    pin: ReleasePin,
    s3_client: Any,
    provider: "ModelProvider",
) -> dict[str, Any]:
    """Answer one request with the pinned release; returns output, usage, cost and release."""
    request = parse_request(event)
    prompt_versions = load_prompt_pin(s3_client, settings.bucket, pin)
    release = load_release(s3_client, settings.bucket, pin.key, pin.version, prompt_versions)
    manifest = release.manifest
    if manifest.model.provider != settings.provider:
        raise ConfigurationError(
            f"release {manifest.source.commit} wants model provider "
            f"{manifest.model.provider!r}, but this function runs MODEL_PROVIDER={settings.provider!r}"
        )
    return answer(release, request.inputs, provider)


BOOTSTRAP_SOURCE = "bootstrap"  # LoadedRelease.key and config_version of a bootstrap configuration


@lru_cache(maxsize=4)
def load_bootstrap(folder: Path) -> LoadedRelease:
    """The function's bootstrap configuration: ``folder/model-config.json`` and the prompt files
    it names, read from the function's own code (immutable per deployment, so read once).

    Checked as Validate checks a release (the manifest's schema, each prompt's sha256 and
    template): a broken bootstrap fails every request naming the problem, never serves a
    half-read prompt."""
    manifest_path = folder / "model-config.json"
    try:
        raw = manifest_path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"bootstrap configuration {manifest_path} can't be read: {exc.strerror}") from exc
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise ManifestInvalid(f"bootstrap configuration {manifest_path}: {validation_problems(exc, 'manifest')}") from exc
    files: dict[str, bytes] = {}
    for prompt in manifest.prompts:
        path = (folder / prompt.file).resolve()
        if folder.resolve() not in path.parents:
            raise ManifestInvalid(f"bootstrap configuration {manifest_path}: prompt file {prompt.file!r} is outside it")
        try:
            files[prompt.file] = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"bootstrap prompt {path} can't be read: {exc.strerror}") from exc
    return release_from_files(manifest, files, source=BOOTSTRAP_SOURCE)._replace(config_version=BOOTSTRAP_SOURCE)


def serve(
    event: dict[str, Any],
    settings: InferenceSettings,
    environment: Mapping[str, str],
    s3_client: Callable[[], Any],
    provider: "ModelProvider",
    code_root: Path,
) -> dict[str, Any]:
    """One request: with the release this version pins, else with the function's bootstrap
    configuration (``settings.bootstrap``, a folder under ``code_root``), else ModelNotConfigured.
    ``s3_client`` makes the S3 client, only when a pinned release is read."""
    if is_pinned(environment) or settings.bootstrap is None:
        pin = read_pin(environment)
        return handle_request(event, settings, pin, s3_client(), provider)
    request = parse_request(event)
    release = load_bootstrap(code_root / settings.bootstrap)
    if release.manifest.model.provider != settings.provider:
        raise ConfigurationError(
            f"the bootstrap configuration {settings.bootstrap} wants model provider "
            f"{release.manifest.model.provider!r}, but this function runs MODEL_PROVIDER={settings.provider!r}"
        )
    return answer(release, request.inputs, provider)


def answer(
    release: LoadedRelease, inputs: Mapping[str, str], provider: "ModelProvider"
) -> dict[str, Any]:
    """Render the release's prompts with ``inputs``, call the model, price the call.

    The one path from a loaded release to a response: the inference function uses it
    with a release pinned in S3, ``modelgate eval`` with a release folder on disk, so what
    an engineer evaluates before pushing is what the function will serve.
    """
    manifest = release.manifest
    system = release.system.render(inputs)
    user = release.user.render(inputs)
    completion = provider.converse(
        model_id=manifest.model.model_id,
        system=system,
        user=user,
        parameters=manifest.parameters,
    )
    cost = pricing.cost_usd(completion.model_id, completion.input_tokens, completion.output_tokens)
    return {
        "output": completion.text,
        "model_id": completion.model_id,
        "usage": {
            "input_tokens": completion.input_tokens,
            "output_tokens": completion.output_tokens,
        },
        "cost_usd": cost,
        "release": {
            "service": manifest.service,
            "commit": manifest.source.commit,
            "config_version": release.config_version,
        },
    }
