"""Cost = token usage x the price table; unknown models are errors, never free."""

from __future__ import annotations

import pytest

from modelgate import pricing
from modelgate.errors import ModelgateError
from modelgate.pricing import UnknownModelPrice, cost_usd


def test_cost_is_tokens_times_price_per_thousand() -> None:
    # Given Claude 3 Haiku at $0.00025 / 1k input and $0.00125 / 1k output
    # When a call uses 2,000 input and 400 output tokens
    cost = cost_usd("anthropic.claude-3-haiku-20240307-v1:0", 2_000, 400)
    # Then it costs 2 x 0.00025 + 0.4 x 0.00125
    assert cost == pytest.approx(0.0005 + 0.0005)


@pytest.mark.parametrize(
    "model_id",
    [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "amazon.nova-micro-v1:0",
        "amazon.nova-lite-v1:0",
        "amazon.nova-pro-v1:0",
        "meta.llama3-8b-instruct-v1:0",
        "local.retrieval-small-v1:0",
        "local.retrieval-large-v1:0",
    ],
)
def test_every_listed_model_has_a_positive_price(model_id: str) -> None:
    # Given a model the table lists / When it produces tokens / Then they cost something
    assert cost_usd(model_id, 1_000, 1_000) > 0


def test_output_tokens_cost_more_than_input_tokens_for_every_model() -> None:
    # Given the table / Then (as for every hosted model) output is the dearer side
    for model_id, price in pricing.PRICES.items():
        assert price.output_per_1k >= price.input_per_1k, model_id


def test_zero_tokens_cost_nothing() -> None:
    assert cost_usd("amazon.nova-lite-v1:0", 0, 0) == 0.0


def test_cross_region_inference_profile_is_priced_as_its_model() -> None:
    # Given a US cross-region inference profile of Claude 3.5 Sonnet
    profile = "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    # When it is priced / Then it costs what the model costs
    assert cost_usd(profile, 1_000, 1_000) == cost_usd(profile.removeprefix("us."), 1_000, 1_000)


def test_unknown_model_raises_an_error_naming_it() -> None:
    # Given a model id the table doesn't know
    # When it is priced / Then the error names it (a missing price is never "free")
    with pytest.raises(UnknownModelPrice, match=r"acme\.mystery-v1:0"):
        cost_usd("acme.mystery-v1:0", 10, 10)
    assert issubclass(UnknownModelPrice, ModelgateError)


def test_negative_token_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        cost_usd("amazon.nova-lite-v1:0", -1, 0)


def test_the_large_local_model_costs_more_than_the_small_one() -> None:
    # Given the two local models / Then the same usage costs more on the large one
    small = cost_usd("local.retrieval-small-v1:0", 500, 50)
    large = cost_usd("local.retrieval-large-v1:0", 500, 50)
    assert large > small
