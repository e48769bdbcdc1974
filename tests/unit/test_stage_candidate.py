"""Candidate stage: validate the artefact, take the service's lock (superseding an older
release cleanly), publish the candidate version that pins the release."""

from __future__ import annotations

import hashlib
import json

import pytest
from botocore.exceptions import ClientError

from modelgate.chain import LedgerChain, release_problems, verify_chain
from modelgate.errors import (
    CandidatePublishFailed,
    DecisionConflict,
    ManifestInvalid,
    ServiceNotRegistered,
    Superseded,
)
from modelgate.lease import Lease
from modelgate.manifest import PIN_KEY, PIN_PROMPTS_KEY, PIN_PROMPTS_VERSION, PIN_VERSION
from modelgate.pipeline.candidate import acquire_lock, cancel_release, publish_candidate, validate
from modelgate.pipeline.fencing import Fence
from modelgate.pipeline.intake import initial_context
from modelgate.policy import ReleasePolicy

COMMIT = "a" * 40
PROMPT = b"You are a support bot.\nQ: how do I reset my password? A: Use Settings > Security.\n"


def upload(world, *, model_id="local.retrieval-small-v1:0", prompt=PROMPT, digest=None, upload_prompt=True,
           raw=None, author=None, uploader=None, provenance=None):
    """CI's upload of one release (prompt, then manifest); the context intake starts it with.
    ``author``: the manifest's source.author; ``uploader``: who the upload's metadata says uploaded it."""
    prefix = f"releases/support-bot/{COMMIT}/"
    if upload_prompt:
        world.deps.s3.put_object(Bucket="artefacts", Key=prefix + "prompts/system.txt", Body=prompt)
    source = {"commit": COMMIT, "branch": "main", **({"author": author} if author else {})}
    body = raw if raw is not None else json.dumps({
        "service": "support-bot",
        "model": {"provider": "local", "model_id": model_id},
        "prompts": [{"name": "system", "file": "prompts/system.txt",
                     "sha256": digest or hashlib.sha256(PROMPT).hexdigest()}],
        "source": source,
    })
    metadata = {"modelgate-author": uploader, "modelgate-author-source": "ci"} if uploader else {}
    metadata.update(provenance or {})
    put = world.deps.s3.put_object(Bucket="artefacts", Key=prefix + "model-config.json", Body=body, Metadata=metadata)
    return initial_context("artefacts", prefix + "model-config.json", put["VersionId"])


@pytest.fixture
def registered(world):
    world.register()
    return world


# ---------------------------------------------------------------------- validate
def test_a_good_artefact_is_validated_with_its_policy_and_pinned_prompt_versions(registered):
    # Given a well-formed release of a registered service
    uploaded = upload(registered)
    prompt_version = registered.deps.s3.head_object(
        Bucket="artefacts", Key=f"releases/support-bot/{COMMIT}/prompts/system.txt")["VersionId"]
    # When it is validated
    ctx = validate(registered.deps, uploaded)
    # Then the context carries the manifest, the registered policy and target, the prompt's version
    assert ctx.manifest.model.model_id == "local.retrieval-small-v1:0"
    assert ctx.policy == ReleasePolicy()
    assert ctx.function_name == "test-svc-support-bot" and ctx.alias == "live" and ctx.branch == "main"
    assert ctx.prompt_versions == {"prompts/system.txt": prompt_version}
    assert registered.ledger.get(ctx.release_id)["status"] == "Validated"


def test_the_manifest_is_read_at_its_uploaded_version(registered):
    # Given a release, and a later upload of the same key with another model
    ctx = upload(registered)
    upload(registered, model_id="local.retrieval-large-v1:0")
    # When the first one is validated, Then it is the first upload that is read
    assert validate(registered.deps, ctx).manifest.model.model_id == "local.retrieval-small-v1:0"


def test_an_unpinned_model_is_refused(registered):
    # Given a model id without an explicit version / When validated / Then refused, naming the field
    with pytest.raises(ManifestInvalid, match="model.model_id.*not pinned"):
        validate(registered.deps, upload(registered, model_id="anthropic.claude-latest"))


