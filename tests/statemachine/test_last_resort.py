"""The last resort: when the step that ends a release (RecordOutcome, Rollback) fails for
good, the state machine still ends the release without it.

The step is broken the way a bad deploy breaks it: its function loses LEDGER_TABLE, so its
handler fails at start (ConfigurationError). The last resort then writes the ledger and the
lock directly (DynamoDB) and alerts the approvers' topic (SNS): no Lambda involved. Then,
like every ended release, the release is chained and attested (LastResortAttest, the Attest
function: a separate function from the broken one).

The tests share one stack (``shared_pipeline``): each breaks the function it needs broken and
has it mended after it (``broken``), reads the alerts of a queue of its own, and runs releases
of its own commits.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import HANG_GUARD_SECONDS
from modelgate_emulator.stepfunctions import execution_history
from modelgate_harness import cli
from modelgate_harness.driver import ReleaseRun, wait_until
from modelgate_harness.trail import verify_release

from modelgate.chain import LedgerChain

LAST_RESORT = ["LastResortRecord", "LastResortUnlock", "LastResortAlert", "LastResortAttest", "LastResortFailed"]
# the ledger read before the last resort (a record the failing step did not close leads to it)
OUTCOME_NOT_RECORDED = ["CheckRecorded", "RecordedAnyway", "OutcomeStepFailed"]
ROLLBACK_NOT_RECORDED = ["CheckRolledBack", "RolledBackAnyway", "RollbackStepFailed"]


@pytest.fixture
def broken(shared_pipeline):
    """``broken(logical_id)`` deploys the function without LEDGER_TABLE: every invocation fails at
    start (a changed environment is a new execution environment, as on AWS, so the module's warm
    ones don't hide it). The test's pipeline; each function broken is mended after the test."""
    pipeline = shared_pipeline
    lambda_ = pipeline.control.client("lambda")
    mended: dict[str, dict] = {}

    def break_function(logical_id: str):
        name = pipeline.local.stack.function_name(logical_id)
        variables = lambda_.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
        mended.setdefault(name, dict(variables))
        del variables["LEDGER_TABLE"]
        lambda_.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
        return pipeline

    yield break_function
    for name, variables in mended.items():
        lambda_.update_function_configuration(FunctionName=name, Environment={"Variables": variables})


def attempts(pipeline, run: ReleaseRun, state: str) -> int:
    """How many times the state's task was scheduled (1 + its retries)."""
    events = execution_history(pipeline.control.client("stepfunctions"), run.execution_arn)
    count, inside = 0, False
    for event in events:
        if "stateEnteredEventDetails" in event:
            inside = event["stateEnteredEventDetails"]["name"] == state
        elif inside and event["type"] == "TaskScheduled":
            count += 1
    return count


@pytest.fixture
def alerts(shared_pipeline, request):
    """What reaches the approvers' topic from the test on: an SQS queue of the test's own subscribed
    to it, read on demand (unsubscribed and deleted after the test)."""
    pipeline = shared_pipeline
    sqs, sns = pipeline.control.client("sqs"), pipeline.control.client("sns")
    queue_name = "approvers-inbox-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscription = sns.subscribe(TopicArn=pipeline.local.stack.outputs["ApprovalTopicArn"], Protocol="sqs",
                                 Endpoint=queue_arn, ReturnSubscriptionArn=True)["SubscriptionArn"]
    received: list[dict] = []

    def read() -> list[dict]:
        while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            received.extend(json.loads(m["Body"]) for m in messages)
            sqs.delete_message_batch(
                QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            )
        return [m for m in received if "last resort" in m.get("Subject", "")]

    yield read
    sns.unsubscribe(SubscriptionArn=subscription)
    sqs.delete_queue(QueueUrl=queue_url)


