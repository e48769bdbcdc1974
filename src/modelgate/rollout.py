"""Rollout policy as data: the traffic steps a release walks through, and their bakes.

A rollout is a list of steps ``(weight, bake_seconds)`` with strictly increasing weights
that ends at weight 1.0. At each step the live alias sends ``weight`` of its traffic to
the candidate, the release bakes for ``bake_seconds`` with the canary alarms armed, and
(before the last step) the judge compares candidate and stable over that step's window.
The last step's bake is the *final bake* (the policy calls it the post-promotion watch):
the release still holds the lock and an alarm still rolls it back. CodeDeploy stops
watching at 100%; we don't.

The final bake routes :data:`FINAL_BAKE_WEIGHT` (99.99%), not 100%: the alias stays
*weighted* (stable as its version, the candidate as its additional version) until Promote
makes it point at the candidate alone. The canary alarms watch the candidate through the
``ExecutedVersion`` dimension, and AWS documents that dimension for weighted aliases only:
"Use the ExecutedVersion dimension to compare error rates for two versions of a function
that are both targets of a weighted alias" ("Viewing metrics for Lambda functions",
https://docs.aws.amazon.com/lambda/latest/dg/monitoring-functions-metrics.html; and "When
you configure traffic weights between two function versions ... For alias invocations,
Lambda uses the ExecutedVersion dimension to filter the metric data by the invoked
version", "Implement Lambda canary deployments using a weighted alias",
https://docs.aws.amazon.com/lambda/latest/dg/configuring-alias-routing.html). Whether it
is published for an unweighted alias is not documented, so an unweighted 100% bake might
watch nothing. Switching the alarms to the alias's ``Resource`` dimension at 100% instead
is unsafe too: the stable side's late metrics (published a minute or more after the call)
from before the switch fall into the alarm's lookback and can roll back a healthy release.
On a weighted alias, every datapoint an alarm sees is the candidate's, whenever it arrives.
The weight is within what Lambda accepts for an additional version ("Valid Range: Minimum
value of 0.0. Maximum value of 1.0", AliasRoutingConfiguration,
https://docs.aws.amazon.com/lambda/latest/api/API_AliasRoutingConfiguration.html) at the
4 decimals weights are rounded to here; the alias still routes to one additional version
only ("You can point an alias to a maximum of two Lambda function versions").

Why the last step carries the watch instead of a separate field: one list is the whole
timeline, so the state machine walks it with one loop, and a policy can't describe a
rollout and a watch that disagree.

Presets carry CodeDeploy's names (as SAM's ``DeploymentPreference.Type`` spells them),
so a team moving from CodeDeploy keeps its vocabulary and its timings:

* ``Canary10Percent<N>Minutes``: 10% for N minutes, then 100% (two increments);
* ``Linear10PercentEvery<N>Minute(s)``: 10%, 20%, ... 90%, each for N minutes, then
  100% (CodeDeploy's TimeBasedLinear: an equal share "at the start of each increment",
  an equal number of minutes between increments; 100% is reached after 9 intervals);
* ``AllAtOnce``: (nearly) everything at once; only the final bake remains.

Pure: no AWS calls, nothing at import time but the preset table.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Lambda alias routing weights are applied with 4 decimals (deploy.set_canary rounds
# them); rounding here keeps the plan and the alias in agreement (0.1 * 3 is 0.3, not
# 0.30000000000000004).
WEIGHT_DECIMALS = 4
# What the alias routes to the candidate during the final bake (see the module docstring):
# the most a weighted alias can route at WEIGHT_DECIMALS, 99.99%; stable keeps 0.01%.
FINAL_BAKE_WEIGHT = round(1.0 - 10.0**-WEIGHT_DECIMALS, WEIGHT_DECIMALS)
# Each step costs a handful of state transitions and history events (an execution keeps
# at most 25,000); 20 steps is twice CodeDeploy's longest preset.
MAX_STEPS = 20
DEFAULT_POST_PROMOTION_WATCH_SECONDS = 900


class RolloutStep(BaseModel):
    """One traffic step: ``weight`` of the alias's traffic to the candidate for ``bake_seconds``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float = Field(gt=0.0, le=1.0)
    bake_seconds: int = Field(ge=0)

    @field_validator("weight")
    @classmethod
    def _rounded(cls, value: float) -> float:
        rounded = round(value, WEIGHT_DECIMALS)
        if rounded <= 0.0:
            raise ValueError(
                f"weight {value} rounds to 0 at {WEIGHT_DECIMALS} decimals: "
                "the candidate would get no traffic"
            )
        return rounded


