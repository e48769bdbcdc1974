"""Every path through the release pipeline, on the real ASL and template.

Each ends with a ledger record that says what happened and why, and leaves the live alias
untouched unless the release was promoted. They share one stack per module
(``shared_live_v2``: live serves v2, each test leaves it so); the first release, which needs a
stack of its own, is in test_first_release.py: a module's shared stack stays up between its
tests, and a process runs one embedded AWS at a time.
"""

from __future__ import annotations

import json

import pytest
from modelgate_harness.driver import ReleaseRun
from modelgate_harness.polling import wait_until

from modelgate.errors import DecisionConflict
from modelgate.manifest import release_id_for


def test_worse_prompt_fails_the_gate_and_live_is_untouched(shared_live_v2):
    pipeline = shared_live_v2
    live_before, _ = pipeline.live()
    versions_before = pipeline.versions()
    run = pipeline.release("v3")
    assert run.execution["status"] == "FAILED"
    assert run.execution.get("error") == "GateFailed"
    assert run.path[-4:] == ["Gate", "RecordOutcome", "AttestEnd", "ReleaseFailed"]
    assert run.status == "GateFailed"
    assert "accuracy_drop" in run.record["reason"] and "pts allowed" in run.record["reason"]
    assert [c for c in run.record["gate"]["criteria"] if c["name"] == "accuracy_drop"][0]["verdict"] == "fail"
    assert pipeline.live() == (live_before, {})
    # the candidate was published (and stays unused), nothing else moved
    assert len(pipeline.versions()) == len(versions_before) + 1
    assert pipeline.control.ledger().lock_holder("support-bot") is None


def test_canary_alarm_from_real_errors_rolls_back(shared_live_v2):
    pipeline = shared_live_v2
    # An alarm on the first failed canary request, and a bake long enough that only that
    # alarm can end it: the outcome can't depend on how many requests a busy machine
    # sends per (scaled) alarm period.
    pipeline.set_policy(
        approval="manual", min_canary_invocations=3, bake_seconds=100_000,
        canary_alarms=[{"name": "errors", "metric": "Errors", "statistic": "Sum", "threshold": 1}],
    )
    live_before, _ = pipeline.live()
    traffic = pipeline.traffic()
    traffic.start()
    try:
        run = pipeline.release("v4")
    finally:
        traffic.stop()
    assert run.status == "RolledBack"
    assert run.execution.get("error") == "CanaryAlarm"
    assert "Bake" in run.path and "CheckCanary" not in run.path
    assert run.path[-3:] == ["Rollback", "AttestEnd", "ReleaseFailed"]
    assert "-canary-" in run.record["reason"] and "in ALARM" in run.record["reason"]
    # the candidate really failed live requests; the alias is exactly as it was
    assert traffic.stats[run.record["candidate_version"]]["error"] >= 1
    assert pipeline.live() == (live_before, {})
    assert not [a for a in pipeline.alarms() if "-canary-" in a]


def test_canary_without_traffic_is_not_enough_evidence(shared_live_v2):
    pipeline = shared_live_v2
    live_before, _ = pipeline.live()
    run = pipeline.release("v4")  # nobody calls the service during the bake
    assert run.status == "RolledBack"
    assert run.execution.get("error") == "NotEnoughEvidence"
    # the judge asked for more (the policy waits twice), then gave up: never a pass
    assert run.path.count("CheckCanary") == 3 and run.path.count("Bake") == 3
    assert "Promote" not in run.path
    assert "no invocations on candidate" in run.record["reason"]
    assert "not_enough_evidence" in run.record["reason"]
    assert pipeline.live() == (live_before, {})


def test_rejected_release_records_who_and_why(shared_live_v2):
    pipeline = shared_live_v2
    live_before, _ = pipeline.live()
    run = pipeline.release("v4", decision="reject", comment="tier variable not rolled out yet")
    assert run.status == "Rejected"
    assert run.execution.get("error") == "ApprovalRejected"
    assert "tier variable not rolled out yet" in run.record["reason"]
    assert run.record["approval"]["decision"] == "reject"
    assert pipeline.live() == (live_before, {})
    with pytest.raises(DecisionConflict):
        pipeline.driver.decide(run, "approve")


def test_approval_timeout_rejects_with_that_reason(shared_live_v2):
    pipeline = shared_live_v2
    pipeline.set_policy(approval_timeout_seconds=300)  # 0.6 s at the tests' time factor
    live_before, _ = pipeline.live()
    run = pipeline.release("v4", decision=None)
    assert run.status == "ApprovalTimedOut"
    assert run.path[-5:] == ["WaitForApproval", "ApprovalTimedOut", "RecordOutcome", "AttestEnd", "ReleaseFailed"]
    assert "timeout" in run.record["reason"]
    assert pipeline.live() == (live_before, {})
    # the token is gone with the timeout: a late approval is refused
    with pytest.raises(DecisionConflict):
        pipeline.driver.decide(run, "approve")