def test_a_failing_outcome_step_still_closes_the_release_frees_the_lock_and_alerts(broken, alerts):
    # Given RecordOutcome is broken, and a release the gate will stop (after it took the lock)
    pipeline = broken("RecordOutcomeFunction")
    pipeline.set_policy(min_cases=100_000)  # inconclusive: fails closed
    live_before = pipeline.live()
    # When the release runs
    run = pipeline.driver.release(pipeline.examples / "v1", commit=pipeline.commit_for("v1 outcome fails"))
    # Then the outcome step was tried once (its own failure is not transient) and the last resort ran
    assert run.path[-10:] == ["Gate", "RecordOutcome", *OUTCOME_NOT_RECORDED, *LAST_RESORT]
    assert attempts(pipeline, run, "RecordOutcome") == 1
    assert run.execution["status"] == "FAILED" and run.execution.get("error") == "RecordOutcomeFailed"
    # And the ledger record is final, saying the outcome step failed and how the release was ending
    assert run.status == "Failed"
    assert run.record["reason"].startswith("the outcome step failed: RecordOutcome ended with ConfigurationError,")
    assert "GateFailed" in run.record["reason"]
    assert run.record["error"] == "RecordOutcomeFailed"
    assert run.record["history"][-1]["actor"] == "state machine (last resort)"
    # And the lock is free, the live alias untouched, and humans were told
    assert pipeline.control.ledger().lock_holder("support-bot") is None
    assert pipeline.live() == live_before
    (alert,) = wait_until(alerts, HANG_GUARD_SECONDS, "the last-resort alert")
    assert run.release_id in alert["Message"] and "its RecordOutcome step failed" in alert["Message"]
    # And the release is chained with the status the last resort wrote, and verifies (chain and attestation)
    records = [r for r in LedgerChain(pipeline.control.ledger().table).read("support-bot")[0]
               if r.release_id == run.release_id]
    assert [(r.kind, r.body["status"], r.body["error"]) for r in records] == [("release", "Failed", "RecordOutcomeFailed")]
    report = verify_release(pipeline.control, run.release_id)
    assert report.ok, report.lines()


def test_the_last_resort_never_overwrites_a_final_status(broken, alerts):
    # Given RecordOutcome is broken and a release the approver rejects (the decision is final)
    pipeline = broken("RecordOutcomeFunction")
    run = pipeline.driver.release(pipeline.examples / "v1", commit=pipeline.commit_for("v1 rejected"),
                                  decision="reject", comment="not this one")
    # Then the last resort ran (the decision's status is not RecordOutcome's write), kept the
    # decision's status, and still freed the lock and alerted
    assert run.path[-9:] == ["RecordOutcome", *OUTCOME_NOT_RECORDED, *LAST_RESORT]
    assert run.execution.get("error") == "RecordOutcomeFailed"
    assert run.status == "Rejected"
    assert all(entry["actor"] != "state machine (last resort)" for entry in run.record["history"])
    assert pipeline.control.ledger().lock_holder("support-bot") is None
    (alert,) = wait_until(alerts, HANG_GUARD_SECONDS, "the last-resort alert")
    assert "ConditionalCheckFailed" in alert["Message"]  # what the last resort saw: the status was kept


def test_the_last_resort_leaves_another_releases_lock_alone(broken, alerts):
    # Given RecordOutcome is broken, another release holds the service's lock, and the
    # service is not registered any more (so this release fails at Validate, lockless;
    # the registration is put back after the test, the other lock freed)
    pipeline = broken("RecordOutcomeFunction")
    ledger = pipeline.control.ledger()
    ledger.acquire_lock("support-bot", "another-release", lease_seconds=3600)
    try:
        pipeline.control.client("ssm").delete_parameter(Name=pipeline.control.outputs["ServicesPrefix"] + "support-bot")
        # When the release runs
        run = pipeline.driver.release(pipeline.examples / "v1", commit=pipeline.commit_for("v1 unregistered"))
        # Then it is closed by the last resort, and the other release's lock is still there
        assert run.path == ["Validate", "RecordOutcome", *OUTCOME_NOT_RECORDED, *LAST_RESORT]
        assert run.status == "Failed" and "ending with ServiceNotRegistered" in run.record["reason"]
        assert ledger.lock_holder("support-bot") == "another-release"
        (alert,) = wait_until(alerts, HANG_GUARD_SECONDS, "the last-resort alert")
        assert "unlock_error" in alert["Message"]  # the conditional delete refused, as it should
    finally:
        ledger.release_lock("support-bot", "another-release")


