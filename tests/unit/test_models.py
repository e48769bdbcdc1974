"""Manifest, policy and release-id rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelgate.manifest import Manifest, ModelSpec, release_id_for
from modelgate.policy import ReleasePolicy, ServiceConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support-bot" / "v1" / "model-config.json"


def manifest(**overrides) -> dict:
    data = json.loads(EXAMPLE.read_text())
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    "model_id",
    ["anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-lite-v1:0", "us.anthropic.claude-3-7-sonnet-20250219-v1:0"],
)
def test_pinned_model_ids_are_accepted(model_id):
    assert ModelSpec(model_id=model_id).model_id == model_id


@pytest.mark.parametrize(
    ("model_id", "words"),
    [
        ("anthropic.claude-latest", "latest"),
        ("anthropic.claude-3-haiku:latest", "latest"),
        ("amazon.nova-lite", "explicit version"),
        ("", "explicit version"),
    ],
)
def test_unpinned_model_ids_are_rejected_with_the_reason(model_id, words):
    with pytest.raises(ValidationError) as info:
        ModelSpec(model_id=model_id)
    assert words in str(info.value)


def test_unknown_manifest_fields_are_errors_not_ignored():
    with pytest.raises(ValidationError) as info:
        Manifest.model_validate(manifest(temprature=0.3))
    assert "temprature" in str(info.value)


def test_manifest_needs_a_system_prompt_and_unique_names():
    data = manifest()
    data["prompts"] = [dict(data["prompts"][0], name="user")]
    with pytest.raises(ValidationError, match="system"):
        Manifest.model_validate(data)
    data["prompts"] = [data["prompts"][0] | {"name": "system"}] * 2
    with pytest.raises(ValidationError, match="unique"):
        Manifest.model_validate(data)


def test_prompt_paths_cannot_leave_the_release_folder():
    data = manifest()
    data["prompts"] = [dict(data["prompts"][0], file="../other/prompts/system.txt")]
    with pytest.raises(ValidationError, match="inside the release folder"):
        Manifest.model_validate(data)


def test_release_id_depends_on_key_and_object_version_and_is_an_execution_name():
    a = release_id_for("support-bot", "a" * 40, "releases/support-bot/x/model-config.json", "v1")
    b = release_id_for("support-bot", "a" * 40, "releases/support-bot/x/model-config.json", "v2")
    assert a != b
    assert a == release_id_for("support-bot", "a" * 40, "releases/support-bot/x/model-config.json", "v1")
    assert len(a) <= 80 and all(c.isalnum() or c in "-_" for c in a)


def test_policy_defaults_match_the_documented_gate():
    policy = ReleasePolicy()
    assert policy.max_accuracy_drop == 0.05
    assert policy.approval == "manual"
    assert policy.canary_alarms[0].metric == "Errors"


def test_service_registration_rejects_a_policy_typo():
    with pytest.raises(ValidationError, match="max_accuracy_dorp"):
        ServiceConfig.model_validate(
            {"service": "s", "function_name": "f", "dataset_key": "d", "policy": {"max_accuracy_dorp": 1}}
        )


def test_the_policys_identity_map_takes_logins_in_any_case_and_refuses_what_it_cant_compare():
    # Logins compare in lower case, so the map keeps them so
    policy = ReleasePolicy(identities={" Alice-Dev ": "alice@example.com", "asmith": "alice@example.com"})
    assert policy.identities == {"alice-dev": "alice@example.com", "asmith": "alice@example.com"}
    cases = [
        ({"alice-dev": "Alice@Example.com"}, "not a lower-case email"),  # as approvers are written
        ({"alice dev": "alice@example.com"}, "is not a login or IAM name"),
        ({"alice@example.com": "alice@example.com"}, "an email needs no mapping"),
        ({"Alice-Dev": "alice@example.com", "alice-dev": "bob@example.com"}, "'alice-dev' is given twice"),
        ({"\u0430lice": "alice@example.com"}, "is not a login or IAM name"),  # a Cyrillic "а": ASCII only
    ]
    for identities, says in cases:
        with pytest.raises(ValueError, match=says):
            ReleasePolicy(identities=identities)