def test_a_missing_prompt_file_is_named(registered):
    # Given a manifest whose prompt file was never uploaded / When validated / Then the file is named
    with pytest.raises(ManifestInvalid, match=r"prompt 'system': .*prompts/system.txt is missing"):
        validate(registered.deps, upload(registered, upload_prompt=False))


def test_a_prompt_whose_digest_differs_is_named_with_both_digests(registered):
    # Given a manifest that names another digest than the uploaded prompt's
    # When validated / Then both digests are named
    with pytest.raises(ManifestInvalid, match=r"sha256 of .*prompts/system.txt is [0-9a-f]{64}.*0{64}"):
        validate(registered.deps, upload(registered, digest="0" * 64))


def test_malformed_json_is_refused(registered):
    # Given a manifest that is not JSON / When validated / Then refused as invalid
    with pytest.raises(ManifestInvalid, match="is not valid JSON: Expecting property name"):
        validate(registered.deps, upload(registered, raw="{not json"))


def test_a_manifest_uploaded_under_another_service_is_refused(registered):
    # Given a manifest naming support-bot uploaded under another service's prefix
    ctx = upload(registered).model_copy(update={"service": "other-bot"})
    # When validated / Then both names are in the refusal
    with pytest.raises(ManifestInvalid, match="names service 'support-bot' but was uploaded under 'other-bot'"):
        validate(registered.deps, ctx)


def test_an_unregistered_service_is_refused(registered):
    # Given a release of a service whose registration was removed
    registered.client("ssm").delete_parameter(Name="/modelgate/test/services/support-bot")
    # When validated / Then it is refused naming the service
    with pytest.raises(ServiceNotRegistered, match="support-bot"):
        validate(registered.deps, upload(registered))


def test_four_eyes_needs_the_verified_uploader_and_ignores_the_manifests_author(world):
    # Given a policy with four eyes and an upload whose metadata names no author, though its manifest does
    world.register(ReleasePolicy(four_eyes=True))
    # When validated / Then refused: a field anyone editing the folder writes is no identity
    with pytest.raises(ManifestInvalid, match="four eyes.*must name its author"):
        validate(world.deps, upload(world, author="Alice <alice@example.com>"))
    # And uploaded for a CI actor it passes, that actor recorded for the approval's check (not the manifest's)
    ctx = validate(world.deps, upload(world, author="Mallory <mallory@example.com>", uploader="alice"))
    assert world.ledger.get(ctx.release_id)["author"] == "alice" and ctx.author == "alice"


def test_an_uploader_that_is_not_an_identity_is_refused(world):
    world.register(ReleasePolicy(four_eyes=True))
    with pytest.raises(ManifestInvalid, match="modelgate-author metadata .* is not an identity"):
        validate(world.deps, upload(world, uploader="alice\tAccuracy_0.990"))


def test_the_uploads_provenance_is_checked_against_the_manifest_and_recorded(registered):
    from modelgate.manifest import parse_manifest
    from modelgate.upload_metadata import CiEvaluation, metadata_for, release_fingerprint

    # Given an upload whose metadata carries its commit, branch and CI's evaluation of it
    body = registered.deps.s3.get_object  # the manifest as uploaded, to fingerprint it
    ctx = upload(registered)
    manifest = parse_manifest(body(Bucket="artefacts", Key=ctx.artifact.key)["Body"].read())
    ci = CiEvaluation(verdict="pass", accuracy=0.9, cases=40, release=release_fingerprint(manifest))
    ctx = upload(registered, provenance=metadata_for(COMMIT, "main", ci))
    # When validated / Then the ledger records what CI found before uploading
    validate(registered.deps, ctx)
    assert registered.ledger.get(ctx.release_id)["ci_evaluation"] == {
        "verdict": "pass", "accuracy": 0.9, "live_accuracy": None, "cases": 40, "release": ci.release}
    # And metadata saying another branch than the manifest is refused, naming both
    with pytest.raises(ManifestInvalid, match="modelgate-branch metadata is 'release' but the manifest names branch 'main'"):
        validate(registered.deps, upload(registered, provenance=metadata_for(COMMIT, "release", None)))