def test_a_failing_rollback_ends_rollback_failed_alerts_and_the_command_it_names_restores_live(
    broken, alerts, monkeypatch, capsys
):
    # Given Rollback is broken, and a release baking its canary
    pipeline = broken("RollbackFunction")
    pipeline.set_policy(approval="auto", bake_seconds=5000, min_canary_invocations=1)  # a 10 s bake here
    run = pipeline.driver.submit(pipeline.examples / "v1", commit=pipeline.commit_for("v1 rollback fails"))
    ledger = pipeline.control.ledger()
    wait_until(lambda: (ledger.get(run.release_id) or {}).get("status") == "Baking", HANG_GUARD_SECONDS, "the canary")
    assert ledger.lock_holder("support-bot") == run.release_id
    # When its canary alarm fires
    alarm = ledger.get(run.release_id)["canary_alarms"][0]
    pipeline.control.client("cloudwatch").set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="errors")
    run = pipeline.driver.finish(run)
    # Then Rollback was tried once (a failure at start is not transient) and the last resort ran
    assert run.path[-9:] == ["Rollback", *ROLLBACK_NOT_RECORDED, *LAST_RESORT]
    assert attempts(pipeline, run, "Rollback") == 1
    assert run.execution.get("error") == "RollbackFailed"
    # And the ledger says the rollback failed and what to do; the lock is free; humans were told
    assert run.status == "RollbackFailed"
    assert run.record["reason"].startswith("the rollback step failed: Rollback ended with ConfigurationError,")
    candidate, live = str(run.record["candidate_version"]), str(run.record["live_version"])
    assert f"may still send part of its traffic to version {candidate} (this release) instead of wholly to " \
        f"version {live}" in run.record["reason"] and "CanaryAlarm" in run.record["reason"]
    assert ledger.lock_holder("support-bot") is None
    (alert,) = wait_until(alerts, HANG_GUARD_SECONDS, "the last-resort alert")
    assert run.release_id in alert["Message"] and "its Rollback step failed" in alert["Message"]
    # the alert names the exact command and where it takes live
    assert f"Now run, as an operator: modelgate rollback support-bot -- it points the live alias wholly back to " \
        f"version {live}" in alert["Message"]
    # (the canary still holds its weight: that is what the humans are told to fix)
    assert pipeline.live() == (live, {candidate: pytest.approx(0.1)})
    assert [a for a in pipeline.alarms() if run.release_id in a]

    # When the operator runs that command
    monkeypatch.setattr(cli, "_control", lambda args: cli.with_principal(pipeline.control, args))
    assert cli.main(["rollback", "support-bot", "--comment", "after the alert"]) == 0
    assert f"support-bot: version {live} + 10.00% to {candidate} -> {live}" in capsys.readouterr().out
    # Then live serves the version it served before the release, alone; its alarms are gone; and
    # the ledger says the release was rolled back by hand
    assert pipeline.live() == (live, {})
    assert not [a for a in pipeline.alarms() if run.release_id in a]
    record = ledger.get(run.release_id)
    assert record["status"] == "RolledBack" and record["error"] == "ManualRollback"
    # and that change of an ended release is chained; the release still verifies (it was never promoted:
    # the rollback's revocation request found nothing to revoke)
    kinds = [r.kind for r in LedgerChain(ledger.table).read("support-bot")[0] if r.release_id == run.release_id]
    assert kinds == ["release", "manual-rollback"]
    report = verify_release(pipeline.control, run.release_id)
    assert report.ok, report.lines()
    assert record["history"][-1]["actor"].startswith("arn:aws:sts::") and "-local-operator/" in \
        record["history"][-1]["actor"]
