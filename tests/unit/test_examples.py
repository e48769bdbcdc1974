"""The support-bot example releases behave as the demo tells: v1 ok, v2 better, v3 blocked
by the gate, v4 passes the gate but breaks on real traffic (no customer_tier)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from modelgate import inference
from modelgate.errors import GateFailed, PromptVariableMissing
from modelgate.evaluation.comparison import CANDIDATE, LIVE, EvaluationReport
from modelgate.evaluation.dataset import parse_dataset
from modelgate.evaluation.gate import evaluate_gate
from modelgate.evaluation.runner import evaluate
from modelgate.manifest import MANIFEST_FILENAME, ArtifactRef, Manifest, pin_environment, sha256_hex
from modelgate.pipeline.candidate import write_prompt_pin
from modelgate.policy import ReleasePolicy
from modelgate.providers import LOCAL_MODELS, LocalProvider
from modelgate.settings import InferenceSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-bot"
RELEASES = ("v1", "v2", "v3", "v4", "v5")
BUCKET = "artefacts"
SETTINGS = InferenceSettings(provider="local", bucket=BUCKET)
POLICY = ReleasePolicy()  # the default gate: at most 5 points below live


def manifest(version: str) -> Manifest:
    return Manifest.model_validate_json((EXAMPLE / version / MANIFEST_FILENAME).read_text())


@pytest.mark.parametrize("version", RELEASES)
def test_release_manifests_are_valid_and_digests_match_the_files(version: str) -> None:
    # Given a release folder
    m = manifest(version)
    # Then it is the support-bot on a local model, and every digest is its file's
    assert m.service == "support-bot"
    assert m.model.provider == "local" and m.model.model_id in LOCAL_MODELS
    for prompt in m.prompts:
        data = (EXAMPLE / version / prompt.file).read_bytes()
        assert sha256_hex(data) == prompt.sha256, f"{version}/{prompt.file}: recompute the digest"


def test_dataset_cases_carry_every_variable_and_traffic_lacks_some() -> None:
    cases = parse_dataset((EXAMPLE / "dataset.jsonl").read_text())
    assert 30 <= len(cases) <= 45
    assert all(set(c.inputs) == {"question", "customer_tier", "locale"} for c in cases)
    assert {c.scorer for c in cases} <= {"contains", "any_of"}
    traffic = traffic_requests()
    assert len(traffic) >= 15
    # live requests carry no tier (v4 fails them all) and one in 21 has no locale (v5 fails it):
    # 21 is coprime with the 10% canary's routing cycle, so the canary sees every request
    assert all("customer_tier" not in r for r in traffic)
    assert len(traffic) == 21 and sum("locale" not in r for r in traffic) == 1


def traffic_requests() -> list[dict[str, str]]:
    lines = (EXAMPLE / "traffic.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def pinned() -> Iterator[tuple[Any, dict[str, dict[str, str]]]]:
    """Every example release uploaded to a versioned bucket; its pinning env per version."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        inference.clear_release_cache()
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket=BUCKET)
            s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
            envs = {}
            for index, version in enumerate(RELEASES):
                prefix = f"releases/support-bot/{index + 1:07x}"
                versions = {}
                for prompt in manifest(version).prompts:
                    body = (EXAMPLE / version / prompt.file).read_bytes()
                    put = s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{prompt.file}", Body=body)
                    versions[prompt.file] = put["VersionId"]
                key = f"{prefix}/{MANIFEST_FILENAME}"
                body = (EXAMPLE / version / MANIFEST_FILENAME).read_bytes()
                put = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
                artifact = ArtifactRef(bucket=BUCKET, key=key, version_id=put["VersionId"])
                pin = write_prompt_pin(s3, artifact, "support-bot", f"support-bot-{index + 1:07x}", versions)
                envs[version] = pin_environment(artifact, *pin)
            yield s3, envs
        inference.clear_release_cache()


def serve(event: dict[str, Any], env: dict[str, str], s3: Any, provider: LocalProvider) -> dict[str, Any]:
    """The inference function's answer on the version whose pin is ``env``."""
    return inference.handle_request(event, SETTINGS, inference.read_pin(env), s3, provider)