class Rollout(BaseModel):
    """A validated rollout: strictly increasing weights, ending at 1.0."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    steps: tuple[RolloutStep, ...] = Field(min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _shape(self) -> "Rollout":
        weights = [s.weight for s in self.steps]
        for before, after in zip(weights, weights[1:]):
            if after <= before:
                raise ValueError(f"rollout weights must strictly increase, got {weights}")
        if weights[-1] != 1.0:
            raise ValueError(
                f"a rollout must end at weight 1.0 (all traffic to the candidate), got {weights}"
            )
        for index, step in enumerate(self.steps[:-1]):
            if step.weight >= FINAL_BAKE_WEIGHT:
                raise ValueError(
                    f"step {index} ({format_weight(step.weight)}) routes as much as the final bake "
                    f"({format_weight(FINAL_BAKE_WEIGHT)}: the alias stays weighted until promotion): "
                    f"a step before the last must stay below {format_weight(FINAL_BAKE_WEIGHT)}"
                )
            if step.bake_seconds < 1:
                raise ValueError(
                    f"step {index} ({step.weight:.2%}) has no bake: a canary step needs "
                    "bake_seconds >= 1, or the judge has no window to compare"
                )
        return self

    @property
    def post_promotion_watch_seconds(self) -> int:
        """The final bake (the last step, at :data:`FINAL_BAKE_WEIGHT`): rollback stays armed
        this long before Promote makes the alias point at the candidate alone."""
        return self.steps[-1].bake_seconds

    @property
    def total_seconds(self) -> int:
        return sum(s.bake_seconds for s in self.steps)


def _canary(minutes: int) -> list[tuple[float, int]]:
    return [(0.10, minutes * 60)]


def _linear(minutes: int) -> list[tuple[float, int]]:
    return [(round(k / 10, WEIGHT_DECIMALS), minutes * 60) for k in range(1, 10)]


# The steps *before* the last; the last step's bake is the final bake (post-promotion watch).
PRESETS: dict[str, list[tuple[float, int]]] = {
    "Canary10Percent5Minutes": _canary(5),
    "Canary10Percent10Minutes": _canary(10),
    "Canary10Percent15Minutes": _canary(15),
    "Canary10Percent30Minutes": _canary(30),
    "Linear10PercentEvery1Minute": _linear(1),
    "Linear10PercentEvery2Minutes": _linear(2),
    "Linear10PercentEvery3Minutes": _linear(3),
    "Linear10PercentEvery10Minutes": _linear(10),
    "AllAtOnce": [],
}
_CODEDEPLOY_PREFIX = "CodeDeployDefault.Lambda"


def preset_rollout(name: str, *, post_promotion_watch_seconds: int) -> Rollout:
    """A preset by CodeDeploy's name (``CodeDeployDefault.Lambda<Name>`` is accepted too)."""
    key = name[len(_CODEDEPLOY_PREFIX) :] if name.startswith(_CODEDEPLOY_PREFIX) else name
    if key not in PRESETS:
        raise ValueError(
            f"unknown rollout preset {name!r}; valid presets: {', '.join(PRESETS)}"
        )
    steps = [RolloutStep(weight=w, bake_seconds=s) for w, s in PRESETS[key]]
    steps.append(RolloutStep(weight=1.0, bake_seconds=post_promotion_watch_seconds))
    return Rollout(name=key, steps=tuple(steps))


StepLike = RolloutStep | Mapping[str, Any] | Sequence[float]


