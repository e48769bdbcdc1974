"""Intake stage: one manifest upload starts one release; a duplicate event starts nothing."""

from __future__ import annotations

import json

import pytest

from modelgate.chain import LedgerChain, release_problems, verify_chain
from modelgate.errors import ManifestInvalid
from modelgate.manifest import parse_release_key, release_id_for
from modelgate.pipeline.intake import initial_context, start_release

KEY = "releases/support-bot/ce04089f73fa33b83811a7303831a5d2a7ad8f8e/model-config.json"


def executions(world):
    return world.sfn.list_executions(stateMachineArn=world.settings.state_machine_arn)["executions"]


def test_an_upload_starts_one_release_named_after_it(world):
    # Given a manifest uploaded as version v1 of its key
    # When its Object Created event arrives
    result = start_release(world.deps, "artefacts", KEY, "v1")
    # Then one execution runs, named after the release, with the release's first context as input
    release_id = release_id_for("support-bot", "ce04089f73fa33b83811a7303831a5d2a7ad8f8e", KEY, "v1")
    assert result == {"release_id": release_id, "started": True, "execution_arn": executions(world)[0]["executionArn"]}
    [execution] = executions(world)
    assert execution["name"] == release_id and execution["status"] == "RUNNING"
    started = json.loads(world.sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert started["artifact"] == {"bucket": "artefacts", "key": KEY, "version_id": "v1"}
    assert (started["service"], started["commit"]) == ("support-bot", "ce04089f73fa33b83811a7303831a5d2a7ad8f8e")
    # And the ledger has received it, with where its execution is
    record = world.ledger.get(release_id)
    assert record["status"] == "Received" and record["execution_arn"] == execution["executionArn"]


def test_a_duplicate_event_starts_nothing(world):
    # Given an upload whose event was delivered once already
    first = start_release(world.deps, "artefacts", KEY, "v1")
    # When the same event is delivered again
    again = start_release(world.deps, "artefacts", KEY, "v1")
    # Then it reports the release as already started, and there is still one execution and one record
    assert again == {"release_id": first["release_id"], "started": False, "reason": "already started"}
    assert len(executions(world)) == 1
    assert [h["status"] for h in world.ledger.get(first["release_id"])["history"]] == ["Received"]


def test_another_version_of_the_same_key_is_another_release(world):
    # Given a release started from version v1 / When v2 of the same key is uploaded
    first = start_release(world.deps, "artefacts", KEY, "v1")
    second = start_release(world.deps, "artefacts", KEY, "v2")
    # Then it starts a release of its own
    assert second["started"] and second["release_id"] != first["release_id"]
    assert len(executions(world)) == 2


def test_an_unversioned_upload_is_refused(world):
    # Given an upload to a bucket without versioning (no version id)
    # When its event arrives / Then nothing starts and the error says why
    with pytest.raises(ManifestInvalid, match="has no object version: the artefact bucket must be versioned"):
        start_release(world.deps, "artefacts", KEY, None)
    assert executions(world) == []
    # And nothing is recorded: no release can be keyed without a version (the event goes to the
    # intake's dead-letter queue after Lambda's retries, and its alarm fires)
    assert world.ledger.list_releases() == []


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("releases/support-bot/ce04089 f73fa/model-config.json", "commit segment 'ce04089 f73fa' is not a git commit sha"),
        ("releases/support-bot/ce04089#1/model-config.json", "commit segment 'ce04089#1'"),
        ("releases/support-bot/ce04089:1/model-config.json", "commit segment 'ce04089:1'"),
        ("releases/support-bot/ce04089%201/model-config.json", "commit segment 'ce04089%201'"),
        ("releases/support-bot//model-config.json", "commit segment ''"),
        ("releases/support-bot/c/model-config.json", "commit segment 'c'"),
        ("releases/support-bot/extra/ce04089f/model-config.json", "1 path segment(s) too many"),
    ],
)
def test_an_upload_whose_key_makes_no_release_ends_in_a_final_record_and_starts_nothing(world, key, reason):
    # Given an upload under a key no execution can be named after (or no release can be made of)
    # When its event arrives
    result = start_release(world.deps, "artefacts", key, "v1")
    # Then no execution starts, and the ledger ends it at once: Invalid, with the reason
    assert executions(world) == [] and result["started"] is False and reason in result["reason"]
    record = world.ledger.get(result["release_id"])
    assert record["status"] == "Invalid" and reason in record["reason"] and record["error"] == "ManifestInvalid"
    assert record["service"] == "support-bot" and record["artifact"]["key"] == key  # where the object is
    assert [h["status"] for h in record["history"]] == ["Invalid"]
    assert record["history"][0]["detail"].isprintable()
    # And the lock was never taken
    assert world.ledger.lock_holder("support-bot") is None
    # And a duplicate delivery of the same event changes nothing
    assert start_release(world.deps, "artefacts", key, "v1") == result
    assert world.ledger.get(result["release_id"])["history"] == record["history"]
    # And the refusal is the service's chain record (once, despite the duplicate), saying why it is unsigned
    records, broken, head = LedgerChain(world.ledger.table).read("support-bot")
    assert [(r.kind, r.release_id, r.body["status"]) for r in records] == [
        ("release", result["release_id"], "Invalid")
    ]
    assert verify_chain("support-bot", records, head, broken).intact
    assert release_problems(world.ledger.get(result["release_id"]), records[0]) == []
    assert "refused at intake" in records[0].body["unattested"]


def test_a_refusal_whose_chain_append_died_is_chained_by_the_next_delivery(world):
    # Given a refused upload whose record was written by a delivery that died before chaining it
    key = "releases/support-bot/c/model-config.json"
    start_release(world.deps, "artefacts", key, "v1")
    table = world.ledger.table
    for item in table.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": "CHAIN#support-bot"},
                            ConsistentRead=True)["Items"]:
        table.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
    # When the event is delivered again / Then the refusal is chained
    result = start_release(world.deps, "artefacts", key, "v1")
    records = LedgerChain(table).read("support-bot")[0]
    assert [r.release_id for r in records] == [result["release_id"]]


def test_the_first_context_names_service_commit_and_pinned_artefact():
    # When intake builds a release's first context
    ctx = initial_context("artefacts", KEY, "v1")
    # Then it is what the key and version say, nothing validated yet
    assert (ctx.service, ctx.commit, ctx.branch) == ("support-bot", "ce04089f73fa33b83811a7303831a5d2a7ad8f8e", "")
    assert ctx.artifact.version_id == "v1" and ctx.manifest is None and ctx.policy is None


@pytest.mark.parametrize("key", ["releases/x/model-config.json", "other/svc/abc/model-config.json",
                                 "releases/svc/abc/prompts/system.txt"])
def test_keys_that_are_not_release_manifests_are_refused(key):
    # Given an object key that is not releases/<service>/<commit>/model-config.json
    # When it is parsed / Then it is refused as such
    with pytest.raises(ManifestInvalid, match="not a release manifest key"):
        parse_release_key(key)
