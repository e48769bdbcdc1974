"""The evaluation dataset: one JSONL line per case, each naming its scorer.

A line is checked against its scorer when the dataset is parsed, so a wrong ``expected``
or a misspelt option is a ``DatasetInvalid`` naming the line, not a crash halfway through
an evaluation.
"""

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from modelgate.errors import (
    DatasetInvalid,
)
from modelgate.evaluation import model_scorers  # noqa: F401  (registers semantic and llm_judge)
from modelgate.evaluation.scorers import SCORERS, check_case

Invoker = Callable[[dict[str, str]], Mapping[str, Any]]

# --------------------------------------------------------------------------- dataset

# Any JSON value: each scorer checks the shape it needs, with a message naming the scorer.
Expected = JsonValue


class GradedAnswer(BaseModel):
    """A fixed answer to an llm_judge case's question with a human's grade (0 to 1): the
    judge grades it too, and the gate checks their agreement (modelgate.evaluation.judges).

    Validated only inside a DatasetCase: compiled into its schema (defer_build), never built alone."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    output: str = Field(min_length=1, max_length=20_000)
    grade: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


class DatasetCase(BaseModel):
    """One JSONL line of a service's evaluation dataset (see modelgate.evaluation.scorers for scorers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    inputs: dict[str, str]
    expected: Expected = None
    # A registered scorer name (not a Literal, so register_scorer extends it).
    scorer: str = "contains"
    options: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    weight: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    graded_answers: list[GradedAnswer] = Field(default_factory=list, max_length=50)

    @field_validator("scorer")
    @classmethod
    def _known_scorer(cls, value: str) -> str:
        if value not in SCORERS:
            raise ValueError(f"unknown scorer {value!r} (known: {', '.join(sorted(SCORERS))})")
        return value

    @model_validator(mode="after")
    def _fits_scorer(self) -> "DatasetCase":
        check_case(self)
        if self.graded_answers and self.scorer != "llm_judge":
            raise ValueError(
                f"graded_answers check an llm_judge against human grades; case {self.id!r} is scored by "
                f"{self.scorer!r}"
            )
        return self


def parse_dataset(text: str) -> list[DatasetCase]:
    """Parse a JSONL dataset; the first bad line is reported by its 1-based line number."""
    cases: list[DatasetCase] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = DatasetCase.model_validate_json(line)
        except ValidationError as exc:
            raise DatasetInvalid(f"dataset line {number}: {_problems(exc)}") from exc
        if case.id in seen:
            raise DatasetInvalid(
                f"dataset line {number}: duplicate case id {case.id!r} "
                f"(first on line {seen[case.id]})"
            )
        seen[case.id] = number
        cases.append(case)
    if not cases:
        raise DatasetInvalid("dataset has no cases")
    return cases


def _problems(exc: ValidationError) -> str:
    """Pydantic's errors as "field: message"; a whole-line error is just its message."""
    out = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        where = ".".join(str(p) for p in error["loc"])
        out.append(f"{where}: {message}" if where else message)
    return "; ".join(out)

