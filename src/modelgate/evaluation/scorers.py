"""Scorers: how one model output is graded against one dataset case, in [0, 1].

A dataset line names its scorer (``"scorer": "contains"``), what it expects
(``"expected"``) and, for scorers that take them, ``"options"``. The line is checked when
the dataset is parsed, so a wrong ``expected`` or a misspelt option is a ``DatasetInvalid``
naming the line, not a crash halfway through an evaluation.

Built in:

=============  ==========================  =================================================
scorer         expected                    scores 1 when ...
=============  ==========================  =================================================
exact          string                      output == expected (case/whitespace-insensitive)
contains       string                      expected occurs in the output (same folding)
any_of         non-empty list of strings   any of them occurs in the output
regex          regex string                ``re.search`` finds it (``(?i)`` for no case)
valid_json     (none)                      the output is JSON (one ``` fence is tolerated)
json_schema    a JSON Schema object        the output is JSON valid against that schema
numeric        number                      the output's number is within the tolerance
                                           options: tolerance (absolute), relative_tolerance,
                                           pick: "last" (default) | "first" | "only"
refusal        true / false                true: the output refuses; false: it does not
                                           options: patterns (extra regexes of refusals)
semantic       string or list of strings   similarity(output, expected) >= threshold
                                           options: threshold (default: the backend's)
llm_judge      reference string or none    the judge's grade of the output (0, .25 .. 1)
                                           options: rubric
=============  ==========================  =================================================

This module holds the registry and the text scorers; ``semantic`` and ``llm_judge`` need a
model and live in ``modelgate.evaluation.model_scorers`` (which registers them here, and
which ``modelgate.evaluation.dataset`` imports, so a parsed dataset knows every built-in).

Register your own scorer in a few lines::

    from pydantic import BaseModel
    from modelgate.evaluation.scorers import normalise, register_scorer

    class Prefix(BaseModel):
        case_sensitive: bool = False

    @register_scorer("starts_with", options=Prefix, expected=str)
    def starts_with(output, case):
        opts = Prefix.model_validate(case.options)
        fold = str.strip if opts.case_sensitive else normalise
        return float(fold(output).startswith(fold(case.expected)))

and use it as ``{"id": "..", "inputs": {..}, "expected": "Yes", "scorer": "starts_with"}``.
A scorer registered with ``uses_models=True`` is called as ``fn(output, case, models)``.
"""

import json
import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelgate.errors import ModelgateError, validation_problems
from modelgate.refusal import REFUSAL_PATTERNS, is_refusal, normalise  # noqa: F401 - re-exported


class DatasetCase(Protocol):
    """What a scorer reads of a dataset case (``modelgate.evaluation.dataset.DatasetCase``;
    a protocol here, so the dataset can check its lines against the scorers without a cycle)."""

    id: str
    inputs: dict[str, str]
    expected: Any
    scorer: str
    options: dict[str, Any]


Scorer = Callable[..., float]
ExpectedCheck = Callable[[Any], None]


class ScorerError(ModelgateError):
    """A scorer could not grade an output (e.g. a judge reply without a grade)."""


# --------------------------------------------------------------------------- registry


class ScorerSpec(NamedTuple):
    """What a dataset line must carry for one scorer."""

    name: str
    check_expected: ExpectedCheck | None
    options: type[BaseModel] | None
    uses_models: bool


SCORERS: dict[str, Scorer] = {}
SPECS: dict[str, ScorerSpec] = {}


def register_scorer(
    name: str,
    *,
    expected: type | tuple[type, ...] | ExpectedCheck | None = None,
    options: type[BaseModel] | None = None,
    uses_models: bool = False,
) -> Callable[[Scorer], Scorer]:
    """Add a scorer usable as ``"scorer": "<name>"`` in dataset lines.

    ``expected``: the type(s) ``expected`` must have, or a function raising ``ValueError``
    on a bad one (``None``: anything). ``options``: a pydantic model the line's
    ``options`` must validate against (``None``: the line may carry no options). The
    scorer returns a score in [0, 1]; see the module docstring for an example.
    """

    def decorate(fn: Scorer) -> Scorer:
        if name in SCORERS:
            raise ValueError(f"scorer {name!r} is already registered")
        SCORERS[name] = fn
        SPECS[name] = ScorerSpec(name, _as_check(name, expected), options, uses_models)
        return fn

    return decorate