def invoker(pinned: tuple[Any, dict[str, dict[str, str]]], version: str) -> Any:
    s3, envs = pinned
    provider = LocalProvider()  # real (small) simulated latency

    def invoke(inputs: dict[str, str]) -> dict[str, Any]:
        return serve({"inputs": inputs}, envs[version], s3, provider)

    return invoke


def run(pinned: Any, candidate: str, live: str | None = None) -> EvaluationReport:
    cases = parse_dataset((EXAMPLE / "dataset.jsonl").read_text())
    invokers = {CANDIDATE: invoker(pinned, candidate)}
    if live is not None:
        invokers[LIVE] = invoker(pinned, live)
    return evaluate(cases, invokers, concurrency=POLICY.eval_concurrency)


def test_v1_is_a_decent_first_release(pinned: Any) -> None:
    # Given no live version yet / When v1 is evaluated and judged
    report = run(pinned, "v1")
    cand = report.sides[CANDIDATE]
    # Then it scores decently, errors nowhere, and passes the first-release gate
    assert 0.6 <= cand.accuracy <= 0.8
    assert cand.error_rate == 0.0
    assert evaluate_gate(report, POLICY).passed


def test_v2_scores_clearly_higher_than_v1(pinned: Any) -> None:
    # Given v1 live / When v2 is evaluated against it on the same cases
    report = run(pinned, "v2", live="v1")
    v2, v1 = report.sides[CANDIDATE], report.sides[LIVE]
    # Then v2 is at least 20 points better, and passes the gate
    assert v2.accuracy >= v1.accuracy + 0.20
    assert evaluate_gate(report, POLICY).passed


def test_v3_fails_the_gate_against_v2_live(pinned: Any) -> None:
    # Given v2 live / When v3 (the trimmed prompt) is evaluated against it
    report = run(pinned, "v3", live="v2")
    verdict = evaluate_gate(report, POLICY)
    # Then it lost more than the allowed 5 points and the gate names the drop
    assert report.sides[LIVE].accuracy - report.sides[CANDIDATE].accuracy > POLICY.max_accuracy_drop
    assert not verdict.passed
    with pytest.raises(GateFailed, match=r"accuracy_drop: candidate 0\.\d\d vs live 0\.\d\d"):
        verdict.raise_if_failed()
    # And it is cheaper: that is why someone trimmed it
    assert report.summary()["deltas"]["cost_delta_usd"] < 0


def test_v4_passes_the_gate_against_v2_live(pinned: Any) -> None:
    # Given v2 live / When v4 (tier-aware, large model) is evaluated on the dataset
    report = run(pinned, "v4", live="v2")
    # Then it is within 5 points of v2 with no errors: the gate passes
    assert (
        abs(report.sides[CANDIDATE].accuracy - report.sides[LIVE].accuracy)
        <= POLICY.max_accuracy_drop
    )
    assert report.sides[CANDIDATE].error_rate == 0.0
    assert evaluate_gate(report, POLICY).passed


def test_v4_fails_on_every_live_traffic_request_that_v2_serves(pinned: Any) -> None:
    s3, envs = pinned
    provider = LocalProvider(base_ms=0, per_output_token_ms=0)
    for request in traffic_requests():
        event = {"inputs": request}
        # Given real traffic (questions only) / When v2 serves it / Then it answers
        assert serve(event, envs["v2"], s3, provider)["output"]
        # When v4 serves it / Then its user template can't be rendered
        with pytest.raises(PromptVariableMissing, match="'customer_tier'"):
            serve(event, envs["v4"], s3, provider)


def test_v5_passes_the_gate_but_fails_the_one_live_request_without_a_locale(pinned: Any) -> None:
    s3, envs = pinned
    assert evaluate_gate(run(pinned, "v5", live="v2"), POLICY).passed
    provider = LocalProvider(base_ms=0, per_output_token_ms=0)
    failed = 0
    for request in traffic_requests():
        try:
            serve({"inputs": request}, envs["v5"], s3, provider)
        except PromptVariableMissing as exc:
            assert "'locale'" in str(exc)
            failed += 1
    assert failed == 1
