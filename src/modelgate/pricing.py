"""What a model call costs: token usage times a per-model price table.

Why a table in code rather than the AWS Price List API: the gate compares the candidate's
cost per request with live's, and that comparison must be reproducible from the release
(same numbers today and when an auditor re-reads the ledger next year). Prices are USD per
1,000 tokens, Bedrock on-demand, us-east-1, as published when this table was last edited;
update them in a commit like any other change.

Cross-region inference profiles ("us.anthropic...", "eu.amazon...") are priced as the
model they route to, so the geography prefix is ignored when looking a price up.

An unknown model id is an error, never "free": a release whose cost can't be computed
must not look cheaper than live.
"""

from __future__ import annotations

from typing import NamedTuple

from modelgate.errors import ModelgateError

_PER = 1_000


class UnknownModelPrice(ModelgateError):
    """The price table has no entry for this model id."""


class Price(NamedTuple):
    """USD per 1,000 input tokens and per 1,000 output tokens."""

    input_per_1k: float
    output_per_1k: float


PRICES: dict[str, Price] = {
    # Anthropic
    "anthropic.claude-3-haiku-20240307-v1:0": Price(0.00025, 0.00125),
    "anthropic.claude-3-5-sonnet-20240620-v1:0": Price(0.003, 0.015),
    "anthropic.claude-3-5-sonnet-20241022-v2:0": Price(0.003, 0.015),
    # Amazon Nova
    "amazon.nova-micro-v1:0": Price(0.000035, 0.00014),
    "amazon.nova-lite-v1:0": Price(0.00006, 0.00024),
    "amazon.nova-pro-v1:0": Price(0.0008, 0.0032),
    # Meta
    "meta.llama3-8b-instruct-v1:0": Price(0.0003, 0.0006),
    # Modelgate's local retrieval models (providers.LocalProvider): priced so that the
    # large one costs more per token, like a bigger hosted model would.
    "local.retrieval-small-v1:0": Price(0.00005, 0.0001),
    "local.retrieval-large-v1:0": Price(0.0002, 0.0004),
}

# Geography prefixes of Bedrock cross-region inference profiles.
_PROFILE_PREFIXES = ("us.", "us-gov.", "eu.", "apac.", "jp.", "au.", "ca.", "global.")


def price_for(model_id: str) -> Price:
    """The price of ``model_id`` (or of the model an inference profile routes to)."""
    if model_id in PRICES:
        return PRICES[model_id]
    for prefix in _PROFILE_PREFIXES:
        if model_id.startswith(prefix) and model_id[len(prefix) :] in PRICES:
            return PRICES[model_id[len(prefix) :]]
    raise UnknownModelPrice(
        f"no price for model id {model_id!r}: add it to modelgate.pricing.PRICES "
        f"(known: {', '.join(sorted(PRICES))})"
    )


def cost_usd(model_id: str, input_tokens: int, output_tokens: int) -> float:
    """USD cost of one call that used ``input_tokens`` in and ``output_tokens`` out."""
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError(
            f"token counts can't be negative (input={input_tokens}, output={output_tokens})"
        )
    price = price_for(model_id)
    return (input_tokens * price.input_per_1k + output_tokens * price.output_per_1k) / _PER
