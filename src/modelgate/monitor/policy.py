"""A service's monitoring policy: what to do when live is found wanting (the policy's
``monitoring`` section), and how the scheduled checks judge.

    "monitoring": {
      "on_drift": ["alert"],
      "on_reevaluation_regression": ["alert", "rollback"],
      "on_model_legacy": ["alert"],
      "refuse_legacy_models": true,
      "reevaluation": {"significance_level": 0.05, "max_accuracy_drop": 0.0, "min_cases": 10}
    }

Owned by the control plane like the rest of the release policy (an artefact can't change
what happens when it regresses).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# What can set an action off (``actions.act``'s ``trigger``).
Trigger = Literal["drift", "reevaluation_regression", "model_legacy"]
TRIGGERS: tuple[Trigger, ...] = ("drift", "reevaluation_regression", "model_legacy")
# What an action does: an SNS message to the operations topic, a re-evaluation of live now, or
# live back to its last known good version (``modelgate rollback``'s own path).
ActionName = Literal["alert", "reevaluate", "rollback"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReevaluationPolicy(_Strict):
    """When a scheduled re-evaluation of live is a regression: live now against the evaluation
    that promoted it, case by case (exact McNemar / sign test, ``comparison.compare``).

    A regression needs both: the paired test significant at ``significance_level`` with more
    cases worse than better, and accuracy down by more than ``max_accuracy_drop``. Fewer than
    ``min_cases`` paired cases is "insufficient", never "no regression"."""

    significance_level: float = Field(default=0.05, gt=0.0, lt=0.5)
    max_accuracy_drop: float = Field(default=0.0, ge=0.0, le=1.0)
    min_cases: int = Field(default=10, ge=1)


def _unique(field: str, actions: list[str]) -> list[str]:
    if len(set(actions)) != len(actions):
        raise ValueError(f"{field}: each action once, got {actions}")
    return actions


class MonitoringPolicy(_Strict):
    """Actions per trigger, in order (an alert first says what the rollback after it does)."""

    on_drift: list[ActionName] = Field(default_factory=lambda: ["alert"], max_length=3)
    on_reevaluation_regression: list[Literal["alert", "rollback"]] = Field(
        default_factory=lambda: ["alert"], max_length=2
    )
    on_model_legacy: list[Literal["alert"]] = Field(default_factory=lambda: ["alert"], max_length=1)
    # Validate refuses a release whose pinned Bedrock model is LEGACY (lifecycle.py).
    refuse_legacy_models: bool = False
    reevaluation: ReevaluationPolicy = Field(default_factory=ReevaluationPolicy)

    @field_validator("on_drift", "on_reevaluation_regression", "on_model_legacy", mode="before")
    @classmethod
    def _known_actions(cls, value: object, info) -> object:
        if isinstance(value, list):
            allowed = {
                "on_drift": ("alert", "reevaluate", "rollback"),
                # re-evaluating again would loop; a re-evaluation can only alert or roll back
                "on_reevaluation_regression": ("alert", "rollback"),
                # a rollback keeps the same pinned model in most services; new releases are refused instead
                "on_model_legacy": ("alert",),
            }[info.field_name]
            bad = [a for a in value if a not in allowed]
            if bad:
                raise ValueError(
                    f"{info.field_name}: unknown action(s) {bad!r}; allowed here: {', '.join(allowed)}"
                )
            _unique(info.field_name, value)
        return value

    def actions_for(self, trigger: Trigger) -> list[str]:
        return list(getattr(self, f"on_{trigger}"))
