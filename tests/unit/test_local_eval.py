"""`modelgate eval`: a release folder evaluated and judged in process, before any upload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from modelgate_harness.local_eval import default_provider, run_local_eval

from modelgate import pricing
from modelgate.errors import (
    ConfigurationError,
    DatasetInvalid,
    EvaluationFailed,
    ManifestInvalid,
)
from modelgate.evaluation.comparison import CANDIDATE, LIVE
from modelgate.manifest import MANIFEST_FILENAME, sha256_hex
from modelgate.policy import ReleasePolicy
from modelgate.providers import BedrockProvider, LocalProvider

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-bot"
DATASET = EXAMPLE / "dataset.jsonl"
FAST = {"local": LocalProvider(base_ms=0, per_output_token_ms=0)}
POLICY = ReleasePolicy()


def test_a_worse_release_fails_the_gate_before_it_is_pushed() -> None:
    # Given v2 as live and v3 (the trimmed prompt) as the release folder
    report, verdict = run_local_eval(
        EXAMPLE / "v3", DATASET, live_dir=EXAMPLE / "v2", policy=POLICY, providers=FAST
    )
    # Then both ran on the same 40 cases and the gate fails on the accuracy drop
    assert report.sides[CANDIDATE].n == report.sides[LIVE].n == 40
    assert report.sides[CANDIDATE].accuracy == pytest.approx(0.600)
    assert report.sides[LIVE].accuracy == pytest.approx(0.975)
    assert not verdict.passed
    assert [c.name for c in verdict.failures] == ["accuracy_drop"]


@pytest.mark.parametrize(
    ("release", "accuracy"), [("v1", 0.675), ("v2", 0.975), ("v3", 0.600), ("v4", 0.975)]
)
def test_the_accuracy_is_what_the_pipeline_measures(release: str, accuracy: float) -> None:
    # Given a release alone (a first release) / Then its accuracy is the README's figure
    report, verdict = run_local_eval(EXAMPLE / release, DATASET, policy=POLICY, providers=FAST)
    assert report.sides[CANDIDATE].accuracy == pytest.approx(accuracy)
    assert verdict.passed
    # And outputs are priced from token usage and the price table
    result = report.results[0]
    assert result.cost_usd == pytest.approx(
        pricing.cost_usd(
            "local.retrieval-large-v1:0" if release == "v4" else "local.retrieval-small-v1:0",
            result.input_tokens,
            result.output_tokens,
        )
    )


def test_a_release_within_the_allowance_passes() -> None:
    _, verdict = run_local_eval(
        EXAMPLE / "v4", DATASET, live_dir=EXAMPLE / "v2", policy=POLICY, providers=FAST
    )
    assert verdict.passed


def test_a_prompt_edited_after_its_digest_was_computed_is_refused(tmp_path: Path) -> None:
    # Given a copy of v2 whose prompt changed but whose manifest did not
    release = tmp_path / "v2"
    shutil.copytree(EXAMPLE / "v2", release)
    (release / "prompts" / "system.txt").write_text("Q: anything A: nothing\n")
    # Then nothing runs: the digest mismatch is reported
    with pytest.raises(ManifestInvalid, match="sha256"):
        run_local_eval(release, DATASET, policy=POLICY, providers=FAST)


def test_a_missing_dataset_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetInvalid, match="can't be read"):
        run_local_eval(EXAMPLE / "v2", tmp_path / "nope.jsonl", policy=POLICY, providers=FAST)


def write_release(folder: Path, *, service: str, provider: str, model_id: str, prompt: str) -> Path:
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts" / "system.txt").write_text(prompt)
    manifest = {
        "service": service,
        "model": {"provider": provider, "model_id": model_id},
        "prompts": [
            {"name": "system", "file": "prompts/system.txt", "sha256": sha256_hex(prompt.encode())}
        ],
        "source": {"commit": "abc1234", "branch": "main"},
    }
    (folder / MANIFEST_FILENAME).write_text(json.dumps(manifest))
    return folder


def test_live_must_be_a_release_of_the_same_service(tmp_path: Path) -> None:
    other = write_release(
        tmp_path / "other", service="billing-bot", provider="local",
        model_id="local.retrieval-small-v1:0", prompt="Q: a A: b\n",
    )
    with pytest.raises(ManifestInvalid, match="compare releases of one service"):
        run_local_eval(EXAMPLE / "v2", DATASET, live_dir=other, policy=POLICY, providers=FAST)


def test_a_bedrock_release_is_answered_through_converse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a release on a Bedrock model and a stubbed bedrock-runtime client
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    release = write_release(
        tmp_path / "nova", service="support-bot", provider="bedrock",
        model_id="amazon.nova-lite-v1:0", prompt="You support Orbit Notes. Be brief.",
    )
    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text(
        "\n".join(
            json.dumps({"id": f"c{i}", "inputs": {"question": q}, "expected": e})
            for i, (q, e) in enumerate([("How do I reset my password?", "Reset password"),
                                        ("What does Plus cost?", "$6")])
        )
    )
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        for question, answer in [
            ("How do I reset my password?", "Use Reset password on the login page."),
            ("What does Plus cost?", "Plus is $8 a month."),
        ]:
            stubber.add_response(
                "converse",
                {
                    "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
                    "stopReason": "end_turn",
                    "usage": {"inputTokens": 30, "outputTokens": 9, "totalTokens": 39},
                    "metrics": {"latencyMs": 80},
                },
                {
                    "modelId": "amazon.nova-lite-v1:0",
                    "system": [{"text": "You support Orbit Notes. Be brief."}],
                    "messages": [{"role": "user", "content": [{"text": question}]}],
                    "inferenceConfig": ANY,
                },
            )
        # When evaluated (one call at a time, so the stub's order is the dataset's)
        report, verdict = run_local_eval(
            release, dataset, policy=ReleasePolicy(min_cases=1), concurrency=1,
            providers={"bedrock": BedrockProvider(client)},
        )
        stubber.assert_no_pending_responses()
    # Then the answers were scored and priced at Nova Lite's price
    assert [r.score for r in report.results] == [1.0, 0.0]
    assert report.results[0].cost_usd == pytest.approx(pricing.cost_usd("amazon.nova-lite-v1:0", 30, 9))
    assert [c.name for c in verdict.failures] == []


def test_model_scorers_are_never_picked_silently(tmp_path: Path) -> None:
    dataset = tmp_path / "d.jsonl"
    dataset.write_text(json.dumps({"id": "a", "inputs": {"question": "reset?"}, "expected": "Reset password",
                                   "scorer": "semantic"}))
    with pytest.raises(EvaluationFailed, match="scoring_models"):
        run_local_eval(EXAMPLE / "v2", dataset, policy=POLICY, providers=FAST)


def test_default_providers() -> None:
    assert isinstance(default_provider("local"), LocalProvider)
    with pytest.raises(ConfigurationError, match="no model provider 'openai'"):
        default_provider("openai")


def test_eval_plan_states_the_gates_power_per_slice_without_calling_anything(tmp_path, capsys) -> None:
    # Given 30 cases, 8 tagged security, a policy with a zero-drop security slice
    from modelgate_harness.cli import main

    from modelgate import gate_stats

    data = tmp_path / "dataset.jsonl"
    data.write_text("\n".join(
        json.dumps({"id": f"c{i}", "inputs": {"q": str(i)}, "expected": "x", "tags": ["security"] if i < 8 else []})
        for i in range(30)))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"max_accuracy_drop": 0.05, "slices": {"security": {"max_accuracy_drop": 0.0}}}))
    # When `modelgate eval --plan` runs (the release folder is never read: no calls)
    code = main(["eval", str(tmp_path / "absent"), "--dataset", str(data), "--policy", str(policy), "--plan",
                 "--live-accuracy", "0.9"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and len(out) == 3
    # (the cost needs the release's prompts and model: with no folder it says it made no estimate)
    assert out[2] == f"cost: not estimated (no release folder at {tmp_path / 'absent'})"
    # Then the whole dataset's line gives Connor's numbers at alpha 0.05 / 2 tests (Holm's first step)
    needed = gate_stats.cases_needed(0.05, gate_stats.independent_discordance(0.9, 0.05), 0.025)
    mdd = gate_stats.min_detectable_drop(30, 0.9, 0.025)
    assert out[0].startswith("all cases: 30 cases, alpha 0.025 (the policy's 0.05 / 2 tests, Holm), 80% power")
    assert f"the smallest drop it detects is {mdd * 100:.1f} pts" in out[0]
    assert f"needs {needed} cases ({needed - 30} more)" in out[0]
    # And the security slice's line says a zero limit can't be "detected", only any measurable drop fails it
    assert out[1].startswith("slice security: 8 cases") and "any measurable drop fails it" in out[1]


def test_the_gate_example_shows_a_failing_slice_and_an_uncalibrated_judge(tmp_path) -> None:
    # Given the example's dataset (tags, human grades) and policy (repeats 3, slices, a kappa bar)
    from modelgate.evaluation.model_scorers import LocalScoringModels
    from modelgate.evaluation.report import render_html

    examples = Path(__file__).resolve().parents[2] / "examples" / "support-bot"
    policy = ReleasePolicy.model_validate_json((examples / "gate" / "policy.json").read_text())
    # When v3 is evaluated against v2
    report, verdict = run_local_eval(examples / "v3", examples / "gate" / "dataset.jsonl", live_dir=examples / "v2",
                                     policy=policy, scoring_models=LocalScoringModels())
    criteria = {c.name: c for c in verdict.criteria}
    # Then the ui slice fails on its own (its interval starts beyond its 10-point limit), under Holm over 4 tests
    assert criteria["accuracy_drop[ui]"].verdict == "fail" and criteria["accuracy_drop[ui]"].interval[0] > 0.10
    assert "Holm-Bonferroni over 4" in verdict.multiple_comparisons
    # And the local judge, which disagrees with the people's grades, is shown but does not gate
    assert not verdict.judge.gating and criteria["judge_accuracy_drop"].verdict == "not_applicable"
    # And every case ran 3 times per side
    assert report.repeats == 3 and report.sides[CANDIDATE].calls == 3 * report.sides[CANDIDATE].n
    html = render_html(report, verdict, title="v3", policy=policy)
    assert "pass^3" in html and "slice: ui" in html and "shown, not gating" in html
