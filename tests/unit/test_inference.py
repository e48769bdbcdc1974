"""The inference service serves exactly the release its environment pins."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from modelgate import inference, pricing, providers
from modelgate.adapters import clients as aws
from modelgate.errors import (
    ConfigurationError,
    ManifestInvalid,
    ModelNotConfigured,
    PromptVariableMissing,
)
from modelgate.inference import (
    InvalidRequest,
    PromptTemplate,
    handle_request,
    load_release,
    read_pin,
)
from modelgate.manifest import ArtifactRef, prompt_pin_document, prompt_pin_key, sha256_hex
from modelgate.providers import LocalProvider
from modelgate.settings import InferenceSettings, load_settings

BUCKET = "artefacts"
PREFIX = "releases/support-bot/abc1234"
KEY = f"{PREFIX}/model-config.json"
PIN_KEY_NAME = prompt_pin_key("support-bot", "support-bot-abc1234-0123456789")
MODEL = "local.retrieval-small-v1:0"
APP = Path(__file__).resolve().parents[2] / "functions" / "inference" / "app.py"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    inference.clear_release_cache()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client
    inference.clear_release_cache()


def put_release(
    s3: Any,
    prompts: dict[str, str],
    *,
    commit: str = "abc1234",
    model_id: str = MODEL,
    provider: str = "local",
    digests: dict[str, str] | None = None,
) -> dict[str, str]:
    """Upload prompt files then the manifest (CI's order); return the pinning environment."""
    versions: dict[str, str] = {}
    entries = []
    for name, text in prompts.items():
        file = f"prompts/{name}.txt"
        put = s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{file}", Body=text.encode())
        versions[file] = put["VersionId"]
        digest = (digests or {}).get(name, sha256_hex(text.encode()))
        entries.append({"name": name, "file": file, "sha256": digest})
    manifest = {
        "service": "support-bot",
        "model": {"provider": provider, "model_id": model_id},
        "prompts": entries,
        "source": {"commit": commit, "branch": "main"},
    }
    put = s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps(manifest).encode())
    env = {"MODEL_PROVIDER": "local", "MODEL_CONFIG_BUCKET": BUCKET, "MODEL_CONFIG_KEY": KEY, "MODEL_CONFIG_VERSION": put["VersionId"]}
    return {**env, **put_prompt_pin(s3, put["VersionId"], versions)}


def put_prompt_pin(s3: Any, manifest_version: str, versions: dict[str, str]) -> dict[str, str]:
    """The release's prompt pin, as PublishCandidate writes it; the variables that pin it."""
    document = prompt_pin_document(ArtifactRef(bucket=BUCKET, key=KEY, version_id=manifest_version), versions)
    put = s3.put_object(Bucket=BUCKET, Key=PIN_KEY_NAME, Body=document.encode())
    return {"MODEL_PROMPT_PIN_KEY": PIN_KEY_NAME, "MODEL_PROMPT_PIN_VERSION": put["VersionId"]}


def pinned_versions(s3: Any, env: dict[str, str]) -> dict[str, str]:
    pin = s3.get_object(Bucket=BUCKET, Key=env["MODEL_PROMPT_PIN_KEY"], VersionId=env["MODEL_PROMPT_PIN_VERSION"])
    return dict(json.loads(pin["Body"].read())["prompt_versions"])


def ask(question: str, **extra: str) -> dict[str, Any]:
    return {"inputs": {"question": question, **extra}}


PROVIDER = LocalProvider(base_ms=0, per_output_token_ms=0)


def serve(event: Any, env: dict[str, str], s3: Any) -> dict[str, Any]:
    """What the handler does with a function environment: its settings, its pin, the request."""
    return handle_request(event, load_settings(env, InferenceSettings), read_pin(env), s3, PROVIDER)

OLD_SYSTEM = "Q: What does Plus cost? A: Plus costs $5 per month."
NEW_SYSTEM = "Q: What does Plus cost? A: Plus costs $6 per month."