def _as_check(name: str, expected: type | tuple[type, ...] | ExpectedCheck | None) -> ExpectedCheck | None:
    if expected is None or not isinstance(expected, (type, tuple)):
        return expected
    types = expected if isinstance(expected, tuple) else (expected,)

    def check(value: Any) -> None:
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise ValueError(f"scorer {name!r} needs expected to be a {wanted}")

    return check


_TYPE_NAMES = {str: "string", list: "list", dict: "object", bool: "boolean", int: "number", float: "number"}


def check_case(case: DatasetCase) -> None:
    """Raise ``ValueError`` if the case's expected/options don't fit its scorer."""
    if case.scorer not in SCORERS:
        raise ValueError(f"unknown scorer {case.scorer!r} (known: {', '.join(sorted(SCORERS))})")
    # A scorer put into SCORERS directly (the old way) has no spec: any expected, no options.
    spec = SPECS.get(case.scorer) or ScorerSpec(case.scorer, None, None, False)
    if spec.check_expected is not None:
        spec.check_expected(case.expected)
    if spec.options is None:
        if case.options:
            raise ValueError(f"scorer {case.scorer!r} takes no options, got {sorted(case.options)}")
        return
    try:
        spec.options.model_validate(case.options)
    except ValidationError as exc:
        problems = validation_problems(exc, "options")
        raise ValueError(f"options of scorer {case.scorer!r}: {problems}") from None


def uses_models(scorer: str) -> bool:
    spec = SPECS.get(scorer)
    return spec is not None and spec.uses_models and SCORERS.get(scorer) is not None