def _as_step(value: StepLike) -> RolloutStep:
    if isinstance(value, RolloutStep):
        return value
    if isinstance(value, Mapping):
        return RolloutStep.model_validate(value)
    weight, bake_seconds = value  # a (weight, bake_seconds) pair
    return RolloutStep(weight=weight, bake_seconds=int(bake_seconds))


def resolve_rollout(
    preset: str | None = None,
    steps: Sequence[StepLike] | None = None,
    *,
    canary_weight: float = 0.10,
    bake_seconds: int = 900,
    post_promotion_watch_seconds: int | None = None,
) -> Rollout:
    """The rollout a policy asks for: a preset, explicit steps, or the legacy single canary.

    * ``preset``: a CodeDeploy name; the 100% step bakes ``post_promotion_watch_seconds``
      (default :data:`DEFAULT_POST_PROMOTION_WATCH_SECONDS`).
    * ``steps``: explicit steps ending at 1.0; the last one's bake *is* the watch. Passing
      a different ``post_promotion_watch_seconds`` too is an error, not a silent override.
    * neither: the pre-rollout policy (``canary_weight`` for ``bake_seconds``, then 100%),
      so existing policies keep their meaning.
    """
    if preset is not None and steps is not None:
        raise ValueError("give a rollout preset or explicit steps, not both")
    watch = (
        DEFAULT_POST_PROMOTION_WATCH_SECONDS
        if post_promotion_watch_seconds is None
        else post_promotion_watch_seconds
    )
    if watch < 0:
        raise ValueError(f"post_promotion_watch_seconds must be >= 0, got {watch}")
    if preset is not None:
        return preset_rollout(preset, post_promotion_watch_seconds=watch)
    if steps is not None:
        rollout = Rollout(steps=tuple(_as_step(s) for s in steps))
        if (
            post_promotion_watch_seconds is not None
            and rollout.post_promotion_watch_seconds != post_promotion_watch_seconds
        ):
            raise ValueError(
                f"the 100% step bakes {rollout.post_promotion_watch_seconds} s but "
                f"post_promotion_watch_seconds is {post_promotion_watch_seconds}: the last "
                "step's bake is the watch, set one of them"
            )
        return rollout
    return Rollout(
        steps=(
            RolloutStep(weight=canary_weight, bake_seconds=bake_seconds),
            RolloutStep(weight=1.0, bake_seconds=watch),
        )
    )


class PlannedStep(BaseModel):
    """One step as the state machine walks it (``$.step`` in the release context).

    ``weight`` is what the alias routes to the candidate during the step's bake. ``is_final``
    marks the last step, the final bake: :data:`FINAL_BAKE_WEIGHT` (the alias stays weighted,
    see the module docstring; Promote then points it at the candidate alone), and the
    stable side's 0.01% is too little traffic for the judge to compare with, so only the
    alarms decide there. A bake of 0 s has no callback to wait on (a task's timeout must be
    >= 1 s): the ASL skips it. (``weight`` still accepts 1.0: ledger records written before
    the final bake stayed weighted say so.)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0)
    weight: float = Field(gt=0.0, le=1.0)
    bake_seconds: int = Field(ge=0)
    is_final: bool


def step_plan(rollout: Rollout) -> list[PlannedStep]:
    """The rollout as the state machine walks it: one step per increment, in order; the
    last one routes :data:`FINAL_BAKE_WEIGHT` (the policy's 1.0 is reached by Promote)."""
    last = len(rollout.steps) - 1
    return [
        PlannedStep(
            index=index,
            weight=FINAL_BAKE_WEIGHT if index == last else step.weight,
            bake_seconds=step.bake_seconds,
            is_final=index == last,
        )
        for index, step in enumerate(rollout.steps)
    ]


def format_weight(weight: float) -> str:
    """A routing weight as the percentage it is, never rounded up to a whole one
    (0.9999 is "99.99%", not "100%"; 0.1 is "10%")."""
    return f"{round(weight * 100, WEIGHT_DECIMALS - 2):.2f}".rstrip("0").rstrip(".") + "%"
