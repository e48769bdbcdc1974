"""Whether an answer declines ("I don't know", "I can't help with ..."): what the refusal scorer
grades, and what the inference function counts on every request (its Refusals metric).

Its own small module, so the inference function loads it (and compiles the patterns, with
:func:`compiled`) at init and never loads the evaluation stack (modelgate.evaluation.scorers
re-exports it): a Lambda's first request is part of its cold start. An evaluation step compiles
them when a dataset's scorer first asks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bi (?:really )?(?:don't|do not) know\b",
    r"\bi(?: can't| cannot| can not| won't| will not| am unable to|'m unable to"
    r"| am not able to|'m not able to) (?:help|assist|answer|provide|share|do that|comply"
    r"|discuss)",
    r"\bi can only (?:help|answer|assist)",
    r"\bi(?:'m| am) (?:sorry|afraid),? (?:but )?i (?:can't|cannot|can not|won't|am unable)",
    r"\bi must (?:decline|refuse)\b",
    r"\bi(?:'m| am) not (?:allowed|permitted|able) to\b",
    r"\bas an ai\b",
    r"\b(?:that|this) is (?:outside|beyond) (?:my|the) scope\b",
)


@cache
def compiled() -> re.Pattern[str]:
    """``REFUSAL_PATTERNS`` as one compiled pattern (compiled once)."""
    return re.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS))


def normalise(text: str) -> str:
    """Case-folded, whitespace-collapsed text: formatting isn't what we measure."""
    return " ".join(text.casefold().replace("\u2019", "'").split())


def is_refusal(output: str, extra_patterns: Sequence[str] = ()) -> bool:
    """Whether ``output`` declines to answer ("I don't know", "I can't help with ...").

    Matched on normalised text (case-folded, curly apostrophes straightened) against
    ``REFUSAL_PATTERNS`` plus ``extra_patterns`` (say, your service's own fallback text).
    """
    text = normalise(output)
    if compiled().search(text):
        return True
    return any(re.search(p, text) for p in extra_patterns)