@pytest.mark.parametrize(
    ("verdict", "fingerprint", "refusal"),
    [
        (None, None, "requires a passing CI evaluation \\(require_ci_evaluation\\) and the upload carries none"),
        ("fail", None, "CI's evaluation of this artefact failed its gate \\(accuracy 0.4 over 40 case\\(s\\)\\)"),
        ("pass", "0" * 64, "evaluation metadata is of another release"),
        ("pass", None, None),
    ],
)
def test_a_policy_requiring_ci_evaluation_takes_only_a_passing_one_of_this_artefact(world, verdict, fingerprint,
                                                                                   refusal):
    from modelgate.manifest import parse_manifest
    from modelgate.upload_metadata import CiEvaluation, metadata_for, release_fingerprint

    # Given a service that requires CI's passing evaluation, and an upload carrying (or not) one
    world.register(ReleasePolicy(require_ci_evaluation=True))
    plain = upload(world)
    manifest = parse_manifest(world.deps.s3.get_object(Bucket="artefacts", Key=plain.artifact.key)["Body"].read())
    ci = None if verdict is None else CiEvaluation(
        verdict=verdict, accuracy=0.9 if verdict == "pass" else 0.4, cases=40,
        release=fingerprint or release_fingerprint(manifest))
    ctx = upload(world, provenance=metadata_for(COMMIT, "main", ci))
    # When validated / Then it is refused naming what is missing or wrong, or accepted saying what passed
    if refusal:
        with pytest.raises(ManifestInvalid, match=refusal):
            validate(world.deps, ctx)
    else:
        validate(world.deps, ctx)
        assert "CI's evaluation passed (accuracy 0.9 over 40 case(s))" in \
            world.ledger.get(ctx.release_id)["history"][-1]["detail"]


def test_without_the_policy_an_upload_without_ci_evaluation_is_accepted(registered):
    assert ReleasePolicy().require_ci_evaluation is False
    validate(registered.deps, upload(registered))


class CountingS3:
    """The stages' S3 client, counting the object reads they make (GetObject per key)."""

    def __init__(self, real):
        self.real, self.reads = real, []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get_object(self, **kwargs):
        self.reads.append(kwargs["Key"])
        return self.real.get_object(**kwargs)


def test_a_manifest_over_the_size_cap_is_refused_before_a_byte_of_it_is_read(registered):
    # Given a manifest padded to 3 MB
    padded = json.dumps({"service": "support-bot", "padding": " " * 3_000_000})
    ctx = upload(registered, raw=padded)
    s3 = registered.use("s3", CountingS3(registered.client("s3")))
    # When validated / Then refused by its size (HeadObject), and GetObject never read it
    with pytest.raises(ManifestInvalid, match=r"is 3,000,\d+ bytes; a manifest may be at most 262,144 bytes"):
        validate(registered.deps, ctx)
    assert s3.reads == []


def prompt_upload(world, prompt: bytes):
    return upload(world, prompt=prompt, digest=hashlib.sha256(prompt).hexdigest())


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        (b"", r"prompt 'system': releases/support-bot/a+/prompts/system.txt is empty \(0 bytes\)"),
        (b" \n\t\n", r"prompt 'system' \(prompts/system.txt\) has no text \(4 bytes, all blank\)"),
        (b"Answer {question", r"prompt 'system' \(prompts/system.txt\) is not a valid template"),
        (b"Answer {0} and {question}", r"has placeholder \{0\}: only plain \{name\} placeholders"),
        (b"Answer {question!r}", r"has placeholder \{question!r\}"),
        (b"Answer {user.name}", r"has placeholder \{user.name\}"),
        (b"\xff\xfe not utf-8", r"prompt 'system' \(prompts/system.txt\) is not UTF-8"),
    ],
)
def test_a_prompt_the_renderer_would_refuse_fails_validate_before_any_evaluation(registered, prompt, reason):
    # Given a prompt file whose digest matches, but that inference could never render
    # When validated / Then it is refused at Validate, naming the prompt and why
    ctx = prompt_upload(registered, prompt)
    with pytest.raises(ManifestInvalid, match=reason):
        validate(registered.deps, ctx)
    assert registered.ledger.get(ctx.release_id) is None  # never recorded Validated


