"""The evaluation's cost estimate and the policy's cap (max_cost_usd), before any call."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelgate_harness.cli import main
from modelgate_harness.local_eval import load_release_folder, plan_cost_lines, run_local_eval

from modelgate import pricing
from modelgate.errors import OverBudget
from modelgate.evaluation.comparison import CANDIDATE, LIVE
from modelgate.evaluation.cost import check_budget, estimate_cost
from modelgate.evaluation.dataset import DatasetCase, parse_dataset
from modelgate.policy import ReleasePolicy
from modelgate.pricing import UnknownModelPrice
from modelgate.providers import LocalProvider, count_tokens

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-bot"
DATASET = EXAMPLE / "dataset.jsonl"
CASES = parse_dataset(DATASET.read_text())
FAST = {"local": LocalProvider(base_ms=0, per_output_token_ms=0)}


def test_the_input_estimate_is_what_the_local_model_is_billed_for() -> None:
    # Given v3 against live v2 on the sample dataset
    releases = {CANDIDATE: load_release_folder(EXAMPLE / "v3"), LIVE: load_release_folder(EXAMPLE / "v2")}
    estimate = estimate_cost(CASES, releases)
    # When the evaluation really runs
    report, _ = run_local_eval(EXAMPLE / "v3", DATASET, live_dir=EXAMPLE / "v2", policy=ReleasePolicy(), providers=FAST)
    # Then each side's estimated input tokens are exactly the tokens its calls used (same prompts,
    # same tokenizer), and its calls are the cases
    for side in estimate.sides:
        results = [r for r in report.results if r.side == side.side]
        assert side.calls == len(results) == 40
        assert side.input_tokens == sum(r.input_tokens for r in results)
    # And the cost is the price table's for those tokens
    for side in estimate.sides:
        price = pricing.price_for(side.model_id)
        assert side.usd == pytest.approx((side.input_tokens * price.input_per_1k + side.output_tokens * price.output_per_1k) / 1000)
    assert estimate.usd == pytest.approx(sum(s.usd for s in estimate.sides))


def test_output_tokens_are_the_expected_answers_capped_at_max_tokens() -> None:
    release = load_release_folder(EXAMPLE / "v2")
    max_tokens = release.manifest.parameters.max_tokens
    long = DatasetCase(id="long", inputs={"question": "q"}, expected="word " * (max_tokens + 50))
    short = DatasetCase(id="short", inputs={"question": "q"}, expected="Reset it from the login page.")
    schema = DatasetCase(id="schema", inputs={"question": "q"}, expected={"type": "object"}, scorer="json_schema")
    [side] = estimate_cost([long, short, schema], {CANDIDATE: release}).sides
    assert side.output_tokens == max_tokens + count_tokens("Reset it from the login page.") + max_tokens


def test_repeats_multiply_calls_and_tokens() -> None:
    releases = {CANDIDATE: load_release_folder(EXAMPLE / "v2")}
    once, thrice = estimate_cost(CASES, releases), estimate_cost(CASES, releases, repeats=3)
    assert thrice.sides[0].calls == 3 * once.sides[0].calls == 120
    assert thrice.usd == pytest.approx(3 * once.usd)
    assert "x 3 repeats" in thrice.lines()[-1]


def test_over_the_cap_is_refused_naming_the_estimate_the_cap_and_the_sides() -> None:
    releases = {CANDIDATE: load_release_folder(EXAMPLE / "v4"), LIVE: load_release_folder(EXAMPLE / "v2")}
    estimate = estimate_cost(CASES, releases)
    check_budget(estimate, None)  # no cap
    check_budget(estimate, estimate.usd)  # exactly the cap is within it
    with pytest.raises(OverBudget) as refused:
        check_budget(estimate, estimate.usd / 2)
    message = str(refused.value)
    assert f"${estimate.usd:.4f}" in message and f"max_cost_usd ${estimate.usd / 2:.4f}" in message
    assert "candidate: 40 calls on local.retrieval-large-v1:0" in message and "live: 40 calls" in message
    assert "Nothing was called" in message


def test_local_eval_refuses_over_budget_before_any_call() -> None:
    calls: list[str] = []

    class Counting(LocalProvider):
        def converse(self, **kw):  # type: ignore[no-untyped-def]
            calls.append(kw["model_id"])
            return super().converse(**kw)

    with pytest.raises(OverBudget):
        run_local_eval(EXAMPLE / "v2", DATASET, policy=ReleasePolicy(max_cost_usd=1e-6),
                       providers={"local": Counting(base_ms=0, per_output_token_ms=0)})
    assert calls == []


def test_an_unpriced_model_is_an_error_never_free() -> None:
    release = load_release_folder(EXAMPLE / "v2")
    model = release.manifest.model.model_copy(update={"model_id": "acme.unknown-v1:0"})
    unpriced = type(release)(release.bucket, release.key, release.config_version,
                             release.manifest.model_copy(update={"model": model}), release.prompts)
    with pytest.raises(UnknownModelPrice, match="acme.unknown-v1:0"):
        estimate_cost(CASES, {CANDIDATE: unpriced})


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), "cheap"])
def test_a_cap_must_be_a_positive_finite_number(value: object) -> None:
    with pytest.raises(ValueError, match="max_cost_usd"):
        ReleasePolicy(max_cost_usd=value)


def test_eval_plan_prints_the_cost_lines_and_makes_no_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text('{"max_cost_usd": 0.001}')
    code = main(["eval", str(EXAMPLE / "v3"), "--dataset", str(DATASET), "--live", str(EXAMPLE / "v2"),
                 "--policy", str(policy), "--plan"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    cost = plan_cost_lines(EXAMPLE / "v3", DATASET, live_dir=EXAMPLE / "v2", policy=ReleasePolicy(max_cost_usd=0.001))
    # the gate's power statements come first, the cost lines close the plan
    assert out[-len(cost):] == cost
    assert len(out) > len(cost)
    assert cost[0].startswith("candidate: 40 calls on local.retrieval-small-v1:0")
    assert out[-1] == "max_cost_usd $0.0010: OVER BUDGET, the pipeline would refuse it before any call"