def test_malformed_manifest_is_refused_before_anything_is_published(shared_live_v2):
    pipeline = shared_live_v2
    EXAMPLES, commit_for = pipeline.examples, pipeline.commit_for
    live_before = pipeline.live()
    # Given an artefact uploaded around the CLI's own checks, with an unpinned model id
    manifest = json.loads((EXAMPLES / "v1" / "model-config.json").read_text())
    manifest["model"]["model_id"] = "anthropic.claude-latest"
    commit = commit_for("bad")
    manifest["source"]["commit"] = commit
    s3 = pipeline.control.client("s3")
    prefix = f"releases/support-bot/{commit}/"
    s3.put_object(Bucket=pipeline.control.bucket, Key=prefix + "prompts/system.txt",
                  Body=(EXAMPLES / "v1" / "prompts" / "system.txt").read_bytes())
    versions_before = pipeline.versions()
    put = s3.put_object(Bucket=pipeline.control.bucket, Key=prefix + "model-config.json", Body=json.dumps(manifest))
    release_id = release_id_for("support-bot", commit, prefix + "model-config.json", put["VersionId"])
    ledger = pipeline.control.ledger()
    record = wait_until(lambda: (r := ledger.get(release_id)) and r.get("execution_arn") and r,
                        pipeline.driver.timeout, "intake")
    run = pipeline.driver.finish(ReleaseRun(release_id, record["execution_arn"]))
    # Then it ends Invalid, naming the problem, with nothing published and live untouched
    assert run.status == "Invalid"
    assert run.path == ["Validate", "RecordOutcome", "AttestEnd", "ReleaseFailed"]
    assert "model.model_id" in run.record["reason"] and "not pinned" in run.record["reason"]
    assert pipeline.versions() == versions_before
    assert pipeline.live() == live_before


def test_a_duplicate_upload_event_starts_no_second_release(shared_live_v2):
    pipeline = shared_live_v2
    EXAMPLES, commit_for = pipeline.examples, pipeline.commit_for
    pipeline.set_policy(approval_timeout_seconds=300)
    sfn = pipeline.control.client("stepfunctions")
    machine = pipeline.control.outputs["ReleasePipelineArn"]
    names_before = {e["name"] for e in sfn.list_executions(stateMachineArn=machine, maxResults=1000)["executions"]}
    run = pipeline.driver.submit(EXAMPLES / "v1", commit=commit_for("v1-duplicate"))
    record = pipeline.control.ledger().get(run.release_id)
    artifact = record["artifact"]
    event = json.loads((EXAMPLES.parents[1] / "events" / "intake" / "manifest-uploaded.json").read_text())
    event["detail"]["bucket"]["name"] = artifact["bucket"]
    event["detail"]["object"].update({"key": artifact["key"], "version-id": artifact["version_id"]})
    result = pipeline.local.invoke("IntakeFunction", event)
    assert result == {"release_id": run.release_id, "started": False, "reason": "already started"}
    executions = sfn.list_executions(stateMachineArn=machine, maxResults=1000)["executions"]
    assert [e["name"] for e in executions if e["name"] not in names_before] == [run.release_id]
    pipeline.driver.finish(run)


def test_an_alarm_during_the_final_bake_rolls_back(shared_live_v2):
    # Given a release in its final bake (99.99%, rollback still armed)
    pipeline = shared_live_v2
    pipeline.set_policy(approval="auto", post_promotion_watch_seconds=50_000, min_canary_invocations=1)
    live_before, _ = pipeline.live()
    traffic = pipeline.traffic()
    traffic.start()
    try:
        run = pipeline.driver.submit(pipeline.examples / "v2", commit=pipeline.commit_for("v2-watch"))
        ledger = pipeline.control.ledger()
        wait_until(lambda: any(h["status"] == "Watching" for h in (ledger.get(run.release_id) or {}).get("history", []))
                   and ledger.get(run.release_id)["status"] == "Baking", pipeline.driver.timeout, "the watch")
        candidate = ledger.get(run.release_id)["candidate_version"]
        assert pipeline.live() == (live_before, {candidate: 0.9999})  # the alias still weighted
        # When its canary alarm fires during the watch
        name = ledger.get(run.release_id)["canary_alarms"][0]
        pipeline.control.client("cloudwatch").set_alarm_state(
            AlarmName=name, StateValue="ALARM", StateReason="errors after promotion")
        run = pipeline.driver.finish(run)
    finally:
        traffic.stop()
    # Then it is rolled back to the version live before it, at once
    assert run.status == "RolledBack" and run.execution.get("error") == "CanaryAlarm"
    assert "Promote" not in run.path and run.path.count("ShiftTraffic") == 2
    assert pipeline.live() == (live_before, {})
