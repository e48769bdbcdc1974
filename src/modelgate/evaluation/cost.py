"""What an evaluation will cost, estimated before any call, and the policy's cap on it.

Per side (candidate, and live when it serves a release) and per case: input tokens are the
side's own system and user prompts rendered with the case's inputs (a variable the case lacks
renders empty), counted with ``providers.count_tokens``; output tokens are the case's expected
answer's tokens when it is text (an answer about as long as the one wanted), else the manifest's
``max_tokens``, and never more than ``max_tokens`` (the model can't write more). Calls = cases x
repeats. Prices are ``modelgate.pricing``'s table, an unknown model id is an error there, never
free. Not counted: the scoring models of ``semantic`` / ``llm_judge`` cases (they are priced by
the scorer's own model, not the release) and retried throttles (a throttled call is not billed).

The token count is the local word-ish tokenizer's, not the provider's: Bedrock bills its own
tokenizer's count ("Amazon Bedrock pricing", https://aws.amazon.com/bedrock/pricing/, input and
output tokens priced per 1,000), so the estimate is an estimate; the cap leaves room for it
through the policy's number, not a hidden margin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelgate.errors import OverBudget
from modelgate.evaluation.dataset import DatasetCase
from modelgate.inference import LoadedRelease
from modelgate.pricing import price_for
from modelgate.providers import count_tokens


@dataclass(frozen=True, slots=True)
class SideCost:
    side: str
    model_id: str
    calls: int
    input_tokens: int
    output_tokens: int
    usd: float


@dataclass(frozen=True, slots=True)
class CostEstimate:
    sides: tuple[SideCost, ...]
    cases: int
    repeats: int

    @property
    def usd(self) -> float:
        return sum(s.usd for s in self.sides)

    def lines(self) -> list[str]:
        """What the plan prints and the ledger records: one line per side, then the total."""
        out = [
            f"{s.side}: {s.calls:,} calls on {s.model_id}, ~{s.input_tokens:,} input + ~{s.output_tokens:,} "
            f"output tokens = ${s.usd:.4f}"
            for s in self.sides
        ]
        repeats = f" x {self.repeats} repeats" if self.repeats > 1 else ""
        out.append(
            f"estimated evaluation cost: ${self.usd:.4f} ({self.cases:,} cases{repeats} x {len(self.sides)} side(s); "
            "scoring models not included)"
        )
        return out


def _case_tokens(release: LoadedRelease, case: DatasetCase) -> tuple[int, int]:
    tokens_in = 0
    for template in (release.system, release.user):
        tokens_in += count_tokens(template.render({v: case.inputs.get(v, "") for v in template.variables}))
    max_tokens = release.manifest.parameters.max_tokens
    expected = count_tokens(case.expected) if isinstance(case.expected, str) else max_tokens
    return tokens_in, min(max_tokens, expected)


def estimate_cost(
    cases: Sequence[DatasetCase], sides: Mapping[str, LoadedRelease], *, repeats: int = 1
) -> CostEstimate:
    """The evaluation's cost before any call (see the module doc for what is counted)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if not sides:
        raise ValueError("no side to estimate the cost of")
    priced: list[SideCost] = []
    for side, release in sides.items():
        model_id = release.manifest.model.model_id
        price = price_for(model_id)
        tokens_in = tokens_out = 0
        for case in cases:
            i, o = _case_tokens(release, case)
            tokens_in += i
            tokens_out += o
        tokens_in, tokens_out = tokens_in * repeats, tokens_out * repeats
        usd = (tokens_in * price.input_per_1k + tokens_out * price.output_per_1k) / 1_000
        priced.append(SideCost(side, model_id, len(cases) * repeats, tokens_in, tokens_out, usd))
    return CostEstimate(tuple(priced), len(cases), repeats)


def check_budget(estimate: CostEstimate, max_cost_usd: float | None) -> None:
    """``OverBudget`` naming the estimate, the cap and what drives the cost, when it is over."""
    if max_cost_usd is None or estimate.usd <= max_cost_usd:
        return
    worst = max(estimate.sides, key=lambda s: s.usd)
    raise OverBudget(
        f"the evaluation's estimated cost ${estimate.usd:.4f} is over the policy's max_cost_usd "
        f"${max_cost_usd:.4f}: " + "; ".join(estimate.lines()[:-1]) + f". The largest share is {worst.side}'s "
        f"({worst.model_id}). Nothing was called: raise max_cost_usd, use a cheaper model or fewer cases"
    )
