"""Rollout policy as data: CodeDeploy's presets, explicit steps, the legacy canary, the plan."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from modelgate.rollout import (
    DEFAULT_POST_PROMOTION_WATCH_SECONDS,
    FINAL_BAKE_WEIGHT,
    MAX_STEPS,
    PRESETS,
    PlannedStep,
    Rollout,
    RolloutStep,
    format_weight,
    resolve_rollout,
    step_plan,
)

# SAM's DeploymentPreference types (samtranslator's CODEDEPLOY_PREDEFINED_CONFIGURATIONS_LIST).
CODEDEPLOY_LAMBDA_CONFIGS = [
    "Canary10Percent5Minutes",
    "Canary10Percent10Minutes",
    "Canary10Percent15Minutes",
    "Canary10Percent30Minutes",
    "Linear10PercentEvery1Minute",
    "Linear10PercentEvery2Minutes",
    "Linear10PercentEvery3Minutes",
    "Linear10PercentEvery10Minutes",
    "AllAtOnce",
]


def _pairs(rollout: Rollout) -> list[tuple[float, int]]:
    return [(s.weight, s.bake_seconds) for s in rollout.steps]


def test_presets_are_exactly_codedeploys_lambda_configurations() -> None:
    # Given the preset table / Then it names what SAM and CodeDeploy name, no more, no less
    assert list(PRESETS) == CODEDEPLOY_LAMBDA_CONFIGS


def test_presets_match_sams_own_list_when_it_is_installed() -> None:
    # Given samtranslator (a dev dependency) / Then our names are its predefined ones
    collection = pytest.importorskip("samtranslator.model.preferences.deployment_preference_collection")
    assert set(PRESETS) == set(collection.CODEDEPLOY_PREDEFINED_CONFIGURATIONS_LIST)


@pytest.mark.parametrize(("name", "minutes"), [("Canary10Percent5Minutes", 5), ("Canary10Percent10Minutes", 10), ("Canary10Percent15Minutes", 15), ("Canary10Percent30Minutes", 30)])
def test_canary_presets_shift_ten_percent_then_everything_after_the_interval(name: str, minutes: int) -> None:
    # Given a canary preset and a 20-minute post-promotion watch
    # When it is resolved
    rollout = resolve_rollout(name, post_promotion_watch_seconds=1200)
    # Then 10% bakes for the interval, then 100% bakes for the watch (two increments)
    assert _pairs(rollout) == [(0.1, minutes * 60), (1.0, 1200)]
    assert rollout.name == name
    assert rollout.post_promotion_watch_seconds == 1200


@pytest.mark.parametrize(("name", "minutes"), [("Linear10PercentEvery1Minute", 1), ("Linear10PercentEvery2Minutes", 2), ("Linear10PercentEvery3Minutes", 3), ("Linear10PercentEvery10Minutes", 10)])
def test_linear_presets_add_ten_percent_every_interval_until_everything(name: str, minutes: int) -> None:
    # Given a linear preset
    # When it is resolved with the default watch
    rollout = resolve_rollout(name)
    # Then 10%, 20%, ... 90% each bake one interval (exact weights, no float drift),
    # and 100% comes after 9 intervals, baking the watch
    expected = [(k / 10, minutes * 60) for k in range(1, 10)] + [(1.0, DEFAULT_POST_PROMOTION_WATCH_SECONDS)]
    assert _pairs(rollout) == expected
    assert [s.weight for s in rollout.steps][2] == 0.3
    assert rollout.total_seconds == 9 * minutes * 60 + DEFAULT_POST_PROMOTION_WATCH_SECONDS


def test_all_at_once_is_only_the_post_promotion_watch() -> None:
    # Given AllAtOnce / When resolved / Then one step: everything, watched
    rollout = resolve_rollout("AllAtOnce", post_promotion_watch_seconds=600)
    assert _pairs(rollout) == [(1.0, 600)]


def test_codedeploy_full_config_names_are_accepted() -> None:
    # Given the name as CodeDeploy's API spells it
    rollout = resolve_rollout("CodeDeployDefault.LambdaCanary10Percent5Minutes")
    # Then it is the same preset
    assert rollout.name == "Canary10Percent5Minutes"
    assert _pairs(rollout)[0] == (0.1, 300)


def test_unknown_preset_lists_the_valid_names() -> None:
    # Given a typo in a preset name
    # When it is resolved / Then the error names it and every valid preset
    with pytest.raises(ValueError, match="unknown rollout preset 'Canary10Percent7Minutes'") as info:
        resolve_rollout("Canary10Percent7Minutes")
    for name in CODEDEPLOY_LAMBDA_CONFIGS:
        assert name in str(info.value)


def test_explicit_steps_accept_models_dicts_and_pairs() -> None:
    # Given the example rollout, written three ways
    steps = [RolloutStep(weight=0.1, bake_seconds=900), {"weight": 0.5, "bake_seconds": 900}, (1.0, 1800)]
    # When resolved
    rollout = resolve_rollout(steps=steps)
    # Then the last step's bake is the post-promotion watch
    assert _pairs(rollout) == [(0.1, 900), (0.5, 900), (1.0, 1800)]
    assert rollout.post_promotion_watch_seconds == 1800
    assert rollout.name is None


def test_without_preset_or_steps_the_legacy_canary_keeps_its_meaning() -> None:
    # Given a policy that only has canary_weight and bake_seconds (before rollouts existed)
    # When resolved
    rollout = resolve_rollout(canary_weight=0.25, bake_seconds=300, post_promotion_watch_seconds=60)
    # Then it is that canary, then 100% with the watch
    assert _pairs(rollout) == [(0.25, 300), (1.0, 60)]


def test_legacy_defaults_equal_the_canary_15_minutes_preset() -> None:
    # Given ReleasePolicy's old defaults (10% for 900 s) / Then they are Canary10Percent15Minutes
    assert _pairs(resolve_rollout()) == _pairs(resolve_rollout("Canary10Percent15Minutes"))


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([(0.5, 60), (0.2, 60), (1.0, 0)], "strictly increase"),
        ([(0.2, 60), (0.2, 60), (1.0, 0)], "strictly increase"),
        ([(0.1, 60), (0.5, 60)], "must end at weight 1.0"),
        ([(0.1, 0), (1.0, 60)], "needs bake_seconds >= 1"),
        ([], "at least 1"),
        ([(0.0, 60), (1.0, 60)], "greater than 0"),
        ([(1.5, 60)], "less than or equal to 1"),
        ([(0.1, -5), (1.0, 60)], "greater than or equal to 0"),
        ([(0.00001, 60), (1.0, 60)], "rounds to 0"),
        ([(0.5, 60), (0.9999, 60), (1.0, 60)], r"step 1 \(99.99%\) routes as much as the final bake"),
        ([(round(0.01 * k, 2), 60) for k in range(1, MAX_STEPS + 1)] + [(1.0, 0)], f"at most {MAX_STEPS}"),
    ],
)
def test_invalid_steps_are_refused_with_a_reason(steps: list, message: str) -> None:
    # Given a malformed rollout / When resolved / Then it is refused, saying why
    with pytest.raises((ValueError, ValidationError), match=message):
        resolve_rollout(steps=steps)


def test_preset_and_steps_together_are_ambiguous() -> None:
    with pytest.raises(ValueError, match="not both"):
        resolve_rollout("AllAtOnce", steps=[(1.0, 0)])


def test_explicit_steps_and_a_different_watch_conflict() -> None:
    # Given steps whose 100% step bakes 600 s, and a watch of 900 s
    # When resolved / Then the conflict is an error, not a silent override
    with pytest.raises(ValueError, match="last step's bake is the watch"):
        resolve_rollout(steps=[(0.1, 60), (1.0, 600)], post_promotion_watch_seconds=900)
    # And the same value is fine
    assert resolve_rollout(steps=[(0.1, 60), (1.0, 600)], post_promotion_watch_seconds=600)


def test_negative_watch_is_refused() -> None:
    with pytest.raises(ValueError, match="post_promotion_watch_seconds"):
        resolve_rollout("AllAtOnce", post_promotion_watch_seconds=-1)


def test_final_step_may_have_no_watch() -> None:
    # Given a rollout that wants no post-promotion watch / Then that is allowed (0 s)
    assert resolve_rollout(steps=[(0.1, 60), (1.0, 0)]).post_promotion_watch_seconds == 0


def test_weights_are_rounded_as_the_alias_applies_them() -> None:
    # Given a weight with more decimals than Lambda routing uses (deploy.set_canary rounds to 4)
    step = RolloutStep(weight=1 / 3, bake_seconds=60)
    # Then the plan carries the weight the alias will really get
    assert step.weight == 0.3333


def test_rollout_is_immutable() -> None:
    rollout = resolve_rollout("AllAtOnce")
    with pytest.raises(ValidationError):
        rollout.steps[0].weight = 0.5  # type: ignore[misc]


def test_step_plan_is_json_for_the_state_machine() -> None:
    # Given a three-step rollout
    rollout = resolve_rollout(steps=[(0.1, 900), (0.5, 900), (1.0, 1800)])
    # When planned
    plan = [step.model_dump() for step in step_plan(rollout)]
    # Then each step has its index, the weight the alias routes, its bake and whether it is
    # the final bake: 99.99%, the alias still weighted (1.0 is reached by Promote alone)
    assert plan == [
        {"index": 0, "weight": 0.1, "bake_seconds": 900, "is_final": False},
        {"index": 1, "weight": 0.5, "bake_seconds": 900, "is_final": False},
        {"index": 2, "weight": 0.9999, "bake_seconds": 1800, "is_final": True},
    ]
    # And it round-trips through JSON unchanged (it is state machine input)
    assert json.loads(json.dumps(plan)) == plan
    assert [PlannedStep.model_validate(s) for s in plan] == step_plan(rollout)


def test_step_plan_of_every_preset_ends_with_exactly_one_final_step() -> None:
    for name in PRESETS:
        plan = step_plan(resolve_rollout(name))
        assert [p.is_final for p in plan].count(True) == 1, name
        assert plan[-1].is_final and plan[-1].weight == FINAL_BAKE_WEIGHT == 0.9999, name
        assert all(p.weight < FINAL_BAKE_WEIGHT for p in plan[:-1]), name
        assert [p.index for p in plan] == list(range(len(plan))), name


def test_the_final_bake_keeps_the_alias_weighted_and_a_rollout_of_one_step_too() -> None:
    # Given AllAtOnce (only the final bake) / When planned
    [final] = step_plan(resolve_rollout("AllAtOnce", post_promotion_watch_seconds=600))
    # Then it routes 99.99% to the candidate: stable keeps the rest until Promote
    assert (final.weight, final.bake_seconds, final.is_final) == (0.9999, 600, True)


@pytest.mark.parametrize(
    ("weight", "shown"),
    [(0.1, "10%"), (0.25, "25%"), (0.125, "12.5%"), (0.9999, "99.99%"), (0.0001, "0.01%"), (1.0, "100%")],
)
def test_weights_are_shown_as_the_percentage_they_are(weight: float, shown: str) -> None:
    # 99.99% is never shown as 100%
    assert format_weight(weight) == shown
