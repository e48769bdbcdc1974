"""Alias RevisionIds on the embedded AWS (modelgate_emulator/lambda_aliases.py, which cites
the Lambda API reference): every update changes it, UpdateAlias with a stale one is refused
with PreconditionFailedException, and every UpdateAlias is in the recorder's history."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError
from modelgate_emulator import LocalAWS
from modelgate_emulator.lambda_aliases import AliasUpdate


def _function(local: LocalAWS) -> tuple[Any, str, list[str]]:
    lam = local.client("lambda")
    name = local.function_name("ServiceFunction")
    versions = []
    for config in ("aliases-a", "aliases-b"):
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"MODEL_CONFIG": config}})
        versions.append(lam.publish_version(FunctionName=name)["Version"])
    return lam, name, versions


def test_every_update_changes_the_revision_and_a_stale_revision_is_refused(local_aws: LocalAWS) -> None:
    lam, name, (first, second) = _function(local_aws)
    read = lam.get_alias(FunctionName=name, Name="live")
    # When the alias is updated with the revision just read
    updated = lam.update_alias(FunctionName=name, Name="live", FunctionVersion=first, RevisionId=read["RevisionId"])
    # Then it gets a new revision, which GetAlias reports too
    assert updated["RevisionId"] != read["RevisionId"]
    assert lam.get_alias(FunctionName=name, Name="live")["RevisionId"] == updated["RevisionId"]
    # And an update with the old revision is refused as AWS refuses it, changing nothing
    with pytest.raises(ClientError) as exc:
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion=second, RevisionId=read["RevisionId"])
    assert exc.value.response["Error"]["Code"] == "PreconditionFailedException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert "does not match the latest RevisionId" in exc.value.response["Error"]["Message"]
    after = lam.get_alias(FunctionName=name, Name="live")
    assert (after["FunctionVersion"], after["RevisionId"]) == (first, updated["RevisionId"])
    # And an update that sets the same configuration again is an update too (a new revision)
    again = lam.update_alias(FunctionName=name, Name="live", FunctionVersion=first)
    assert again["RevisionId"] != updated["RevisionId"]


def test_the_history_has_every_update_with_its_weights_accepted_or_not(local_aws: LocalAWS) -> None:
    lam, name, (first, second) = _function(local_aws)
    seen = len(local_aws.aliases.updates(name, "live"))
    revision = lam.get_alias(FunctionName=name, Name="live")["RevisionId"]
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion=first,
                     RoutingConfig={"AdditionalVersionWeights": {second: 0.25}})
    with pytest.raises(ClientError):
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion=second, RevisionId=revision)
    with pytest.raises(ClientError):  # two additional versions: refused by limits.py, recorded as refused
        lam.update_alias(FunctionName=name, Name="live",
                         RoutingConfig={"AdditionalVersionWeights": {first: 0.1, second: 0.1}})
    history = local_aws.aliases.updates(name, "live")[seen:]
    assert [(u.function_version, u.weights, u.accepted) for u in history] == [
        (first, {second: 0.25}, True),
        (second, None, False),
        (None, {first: 0.1, second: 0.1}, False),
    ]
    assert history[0].revision == lam.get_alias(FunctionName=name, Name="live")["RevisionId"]
    assert history[1].expected_revision == revision and history[1].revision is None
    lam.update_alias(FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {}})


def test_a_hook_holds_an_update_in_flight_while_another_one_lands(local_aws: LocalAWS) -> None:
    lam, name, (first, second) = _function(local_aws)
    revision = lam.get_alias(FunctionName=name, Name="live")["RevisionId"]
    arrived, go = threading.Event(), threading.Event()

    def slow(update: AliasUpdate, phase: str) -> None:
        if phase == "before" and update.function_version == second:
            arrived.set()
            assert go.wait(30), "the test never let the slow update go"

    remove = local_aws.aliases.add_hook(slow)
    outcome: dict[str, Any] = {}

    def slow_caller() -> None:
        try:
            lam.update_alias(FunctionName=name, Name="live", FunctionVersion=second, RevisionId=revision)
        except ClientError as exc:
            outcome["error"] = exc.response["Error"]["Code"]

    try:
        # Given an update (with the revision it read) that arrived and is held in flight
        caller = threading.Thread(target=slow_caller)
        caller.start()
        assert arrived.wait(30)
        # When another update lands meanwhile (the hook holds no lock: it is not blocked)
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion=first)
        go.set()
        caller.join(30)
    finally:
        go.set()
        remove()
    # Then the held update is checked when it is applied: its revision is stale, so it is refused
    assert outcome == {"error": "PreconditionFailedException"}
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == first