def test_a_prompt_over_its_size_cap_is_refused_before_it_is_read(registered):
    from modelgate.manifest import MAX_PROMPT_BYTES

    ctx = prompt_upload(registered, b"x" * (MAX_PROMPT_BYTES + 1))
    s3 = registered.use("s3", CountingS3(registered.client("s3")))
    with pytest.raises(ManifestInvalid, match=f"is {MAX_PROMPT_BYTES + 1:,} bytes; at most {MAX_PROMPT_BYTES:,}"):
        validate(registered.deps, ctx)
    assert s3.reads == [ctx.artifact.key]  # the manifest only


def test_a_prompt_s3_refuses_to_describe_is_a_manifest_problem_naming_it(registered):
    # Given S3 answering 403 for a prompt (as it does for a missing key without s3:ListBucket)
    ctx = upload(registered)

    class Forbidden(CountingS3):
        def head_object(self, **kwargs):
            if kwargs["Key"].endswith("system.txt"):
                raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")
            return self.real.head_object(**kwargs)

    registered.use("s3", Forbidden(registered.client("s3")))
    # When validated / Then refused as a manifest problem, naming the file and the code
    with pytest.raises(ManifestInvalid, match=r"prompt 'system': .*prompts/system.txt can't be read \(403\)"):
        validate(registered.deps, ctx)


def test_the_prompt_read_is_the_version_its_size_was_checked_at(registered):
    # Given a release, and a later upload of a different prompt under the same key
    ctx = upload(registered)
    first = registered.deps.s3.head_object(Bucket="artefacts", Key=f"releases/support-bot/{COMMIT}/prompts/system.txt")
    # When validated / Then the version that was checked is the version pinned
    assert validate(registered.deps, ctx).prompt_versions == {"prompts/system.txt": first["VersionId"]}


def test_a_model_outside_the_policys_allow_list_is_refused_naming_both(world):
    # Given a service whose policy allows Claude 3.5 Haiku and local models only
    world.register(ReleasePolicy(allowed_models=["anthropic.claude-3-5-haiku-*", "local.*"]))
    # When a release of another Bedrock model is validated / Then refused, naming the model and the list
    with pytest.raises(
        ManifestInvalid,
        match=r"model 'anthropic.claude-3-opus-20240229-v1:0' is not in support-bot's model allow list "
        r"\(allowed_models: 'anthropic.claude-3-5-haiku-\*', 'local.\*'\)",
    ):
        validate(world.deps, upload(world, model_id="anthropic.claude-3-opus-20240229-v1:0"))
    # And a model the list matches passes
    assert validate(world.deps, upload(world)).manifest.model.model_id == "local.retrieval-small-v1:0"


def test_the_key_commit_must_abbreviate_the_manifests_commit(registered):
    # Given a manifest for commit aaaa... uploaded under an abbreviation of another commit
    ctx = upload(registered).model_copy(update={"commit": "abcdef0"})
    # When validated / Then refused, naming both
    with pytest.raises(ManifestInvalid, match=f"names commit {COMMIT} but was uploaded under abcdef0"):
        validate(registered.deps, ctx)
    # And an abbreviation of its own commit is the same commit
    assert validate(registered.deps, upload(registered).model_copy(update={"commit": COMMIT[:7]})).manifest


# ---------------------------------------------------------------------- acquire_lock
def in_flight(world, release_id, **fields):
    """A release the ledger knows, received and still running."""
    world.ledger.receive(release_id, "manifest uploaded", service="support-bot", commit="c0ffee0",
                         artifact={"bucket": "artefacts", "key": f"releases/support-bot/{release_id}/model-config.json",
                                   "version_id": "v"})
    if fields:
        world.ledger.set_fields(release_id, **fields)


def test_a_free_service_lock_is_taken(world):
    # Given a service nobody releases
    ctx = world.context()
    # When a release acquires the lock
    acquire_lock(world.deps, ctx)
    # Then it holds it, and the ledger says so
    assert world.ledger.lock_holder("support-bot") == ctx.release_id
    assert world.ledger.get(ctx.release_id)["status"] == "Locked"