class ScorerOptions(BaseModel):
    """A base for a scorer's options: strict (a misspelt option is an error) and frozen.

    Built when first validated (``defer_build``, inherited by each scorer's options): a dataset
    parse validates only the options of the scorers its lines name, so a step's cold start
    builds none of them (bench/cold_start.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# --------------------------------------------------------------------------- text


def non_empty_strings(name: str) -> ExpectedCheck:
    def check(value: Any) -> None:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ValueError(f"scorer {name!r} needs expected to be a non-empty list of strings")

    return check


@register_scorer("exact", expected=str)
def exact(output: str, case: DatasetCase) -> float:
    return float(normalise(output) == normalise(str(case.expected)))


@register_scorer("contains", expected=str)
def contains(output: str, case: DatasetCase) -> float:
    return float(normalise(str(case.expected)) in normalise(output))


@register_scorer("any_of", expected=non_empty_strings("any_of"))
def any_of(output: str, case: DatasetCase) -> float:
    """1 if the output contains any of the expected phrases (normalised)."""
    text = normalise(output)
    expected = case.expected if isinstance(case.expected, list) else []
    return float(any(normalise(str(e)) in text for e in expected))


def _regex_check(value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError("scorer 'regex' needs expected to be a string")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"expected is not a valid regex: {exc}") from None


@register_scorer("regex", expected=_regex_check)
def regex(output: str, case: DatasetCase) -> float:
    """``re.search`` as written: use ``(?i)`` in the pattern for case-insensitive."""
    return float(re.search(str(case.expected), output) is not None)


# --------------------------------------------------------------------------- JSON

# The scorers' patterns are compiled on their scorer's first use, not at import: a dataset runs
# only the scorers its lines name, and compiling them all cost every evaluation step's cold start.
_FENCE = r"^```[a-zA-Z0-9_-]*\s*\n(?P<body>.*?)\n?```$"
_NO_JSON = object()


@cache
def _compiled(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def parse_json_output(output: str) -> Any:
    """The JSON value of an output, or ``_NO_JSON``.

    Surrounding whitespace and one Markdown code fence (```json ... ```) are tolerated:
    chat models wrap JSON in them, and a service that strips them is common; any other
    text around the JSON makes it not JSON.
    """
    text = output.strip()
    if match := _compiled(_FENCE, re.DOTALL).match(text):
        text = match["body"].strip()
    try:
        return json.loads(text)
    except ValueError:
        return _NO_JSON


def _nothing_expected(name: str) -> ExpectedCheck:
    def check(value: Any) -> None:
        if value is not None:
            raise ValueError(f"scorer {name!r} takes no expected (use json_schema to constrain it)")

    return check


@register_scorer("valid_json", expected=_nothing_expected("valid_json"))
def valid_json(output: str, case: DatasetCase) -> float:
    return float(parse_json_output(output) is not _NO_JSON)


def _jsonschema() -> Any:
    """jsonschema, imported on first use: every control-plane function imports this module,
    few datasets use JSON Schema, and the import costs cold-start time."""
    import jsonschema

    return jsonschema


def _schema_check(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError("scorer 'json_schema' needs expected to be a JSON Schema object")
    jsonschema = _jsonschema()
    validator = jsonschema.validators.validator_for(value, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"expected is not a valid JSON Schema: {exc.message}") from None


@register_scorer("json_schema", expected=_schema_check)
def json_schema(output: str, case: DatasetCase) -> float:
    """1 if the output is JSON and valid against the schema in ``expected``.

    The schema's ``$schema`` picks the draft (default 2020-12). ``format`` is not asserted
    (the JSON Schema default), so ``"format": "email"`` alone constrains nothing.
    """
    value = parse_json_output(output)
    if value is _NO_JSON:
        return 0.0
    assert isinstance(case.expected, dict)
    jsonschema = _jsonschema()
    validator_cls = jsonschema.validators.validator_for(
        case.expected, default=jsonschema.Draft202012Validator
    )
    return float(validator_cls(case.expected).is_valid(value))


# --------------------------------------------------------------------------- numeric

_NUMBER = r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\w|\.\d)"


class NumericOptions(ScorerOptions):
    tolerance: float = Field(default=0.0, ge=0.0)
    relative_tolerance: float = Field(default=0.0, ge=0.0)
    pick: Literal["last", "first", "only"] = "last"


def _number_check(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("scorer 'numeric' needs expected to be a number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"scorer 'numeric' needs expected to be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"scorer 'numeric' needs a finite expected number, got {value!r}")


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text`` ("1,250.5", "-3", "2e3"; "$6" and "5%" count)."""
    return [float(m.group().replace(",", "")) for m in _compiled(_NUMBER).finditer(text)]


@register_scorer("numeric", expected=_number_check, options=NumericOptions)
def numeric(output: str, case: DatasetCase) -> float:
    """1 if the output's number is within tolerance of ``expected``.

    Which number: the last one by default (models state the result after the working),
    ``pick: "first"``, or ``pick: "only"`` (an output with several numbers scores 0).
    Within tolerance: ``|x - expected| <= max(tolerance, relative_tolerance * |expected|)``.
    """
    opts = NumericOptions.model_validate(case.options)
    found = numbers_in(output)
    if not found or (opts.pick == "only" and len(found) != 1):
        return 0.0
    value = found[0] if opts.pick == "first" else found[-1]
    target = float(case.expected)  # type: ignore[arg-type]
    allowed = max(opts.tolerance, opts.relative_tolerance * abs(target))
    return float(abs(value - target) <= allowed + 1e-12 * max(1.0, abs(target)))


# --------------------------------------------------------------------------- refusal



class RefusalOptions(ScorerOptions):
    patterns: list[str] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from None
        return patterns


@register_scorer("refusal", expected=bool, options=RefusalOptions)
def refusal(output: str, case: DatasetCase) -> float:
    """expected true: 1 if the output refuses (out of scope, unsafe); false: 1 if it doesn't."""
    opts = RefusalOptions.model_validate(case.options)
    return float(is_refusal(output, opts.patterns) == bool(case.expected))