class CountingS3:
    """Wraps a client and counts get_object calls (a fake over a mock)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.gets = 0

    def get_object(self, **kwargs: Any) -> Any:
        self.gets += 1
        return self._client.get_object(**kwargs)


# --------------------------------------------------------------------------- pinning


def test_pinned_version_serves_the_old_release_after_the_key_is_overwritten(s3: Any) -> None:
    # Given release v-old was pinned, then CI overwrote the same keys with v-new
    old_env = put_release(s3, {"system": OLD_SYSTEM})
    new_env = put_release(s3, {"system": NEW_SYSTEM}, commit="def5678")
    assert old_env["MODEL_CONFIG_VERSION"] != new_env["MODEL_CONFIG_VERSION"]
    # When each pinned environment serves the same question
    old = serve(ask("What does Plus cost?"), old_env, s3)
    new = serve(ask("What does Plus cost?"), new_env, s3)
    # Then each reads its own object versions, not the latest
    assert old["output"] == "Plus costs $5 per month."
    assert old["release"] == {
        "service": "support-bot",
        "commit": "abc1234",
        "config_version": old_env["MODEL_CONFIG_VERSION"],
    }
    assert new["output"] == "Plus costs $6 per month."
    assert new["release"]["commit"] == "def5678"


def test_response_carries_usage_and_cost(s3: Any) -> None:
    # Given a pinned release
    env = put_release(s3, {"system": NEW_SYSTEM})
    # When a request is served
    response = serve(ask("What does Plus cost?"), env, s3)
    # Then usage comes from the model and cost from the price table
    usage = response["usage"]
    assert response["model_id"] == MODEL
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert response["cost_usd"] == pytest.approx(
        pricing.cost_usd(MODEL, usage["input_tokens"], usage["output_tokens"])
    )
    json.dumps(response)  # a Lambda response must be JSON


def test_digest_mismatch_is_a_clear_error(s3: Any) -> None:
    # Given a manifest whose system digest doesn't match the uploaded prompt
    env = put_release(s3, {"system": NEW_SYSTEM}, digests={"system": sha256_hex(b"something else")})
    # When a request is served / Then the error names the prompt and both digests
    with pytest.raises(
        ManifestInvalid,
        match=r"prompt 'system': sha256 of s3://artefacts/.*/prompts/system.txt version '.+' "
        r"is [0-9a-f]{64}, manifest says [0-9a-f]{64}",
    ):
        serve(ask("Plus?"), env, s3)


def test_warm_invocations_do_not_reread_s3(s3: Any) -> None:
    # Given a pinned release with a system and a user prompt
    env = put_release(s3, {"system": NEW_SYSTEM, "user": "Question: {question}"})
    counting = CountingS3(s3)
    # When two requests are served
    serve(ask("What does Plus cost?"), env, counting)
    cold_reads = counting.gets
    serve(ask("What does Plus cost?"), env, counting)
    # Then the prompt pin, the manifest and both prompts were read once, on the cold start only
    assert cold_reads == 4
    assert counting.gets == 4


def test_load_release_returns_parsed_prompts(s3: Any) -> None:
    env = put_release(s3, {"system": NEW_SYSTEM, "user": "Q: {question} ({customer_tier})"})
    release = load_release(s3, BUCKET, KEY, env["MODEL_CONFIG_VERSION"], pinned_versions(s3, env))
    assert release.manifest.service == "support-bot"
    assert release.config_version == env["MODEL_CONFIG_VERSION"]
    assert release.user.variables == {"question", "customer_tier"}
    assert release.system.variables == set()


def test_a_prompt_without_a_pinned_version_is_a_configuration_error(s3: Any) -> None:
    # Given an environment that pins the manifest but not the user prompt
    env = put_release(s3, {"system": NEW_SYSTEM, "user": "{question}"})
    versions = {k: v for k, v in pinned_versions(s3, env).items() if "user" not in k}
    env.update(put_prompt_pin(s3, env["MODEL_CONFIG_VERSION"], versions))
    # When served / Then the error names the unpinned file
    with pytest.raises(ConfigurationError, match="prompts/user.txt"):
        serve(ask("Plus?"), env, s3)


def test_a_version_that_does_not_exist_is_a_configuration_error(s3: Any) -> None:
    env = put_release(s3, {"system": NEW_SYSTEM})
    env["MODEL_CONFIG_VERSION"] = "nonexistent-version"
    env.update(put_prompt_pin(s3, "nonexistent-version", pinned_versions(s3, env)))
    with pytest.raises(ConfigurationError, match="does not exist"):
        serve(ask("Plus?"), env, s3)


def test_provider_mismatch_between_manifest_and_function_is_an_error(s3: Any) -> None:
    # Given a bedrock release pinned on a function running the local provider
    env = put_release(
        s3, {"system": NEW_SYSTEM}, provider="bedrock", model_id="amazon.nova-lite-v1:0"
    )
    # When served / Then the mismatch is named instead of calling the wrong model
    with pytest.raises(ConfigurationError, match="'bedrock'.*MODEL_PROVIDER='local'"):
        serve(ask("Plus?"), env, s3)


# --------------------------------------------------------------------------- environment


@pytest.mark.parametrize("key", [None, ""])
def test_no_release_promoted_yet_is_model_not_configured(key: str | None) -> None:
    # Given a function whose environment pins no manifest (absent or empty)
    env = {"MODEL_PROVIDER": "local", "MODEL_CONFIG_BUCKET": BUCKET}
    if key is not None:
        env["MODEL_CONFIG_KEY"] = key
    # When a request arrives / Then it says no release has been promoted
    with pytest.raises(ModelNotConfigured, match="no model release has been promoted"):
        serve(ask("hi"), env, object())


def test_incomplete_pin_names_the_missing_variables() -> None:
    env = {"MODEL_PROVIDER": "local", "MODEL_CONFIG_BUCKET": BUCKET, "MODEL_CONFIG_KEY": KEY}
    with pytest.raises(ConfigurationError, match="MODEL_CONFIG_VERSION, MODEL_PROMPT_PIN_KEY, MODEL_PROMPT_PIN_VERSION"):
        serve(ask("hi"), env, object())


@pytest.mark.parametrize(
    ("missing", "wrong"),
    [("MODEL_PROVIDER", {}), ("MODEL_CONFIG_BUCKET", {}), ("MODEL_PROVIDER", {"MODEL_PROVIDER": "openai"})],
)
def test_settings_are_validated_when_the_handler_starts(
    monkeypatch: pytest.MonkeyPatch, missing: str, wrong: dict[str, str]
) -> None:
    # Given a function deployed without (or with a wrong) setting, and no release pinned yet
    monkeypatch.setenv("MODEL_PROVIDER", "local")
    monkeypatch.setenv("MODEL_CONFIG_BUCKET", BUCKET)
    monkeypatch.delenv(missing)
    for name, value in wrong.items():
        monkeypatch.setenv(name, value)
    # When it is invoked / Then it fails naming the variable, before anything else
    with pytest.raises(ConfigurationError, match=f"function environment is incomplete or wrong: {missing}$"):
        _load_app().lambda_handler(ask("hi"), CONTEXT)


def test_a_version_without_a_pin_answers_model_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a well-configured function whose version pins no release ($LATEST)
    monkeypatch.setenv("MODEL_PROVIDER", "local")
    monkeypatch.setenv("MODEL_CONFIG_BUCKET", BUCKET)
    for name in ("MODEL_CONFIG_KEY", "MODEL_CONFIG_VERSION", "MODEL_PROMPT_PIN_KEY", "MODEL_PROMPT_PIN_VERSION"):
        monkeypatch.delenv(name, raising=False)
    # When it is invoked / Then it says so
    with pytest.raises(ModelNotConfigured, match="MODEL_CONFIG_KEY is not set"):
        _load_app().lambda_handler(ask("hi"), CONTEXT)


# --------------------------------------------------------------------------- bootstrap

BOOTSTRAP_ROOT = APP.parent


@pytest.mark.parametrize("provider", ["local", "bedrock"])
def test_the_shipped_bootstrap_configurations_hold_what_their_manifest_names(provider: str) -> None:
    # Given the folders template.yaml's MODEL_BOOTSTRAP names (bootstrap/<ModelProvider>)
    inference.load_bootstrap.cache_clear()
    release = inference.load_bootstrap(BOOTSTRAP_ROOT / "bootstrap" / provider)
    # Then each is a valid manifest for its provider whose prompt digests match
    assert release.manifest.model.provider == provider
    assert "Orbit Notes" in release.system.render({})


def test_a_version_without_a_pin_serves_the_bootstrap_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the sample function as the template deploys it: no release pinned, a bootstrap named
    monkeypatch.setenv("MODEL_PROVIDER", "local")
    monkeypatch.setenv("MODEL_CONFIG_BUCKET", BUCKET)
    monkeypatch.setenv("MODEL_BOOTSTRAP", "bootstrap/local")
    for name in ("MODEL_CONFIG_KEY", "MODEL_CONFIG_VERSION", "MODEL_PROMPT_PIN_KEY", "MODEL_PROMPT_PIN_VERSION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(providers, "get_provider", lambda name: PROVIDER)
    # When a request arrives before any release / Then it is answered from the bootstrap's prompt
    response = _load_app().lambda_handler(ask("How much does the Plus plan cost?"), CONTEXT)
    assert "$5 per month" in response["output"]
    assert response["release"]["config_version"] == inference.BOOTSTRAP_SOURCE


def test_a_pinned_release_wins_over_the_bootstrap(s3: Any) -> None:
    # Given a version that pins a release and also carries MODEL_BOOTSTRAP (PublishCandidate copies $LATEST's env)
    env = {**put_release(s3, {"system": NEW_SYSTEM}), "MODEL_BOOTSTRAP": "bootstrap/local"}
    # When it serves / Then the pinned release answers, not the bootstrap
    response = inference.serve(ask("What does Plus cost?"), load_settings(env, InferenceSettings), env, lambda: s3, PROVIDER,
                               BOOTSTRAP_ROOT)
    assert "$6" in response["output"] and response["release"]["commit"] == "abc1234"


def test_a_bootstrap_for_another_provider_or_broken_is_refused_by_name(tmp_path: Path) -> None:
    inference.load_bootstrap.cache_clear()
    env = {"MODEL_PROVIDER": "local", "MODEL_CONFIG_BUCKET": BUCKET, "MODEL_BOOTSTRAP": "bootstrap/bedrock"}
    with pytest.raises(ConfigurationError, match="bootstrap/bedrock wants model provider 'bedrock'.*'local'"):
        inference.serve(ask("hi"), load_settings(env, InferenceSettings), env, object, PROVIDER, BOOTSTRAP_ROOT)
    # A missing folder, an edited prompt and a path that would leave the folder each say what is wrong
    env["MODEL_BOOTSTRAP"] = "nothing"
    with pytest.raises(ConfigurationError, match="bootstrap configuration .*nothing/model-config.json can't be read"):
        inference.serve(ask("hi"), load_settings(env, InferenceSettings), env, object, PROVIDER, tmp_path)
    folder = tmp_path / "edited"
    (folder / "prompts").mkdir(parents=True)
    (folder / "model-config.json").write_bytes((BOOTSTRAP_ROOT / "bootstrap/local/model-config.json").read_bytes())
    (folder / "prompts" / "system.txt").write_text("edited\n")
    with pytest.raises(ManifestInvalid, match="sha256"):
        inference.load_bootstrap(folder)
    escaping = json.loads((folder / "model-config.json").read_text())
    escaping["prompts"][0]["file"] = "prompts/../../outside.txt"
    (folder / "model-config.json").write_text(json.dumps(escaping))
    with pytest.raises(ManifestInvalid, match="inside the release folder"):
        inference.load_bootstrap(folder)
    # And a MODEL_BOOTSTRAP that is not a plain folder name is refused when the settings load
    with pytest.raises(ConfigurationError, match="MODEL_BOOTSTRAP"):
        load_settings({**env, "MODEL_BOOTSTRAP": "../etc"}, InferenceSettings)


def test_the_prompt_pin_must_be_one_and_of_the_pinned_manifest(s3: Any) -> None:
    env = put_release(s3, {"system": NEW_SYSTEM})
    # A pin written for another manifest version is refused, naming both
    other = {**env, **put_prompt_pin(s3, "another-version", pinned_versions(s3, env))}
    with pytest.raises(ConfigurationError, match="belongs to .*another-version.*not to the pinned model config"):
        serve(ask("Plus?"), other, s3)
    # And a document that is no prompt pin is named as such
    put = s3.put_object(Bucket=BUCKET, Key=PIN_KEY_NAME, Body=b'{"prompts/system.txt": "v1"}')
    broken = {**env, "MODEL_PROMPT_PIN_VERSION": put["VersionId"]}
    with pytest.raises(ConfigurationError, match="is not a prompt pin"):
        serve(ask("Plus?"), broken, s3)


# --------------------------------------------------------------------------- requests


def test_missing_template_variable_names_variable_and_prompt(s3: Any) -> None:
    # Given a user template that needs customer_tier
    env = put_release(s3, {"system": NEW_SYSTEM, "user": "{question} (tier: {customer_tier})"})
    # When a request carries only the question
    # Then the error names the variable and the prompt
    with pytest.raises(
        PromptVariableMissing,
        match=r"prompt 'user' \(prompts/user.txt\) needs variable 'customer_tier'",
    ):
        serve(ask("What does Plus cost?"), env, s3)
    # And with the variable the same release answers
    ok = serve(ask("What does Plus cost?", customer_tier="gold"), env, s3)
    assert ok["output"] == "Plus costs $6 per month."


@pytest.mark.parametrize(
    "event",
    [
        {"question": "flat"},
        {"inputs": {"question": 3}},
        {"inputs": "text"},
        {"inputs": {}, "x": 1},
        [],
    ],
)
def test_malformed_requests_are_rejected_clearly(s3: Any, event: Any) -> None:
    env = put_release(s3, {"system": NEW_SYSTEM})
    with pytest.raises(InvalidRequest, match=r'request must be \{"inputs"'):
        serve(event, env, s3)


# --------------------------------------------------------------------------- templates


def test_template_renders_placeholders_and_literal_braces() -> None:
    template = PromptTemplate.parse(
        "user", "prompts/user.txt", 'Reply as JSON {{"a": 1}} to: {question}'
    )
    assert template.render({"question": "hi"}) == 'Reply as JSON {"a": 1} to: hi'


@pytest.mark.parametrize(
    "text",
    ["unclosed {question", "stray } brace", "{0}", "{}", "{a.b}", "{a[0]}", "{a!r}", "{a:>10}"],
)
def test_unsupported_templates_fail_when_loaded(text: str) -> None:
    with pytest.raises(ManifestInvalid, match="prompt 'user'"):
        PromptTemplate.parse("user", "prompts/user.txt", text)


def test_malformed_template_in_a_release_fails_at_load(s3: Any) -> None:
    env = put_release(s3, {"system": NEW_SYSTEM, "user": "{question"})
    with pytest.raises(ManifestInvalid, match="not a valid template"):
        serve(ask("Plus?"), env, s3)


# --------------------------------------------------------------------------- handler


CONTEXT = SimpleNamespace(
    function_name="support-bot",
    function_version="3",
    memory_limit_in_mb=256,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:support-bot:live",
    aws_request_id="req-1",
)


def _load_app() -> Any:
    spec = importlib.util.spec_from_file_location("inference_app_under_test", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lambda_handler_wires_environment_s3_and_provider(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a function environment pinning a release (shared S3 client, local provider)
    env = put_release(s3, {"system": NEW_SYSTEM})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    aws.reset_clients()
    providers.get_provider.cache_clear()
    app = _load_app()
    try:
        # When Lambda invokes the handler
        response = app.lambda_handler(ask("What does Plus cost?"), CONTEXT)
    finally:
        aws.reset_clients()
        providers.get_provider.cache_clear()
    # Then it answered with the pinned release
    assert response["output"] == "Plus costs $6 per month."
    assert response["release"]["config_version"] == env["MODEL_CONFIG_VERSION"]