def test_a_newer_release_supersedes_the_one_in_flight(world):
    # Given an older release holding the lock, then a newer one arriving
    in_flight(world, "support-bot-older-1")
    world.ledger.acquire_lock("support-bot", "support-bot-older-1", 3600)
    in_flight(world, "support-bot-newer-2")
    # When the newer one acquires the lock
    acquire_lock(world.deps, world.context("support-bot-newer-2"))
    # Then the older one is superseded, naming its successor, and the newer one holds the lock
    older = world.ledger.get("support-bot-older-1")
    assert older["status"] == "Superseded" and "support-bot-newer-2" in older["reason"]
    assert world.ledger.lock_holder("support-bot") == "support-bot-newer-2"


def test_an_older_artefact_arriving_late_is_itself_superseded(world):
    # Given a release of an older artefact whose record predates the newer one in flight
    in_flight(world, "support-bot-older-1")
    in_flight(world, "support-bot-newer-2")
    world.ledger.acquire_lock("support-bot", "support-bot-newer-2", 3600)
    # When the older one tries to take the lock / Then it is superseded and the newer one keeps it
    with pytest.raises(Superseded, match="support-bot-newer-2 .* is newer and already in flight"):
        acquire_lock(world.deps, world.context("support-bot-older-1"))
    assert world.ledger.lock_holder("support-bot") == "support-bot-newer-2"
    assert world.ledger.get("support-bot-newer-2")["status"] == "Received"


def test_a_lock_left_by_a_release_that_already_ended_is_taken_over(world):
    # Given a release that ended (superseded) but still holds the lock, its lease running
    in_flight(world, "support-bot-ended-1")
    world.ledger.acquire_lock("support-bot", "support-bot-ended-1", 3600)
    world.ledger.record("support-bot-ended-1", "Superseded", "superseded by support-bot-other-2")
    # When a newer release acquires the lock
    acquire_lock(world.deps, world.context())
    # Then it holds it: nothing is running that the lock protects
    assert world.ledger.lock_holder("support-bot") == world.context().release_id


# ---------------------------------------------------------------------- supersede (cancel_release)
@pytest.fixture
def canary_in_flight(world):
    """A release baking a 10% canary: its execution running, alarms and tokens kept, lock held."""
    world.service_function()
    candidate = world.publish("support-bot-older-1")
    world.canary(stable="1", candidate=candidate)
    alarm = world.put_alarm("test-canary-support-bot-older-1-errors")
    execution = world.sfn.start_execution(
        stateMachineArn=world.settings.state_machine_arn, name="support-bot-older-1", input="{}"
    )["executionArn"]
    in_flight(world, "support-bot-older-1", execution_arn=execution, function_name="test-svc-support-bot",
              alias="live", live_version="1", candidate_version=candidate, canary_alarms=[alarm])
    world.ledger.put_alarm_owner(alarm, "support-bot-older-1", "support-bot")
    world.ledger.put_token("support-bot-older-1", "approval", "approval-token")
    world.ledger.put_token("support-bot-older-1", "bake", "bake-token")
    world.ledger.acquire_lock("support-bot", "support-bot-older-1", 3600)
    return execution


def taken_over(world, holder: str, owner: str) -> Fence:
    """``owner`` took the service's lease over from ``holder`` (as a canceller does first)."""
    generation = world.ledger.take_over_lock("support-bot", holder, owner, 3600)
    return Fence(world.deps, Lease("support-bot", owner, generation))


def test_superseding_a_canary_undoes_everything_it_moved(world, canary_in_flight):
    # When the release is cancelled as superseded by a newer one that took its lease
    fence = taken_over(world, "support-bot-older-1", "support-bot-newer-2")
    record = cancel_release(world.deps, "support-bot-older-1", "Superseded", "superseded by support-bot-newer-2",
                            fence=fence)
    # Then its execution is stopped with that reason
    stopped = world.sfn.describe_execution(executionArn=canary_in_flight)
    assert stopped["status"] == "ABORTED"
    # And its canary traffic is back on the live version
    assert world.alias() == ("1", {})
    # And its alarms, their ownership and its task tokens are gone
    assert world.alarm_names() == []
    assert world.ledger.alarm_owner("test-canary-support-bot-older-1-errors") is None
    assert world.ledger.get_token("support-bot-older-1", "approval") is None
    assert world.ledger.get_token("support-bot-older-1", "bake") is None
    # And the newer release holds the lease, the ledger saying why and what was undone
    assert world.ledger.lock_holder("support-bot") == "support-bot-newer-2"
    assert record["status"] == "Superseded" and record["reason"] == "superseded by support-bot-newer-2"
    assert "returned to version 1" in record["history"][-1]["detail"]


def test_superseding_twice_changes_nothing_more(world, canary_in_flight):
    # Given a release already superseded
    fence = taken_over(world, "support-bot-older-1", "support-bot-newer-2")
    first = cancel_release(world.deps, "support-bot-older-1", "Superseded", "superseded by support-bot-newer-2",
                           fence=fence)
    # And the service moved on since (the newer release shifts traffic)
    world.canary(stable="1", candidate=world.publish("support-bot-newer-2"))
    # When it is cancelled again
    second = cancel_release(world.deps, "support-bot-older-1", "Superseded", "superseded again", fence=fence)
    # Then nothing is recorded or undone twice
    assert second == first
    assert world.ledger.lock_holder("support-bot") == "support-bot-newer-2"
    assert world.alias()[1] == {"3": 0.1}


def test_a_superseded_release_is_chained_once_and_says_why_it_is_not_attested(world, canary_in_flight):
    # Given a release superseded in flight (its execution stopped: no Attest step of its own runs)
    fence = taken_over(world, "support-bot-older-1", "support-bot-newer-2")
    record = cancel_release(world.deps, "support-bot-older-1", "Superseded", "superseded by support-bot-newer-2",
                            fence=fence)
    # Then its end is the service's chain record, holding what the ledger says, intact
    records, broken, head = LedgerChain(world.ledger.table).read("support-bot")
    assert [(r.kind, r.release_id) for r in records] == [("release", "support-bot-older-1")]
    assert verify_chain("support-bot", records, head, broken).intact
    assert release_problems(world.ledger.get("support-bot-older-1"), records[0]) == []
    assert records[0].body["status"] == "Superseded" and "nothing is signed" in records[0].body["unattested"]
    assert record["unattested"] == records[0].body["unattested"]
    # And cancelling it again (a retried canceller) appends nothing
    cancel_release(world.deps, "support-bot-older-1", "Superseded", "again", fence=fence)
    assert len(LedgerChain(world.ledger.table).read("support-bot")[0]) == 1


def test_a_cancel_that_died_before_its_chain_append_is_chained_by_the_retry(world, canary_in_flight):
    # Given a canceller that recorded Superseded and died before appending the chain record
    fence = taken_over(world, "support-bot-older-1", "support-bot-newer-2")
    world.ledger.record("support-bot-older-1", "Superseded", "superseded by support-bot-newer-2",
                        unattested="Superseded in flight (its execution was stopped before a closing step)")
    assert LedgerChain(world.ledger.table).read("support-bot")[0] == []
    # When the cancel is retried / Then the release is chained
    cancel_release(world.deps, "support-bot-older-1", "Superseded", "again", fence=fence)
    records = LedgerChain(world.ledger.table).read("support-bot")[0]
    assert [(r.release_id, r.body["status"]) for r in records] == [("support-bot-older-1", "Superseded")]


def test_a_release_that_ended_by_its_own_steps_is_not_chained_by_a_cancel(world, canary_in_flight):
    # Given a release its own last step already ended (its Attest chains it, not the canceller)
    world.ledger.record("support-bot-older-1", "RolledBack", "alarm")
    fence = taken_over(world, "support-bot-older-1", "support-bot-newer-2")
    # When it is cancelled / Then the cancel changes nothing and appends nothing
    assert cancel_release(world.deps, "support-bot-older-1", "Superseded", "x", fence=fence)["status"] == "RolledBack"
    assert LedgerChain(world.ledger.table).read("support-bot")[0] == []


def test_cancelling_a_release_the_ledger_does_not_know_is_a_conflict(world):
    fence = Fence(world.deps, Lease("support-bot", "support-bot-newer-2", None))
    with pytest.raises(DecisionConflict, match="no release support-bot-nope in the ledger"):
        cancel_release(world.deps, "support-bot-nope", "Superseded", "x", fence=fence)


def test_a_cancel_the_superseder_did_not_finish_is_finished_by_the_leases_holder(world, canary_in_flight):
    # Given a newer release that took the older one's lease over and died before cancelling it
    in_flight(world, "support-bot-newer-2")
    taken_over(world, "support-bot-older-1", "support-bot-newer-2")
    assert world.ledger.owed_cleanups("support-bot") == ["support-bot-older-1"]
    # When its AcquireLock is retried
    ctx = acquire_lock(world.deps, world.context("support-bot-newer-2"))
    # Then the older release is cancelled after all, and nothing is owed any more
    assert world.ledger.get("support-bot-older-1")["status"] == "Superseded"
    assert world.alias() == ("1", {}) and world.alarm_names() == []
    lease = world.ledger.lease("support-bot")
    assert lease["release_id"] == "support-bot-newer-2" and "cleanup" not in lease
    assert ctx.lease_generation == lease["generation"] == 2


def test_a_release_whose_execution_is_gone_is_still_cancelled(world):
    # Given a release whose execution no longer exists, before any traffic moved
    missing = world.settings.state_machine_arn.replace(":stateMachine:", ":execution:") + ":gone"
    in_flight(world, "support-bot-older-1", execution_arn=missing)
    world.ledger.acquire_lock("support-bot", "support-bot-older-1", 3600)
    # When it is cancelled / Then it is recorded all the same
    fence = taken_over(world, "support-bot-older-1", "support-bot-newer-2")
    record = cancel_release(world.deps, "support-bot-older-1", "Superseded", "superseded by x", fence=fence)
    assert record["status"] == "Superseded"


# ---------------------------------------------------------------------- publish_candidate
def test_the_candidate_version_pins_the_release_and_the_alias_does_not_move(world):
    # Given the service's live version 1 and a validated release
    world.service_function()
    ctx = world.context()
    # When the candidate is published
    out = publish_candidate(world.deps, ctx)
    # Then a new version pins the manifest's and the prompts' exact object versions
    assert (out.candidate_version, out.live_version) == ("2", "1")
    pinned = world.environment("2")
    assert pinned[PIN_KEY] == ctx.artifact.key and pinned[PIN_VERSION] == "mv1"
    assert pinned[PIN_PROMPTS_KEY] == f"reports/{ctx.service}/{ctx.release_id}/prompt-pin.json"
    pin = world.deps.s3.get_object(Bucket=ctx.artifact.bucket, Key=pinned[PIN_PROMPTS_KEY], VersionId=pinned[PIN_PROMPTS_VERSION])
    assert json.loads(pin["Body"].read()) == {
        "manifest": {"key": ctx.artifact.key, "version_id": "mv1"},
        "prompt_versions": {"prompts/system.txt": "pv1"},
    }
    # And live still serves version 1 alone; the ledger records both versions
    assert world.alias() == ("1", {})
    record = world.ledger.get(ctx.release_id)
    assert (record["status"], record["candidate_version"], record["live_version"]) == ("CandidatePublished", "2", "1")


def test_publishing_refuses_an_alias_with_leftover_weights(world):
    # Given an alias still routing 10% to a version an earlier release left behind
    world.service_function()
    world.canary(stable="1", candidate=world.publish("a-dead-release"))
    # When a candidate is published / Then it is refused, naming the weights, and nothing is published
    with pytest.raises(CandidatePublishFailed, match=r"still routes \{'2': 0.1\} besides version 1"):
        publish_candidate(world.deps, world.context())
    assert world.versions() == ["$LATEST", "1", "2"]


def test_publishing_again_reuses_the_release_version(world):
    # Given a candidate already published for this release (a retried task)
    world.service_function()
    first = publish_candidate(world.deps, world.context())
    # When it is published again
    again = publish_candidate(world.deps, world.context())
    # Then the same version is returned and no other is published
    assert again.candidate_version == first.candidate_version == "2"
    assert world.versions() == ["$LATEST", "1", "2"]
