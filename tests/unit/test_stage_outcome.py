"""Outcome stage: promote, roll back (after a failure, or by hand to the last known good
version), or record why a release ended early. Every path leaves a ledger record and the
service's lock free."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from modelgate.chain import LedgerChain, verify_chain
from modelgate.contract import EvaluationSummary, TaskError
from modelgate.errors import DecisionConflict
from modelgate.pipeline.outcome import promote, record_outcome, rollback, rollback_service

RELEASE = "support-bot-abc1234def0-0123456789"
ALARM = f"test-canary-{RELEASE}-errors"
ALARM_CAUSE = f"alarm {ALARM} is in ALARM: Threshold Crossed: 1 datapoint [3.0] >= 1.0"


def in_canary(world, *, candidate_weight: float | None = 0.1, **fields):
    """A release whose candidate (version 2) takes traffic beside live (version 1): its alarm
    armed, its bake token kept, the service's lock held."""
    world.service_function()
    world.publish(RELEASE)
    if candidate_weight is None:
        world.deps.lambda_.update_alias(FunctionName="test-svc-support-bot", Name="live", FunctionVersion="2")
    else:
        world.canary(stable="1", candidate="2", weight=candidate_weight)
    world.put_alarm(ALARM)
    world.ledger.put_alarm_owner(ALARM, RELEASE, "support-bot")
    world.ledger.put_token(RELEASE, "bake", "bake-token")
    world.ledger.acquire_lock("support-bot", RELEASE, 3600)
    world.ledger.record(RELEASE, "Baking", "bake armed", service="support-bot")
    return world.context(RELEASE, live_version="1", candidate_version="2", canary_alarms=[ALARM], **fields)


# ---------------------------------------------------------------------- promote
def test_promotion_leaves_the_candidate_live_cleans_its_alarms_and_frees_the_lock(world):
    # Given the final bake ended (the alias still weighted: 99.99% on the candidate)
    ctx = in_canary(world, candidate_weight=0.9999)
    # When the release is promoted
    promote(world.deps, ctx)
    # Then the candidate serves alone, the alias unweighted
    assert world.alias() == ("2", {})
    # And its alarms and their ownership are gone, the lock is free
    assert world.alarm_names() == []
    assert world.ledger.alarm_owner(ALARM) is None
    assert world.ledger.lock_holder("support-bot") is None
    # And the ledger says it was promoted, from which version
    record = world.ledger.get(RELEASE)
    assert record["status"] == "Promoted" and record["promoted_at"]
    assert "serves version 2 alone, unweighted (was 1)" in record["history"][-1]["detail"]


def test_promotion_is_idempotent_once_the_alias_is_on_the_candidate(world):
    # Given a promotion retried after it moved the alias (the alias already wholly on the candidate)
    ctx = in_canary(world, candidate_weight=None)
    # When promoted again / Then the candidate still serves alone
    promote(world.deps, ctx)
    assert world.alias() == ("2", {})


class AsyncInvokes:
    """The stages' Lambda client: asynchronous invokes (InvocationType Event) are recorded, or
    refused with ``refuse`` (an error code); everything else is moto's."""

    def __init__(self, real, refuse: str | None = None) -> None:
        self._real, self.refuse = real, refuse
        self.events: list[dict] = []

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def invoke(self, **kwargs):
        if kwargs.get("InvocationType") != "Event":
            return self._real.invoke(**kwargs)
        if self.refuse:
            raise ClientError({"Error": {"Code": self.refuse, "Message": "Rate exceeded"}}, "Invoke")
        self.events.append({**kwargs, "Payload": json.loads(kwargs["Payload"])})
        return {"StatusCode": 202}


def evaluated(release_id: str = RELEASE) -> EvaluationSummary:
    key = f"reports/support-bot/{release_id}/evaluation.json"
    return EvaluationSummary(n_cases=4, sides={}, report_key=key, report_version="rv1", dataset_key="d",
                             dataset_version="dv1", shards=1, baseline="live")


def test_promotion_asks_the_monitor_for_the_baseline_asynchronously_and_builds_none_itself(world):
    # Given the final bake ended for a release with an evaluation and a canary start
    ctx = in_canary(world, candidate_weight=0.9999, evaluation=evaluated(),
                    canary_started_at="2026-11-30T10:00:00+00:00")
    invokes = world.use("lambda", AsyncInvokes(world.client("lambda")))
    # When the release is promoted
    promote(world.deps, ctx)
    # Then the monitor function is asked, once and asynchronously, for this release's baseline
    [event] = invokes.events
    assert (event["FunctionName"], event["InvocationType"]) == ("test-monitor", "Event")
    request = event["Payload"]
    assert (request["task"], request["service"], request["requested_by"]) == ("baseline", "support-bot", "promote")
    assert request["baseline"]["release_id"] == RELEASE and request["baseline"]["version"] == "2"
    assert request["baseline"]["report_key"] == evaluated().report_key
    assert request["baseline"]["report_version"] == "rv1"
    assert request["baseline"]["canary_started_at"].startswith("2026-11-30T10:00:00")
    assert request["baseline"]["promoted_at"]
    # And the release is promoted with the request noted; nothing of the baseline was built here
    record = world.ledger.get(RELEASE)
    assert record["status"] == "Promoted" and record["baseline_requested_at"]
    assert not record.get("baseline_key") and not record.get("baseline_error")
    assert "Contents" not in world.client("s3").list_objects_v2(Bucket="artefacts", Prefix="reports/")


def test_a_baseline_request_that_fails_is_recorded_and_the_promotion_stands(world):
    # Given the monitor function can't be invoked (throttled beyond the SDK's retries)
    ctx = in_canary(world, candidate_weight=0.9999, evaluation=evaluated())
    world.use("lambda", AsyncInvokes(world.client("lambda"), refuse="TooManyRequestsException"))
    # When the release is promoted / Then it is, with the candidate live alone and the lock free
    promote(world.deps, ctx)
    assert world.alias() == ("2", {})
    assert world.ledger.lock_holder("support-bot") is None
    record = world.ledger.get(RELEASE)
    assert record["status"] == "Promoted"
    # And the ledger says why there will be no baseline
    assert record["baseline_error"].startswith("not requested: ClientError:")
    assert "TooManyRequestsException" in record["baseline_error"]


def test_a_retried_promote_asks_for_the_baseline_only_if_the_first_did_not(world):
    ctx = in_canary(world, candidate_weight=0.9999, evaluation=evaluated())
    invokes = world.use("lambda", AsyncInvokes(world.client("lambda")))
    promote(world.deps, ctx)
    # When Promote is retried after it asked (its answer lost) / Then it does not ask again
    promote(world.deps, ctx)
    assert len(invokes.events) == 1
    # But a retry after a first try that ended before it asked does
    world.client("dynamodb").update_item(
        TableName=world.settings.ledger_table, Key={"pk": {"S": f"RELEASE#{RELEASE}"}, "sk": {"S": "RELEASE"}},
        UpdateExpression="REMOVE baseline_requested_at")
    promote(world.deps, ctx)
    assert len(invokes.events) == 2 and invokes.events[1]["Payload"]["baseline"]["release_id"] == RELEASE


def test_a_promote_cut_after_its_write_is_finished_by_its_retry(world, monkeypatch):
    # Given a Promote that ran out of time right after writing Promoted (Sandbox.Timedout): the
    # cut is simulated where it hurts, before the lock's release
    ctx = in_canary(world, candidate_weight=0.9999, evaluation=evaluated())
    invokes = world.use("lambda", AsyncInvokes(world.client("lambda")))

    def cut(*args, **kwargs):
        raise TimeoutError("Task timed out after 30.00 seconds")

    monkeypatch.setattr(type(world.ledger), "release_lock", cut)
    with pytest.raises(TimeoutError):
        promote(world.deps, ctx)
    assert world.ledger.get(RELEASE)["status"] == "Promoted"
    assert world.ledger.lock_holder("support-bot") == RELEASE and invokes.events == []
    # When the state machine retries it (the timeout is retried) / Then the retry finishes the work:
    # the lock is free, the baseline asked for, the candidate still live alone
    monkeypatch.undo()
    promote(world.deps, ctx)
    assert world.ledger.lock_holder("support-bot") is None
    assert len(invokes.events) == 1 and world.alias() == ("2", {})
    # And a retry never frees a lock another release took meanwhile
    world.ledger.acquire_lock("support-bot", "support-bot-next-release", 3600)
    promote(world.deps, ctx)
    assert world.ledger.lock_holder("support-bot") == "support-bot-next-release"


def test_rollback_from_the_final_bake_restores_stable_alone(world):
    # Given the final bake (99.99% on the candidate) whose alarm fired
    ctx = in_canary(world, candidate_weight=0.9999, error=TaskError(Error="CanaryAlarm", Cause=ALARM_CAUSE))
    # When the release is rolled back / Then the version live before serves alone again
    rollback(world.deps, ctx)
    assert world.alias() == ("1", {})
    assert world.alarm_names() == []


# ---------------------------------------------------------------------- rollback
def test_rollback_restores_live_and_records_and_announces_why(world):
    # Given a canary whose alarm fired during the bake
    ctx = in_canary(world, error=TaskError(Error="CanaryAlarm", Cause=ALARM_CAUSE))
    # When the release is rolled back
    out = rollback(world.deps, ctx)
    # Then live serves the version it served before, alone
    assert world.alias() == ("1", {})
    # And the canary's alarms, its bake token and the lock are gone
    assert world.alarm_names() == []
    assert world.ledger.get_token(RELEASE, "bake") is None
    assert world.ledger.lock_holder("support-bot") is None
    # And the outcome, the ledger and the approvers' topic all say why
    assert (out.outcome.status, out.outcome.error) == ("RolledBack", "CanaryAlarm")
    assert out.outcome.reason == f"CanaryAlarm: {ALARM_CAUSE}"
    record = world.ledger.get(RELEASE)
    assert (record["status"], record["error"], record["reason"]) == ("RolledBack", "CanaryAlarm", out.outcome.reason)
    [message] = world.mail()
    assert f"Release {RELEASE} was rolled back" in message and ALARM_CAUSE in message


def test_rollback_deletes_the_alarms_the_ledger_names_when_the_state_carries_none(world):
    # Given a canary whose alarms exist and are named in the ledger, but a state without them (its
    # ShiftTraffic created them, then failed: a failed task returns no state)
    ctx = in_canary(world, error=TaskError(Error="TooManyRequestsException", Cause="Rate exceeded"))
    world.ledger.set_fields(RELEASE, canary_alarms=[ALARM])  # as fencing.put_alarms names them first
    assert world.alarm_names() == [ALARM]
    # When the release is rolled back from that state / Then its alarms are gone all the same
    rollback(world.deps, ctx.model_copy(update={"canary_alarms": []}))
    assert world.alarm_names() == []
    assert world.alias() == ("1", {})


def test_a_lambda_errors_cause_is_reduced_to_its_message(world):
    # Given a rollback caught from a task whose Lambda error cause is the runtime's JSON
    cause = json.dumps({"errorType": "CanaryRegression", "errorMessage": "errors: candidate 20/100 vs stable 0/900",
                        "stackTrace": ["..."]})
    ctx = in_canary(world, error=TaskError(Error="CanaryRegression", Cause=cause))
    # When rolled back / Then the reason is the message, not the JSON
    out = rollback(world.deps, ctx)
    assert out.outcome.reason == "CanaryRegression: errors: candidate 20/100 vs stable 0/900"


def test_rolling_back_twice_ends_in_the_same_place(world):
    # Given a release rolled back once
    ctx = in_canary(world, error=TaskError(Error="CanaryAlarm", Cause=ALARM_CAUSE))
    first = rollback(world.deps, ctx)
    # When the Rollback task runs again (a retry)
    again = rollback(world.deps, ctx)
    # Then it succeeds with the same outcome, and live, alarms, lock and ledger are as after the first
    assert again.outcome == first.outcome
    assert world.alias() == ("1", {})
    assert world.alarm_names() == []
    assert world.ledger.lock_holder("support-bot") is None
    assert world.ledger.get(RELEASE)["status"] == "RolledBack"


def test_a_rollback_does_not_take_the_lock_a_newer_release_holds(world):
    # Given a rolled-back release whose service a newer release has locked since
    ctx = in_canary(world, error=TaskError(Error="CanaryAlarm", Cause=ALARM_CAUSE))
    rollback(world.deps, ctx)
    world.ledger.acquire_lock("support-bot", "support-bot-newer-1", 3600)
    # When the rollback is retried / Then the newer release keeps its lock
    rollback(world.deps, ctx)
    assert world.ledger.lock_holder("support-bot") == "support-bot-newer-1"


# ---------------------------------------------------------------------- record_outcome
@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("Superseded", "Superseded"),
        ("ManifestInvalid", "Invalid"),
        ("ServiceNotRegistered", "Invalid"),
        ("GateFailed", "GateFailed"),
        ("ApprovalRejected", "Rejected"),
        ("ApprovalTimedOut", "ApprovalTimedOut"),
        ("DatasetInvalid", "Failed"),
        ("States.TaskFailed", "Failed"),
    ],
)
def test_each_error_ends_the_release_in_its_status(world, error, status):
    # Given a release that failed before any traffic moved, with that error caught
    ctx = world.context(error=TaskError(Error=error, Cause="why"))
    world.ledger.acquire_lock("support-bot", ctx.release_id, 3600)
    # When its outcome is recorded
    out = record_outcome(world.deps, ctx)
    # Then the release ends in the status that error means, saying why, and the lock is free
    # (the execution's error: Step Functions reserves names starting with "States.")
    assert out.outcome.model_dump() == {"status": status, "error": error.removeprefix("States."), "reason": f"{error}: why"}
    record = world.ledger.get(ctx.release_id)
    assert (record["status"], record["error"], record["reason"]) == (status, error, f"{error}: why")
    assert world.ledger.lock_holder("support-bot") is None


def test_an_outcome_without_an_error_is_a_failure_saying_so(world):
    out = record_outcome(world.deps, world.context())
    assert out.outcome.model_dump() == {"status": "Failed", "error": "Failed", "reason": "no reason recorded"}


def test_record_outcome_says_why_and_releases_the_lock(world):
    # Given a release whose gate failed (the cause as the Lambda runtime reports it), holding the lock
    ctx = world.context()
    world.ledger.acquire_lock("support-bot", ctx.release_id, 3600)
    cause = json.dumps({"errorType": "GateFailed", "errorMessage": "accuracy_drop: 0.61 vs 0.86"})
    # When its outcome is recorded
    out = record_outcome(world.deps, ctx.model_copy(update={"error": TaskError(Error="GateFailed", Cause=cause)})).dump()
    # Then the outcome and the ledger carry the gate's message, and the lock is free
    assert out["outcome"] == {"status": "GateFailed", "error": "GateFailed",
                              "reason": "GateFailed: accuracy_drop: 0.61 vs 0.86"}
    record = world.ledger.get(ctx.release_id)
    assert record["status"] == "GateFailed" and "0.61 vs 0.86" in record["reason"]
    assert world.ledger.lock_holder("support-bot") is None


def test_an_outcome_whose_cause_echoed_a_huge_input_is_recorded_bounded(world):
    # Given a step whose error echoed 30,000 characters of input (a task failure's cause may hold 32,768)
    ctx = world.context()
    world.ledger.acquire_lock("support-bot", ctx.release_id, 3600)
    cause = json.dumps({"errorType": "ValueError", "errorMessage": "bad value " + "x" * 30_000})
    # When its outcome is recorded
    out = record_outcome(world.deps, ctx.model_copy(update={"error": TaskError(Error="ValueError", Cause=cause)}))
    # Then the reason is cut, saying so, in the outcome and the ledger; the lock is free
    assert len(out.outcome.reason) == 16_000 and out.outcome.reason.endswith("[cut: 30,022 characters in all]")
    assert world.ledger.get(ctx.release_id)["reason"] == out.outcome.reason
    assert world.ledger.lock_holder("support-bot") is None


def test_a_timed_out_approval_takes_its_token_back(world):
    # Given a release whose approval timed out, its token still in the ledger
    ctx = world.context(error=TaskError(Error="ApprovalTimedOut"))
    world.ledger.put_token(ctx.release_id, "approval", "approval-token")
    # When its outcome is recorded / Then a late approver finds nothing to decide
    record_outcome(world.deps, ctx)
    assert world.ledger.get_token(ctx.release_id, "approval") is None


# ---------------------------------------------------------------------- rollback_service
def promoted(world, release_id: str, *, candidate: str, live_before: str) -> None:
    world.ledger.receive(release_id, "uploaded", service="support-bot", commit="c0ffee0",
                         artifact={"bucket": "artefacts", "key": "k", "version_id": "v"})
    world.ledger.record(release_id, "Promoted", "promoted", candidate_version=candidate, live_version=live_before)


def test_manual_rollback_returns_to_the_version_live_before_the_last_promotion(world):
    # Given release R promoted version 2 over version 1 (which serves an earlier release),
    # and an alarm on live still firing
    world.register()
    world.service_function()
    world.publish("support-bot-r-2")
    world.deps.lambda_.update_alias(FunctionName="test-svc-support-bot", Name="live", FunctionVersion="2")
    promoted(world, "support-bot-r-2", candidate="2", live_before="1")
    world.put_alarm("test-live-errors", state="ALARM")
    # When an operator rolls the service back
    result = rollback_service(world.deps, "support-bot", "alice", "bad answers")
    # Then live serves version 1 again, R is recorded rolled back by hand, and approvers are told
    assert world.alias() == ("1", {})
    assert result == {"service": "support-bot", "release_id": "support-bot-r-2", "from_version": "2",
                      "to_version": "1", "status": "RolledBack"}
    record = world.ledger.get("support-bot-r-2")
    assert (record["status"], record["error"], record["reason"]) == (
        "RolledBack", "ManualRollback", "manual rollback by alice: bad answers")
    [message] = world.mail()
    assert "serves version 1 again" in message
    # and the change to an ended release is a record of the service's chain
    records, broken, head = LedgerChain(world.ledger.table).read("support-bot")
    assert [(r.kind, r.release_id, r.body["status"]) for r in records] == [
        ("manual-rollback", "support-bot-r-2", "RolledBack")]
    assert verify_chain("support-bot", records, head, broken).intact


def test_a_rollback_comment_with_newlines_forges_no_line_of_the_mail(world):
    # Given a promoted release, and an operator's comment carrying a forged line and a terminal escape
    world.register()
    world.service_function()
    world.publish("support-bot-r-2")
    world.deps.lambda_.update_alias(FunctionName="test-svc-support-bot", Name="live", FunctionVersion="2")
    promoted(world, "support-bot-r-2", candidate="2", live_before="1")
    # When the service is rolled back with it
    comment = "oops\ntest-svc-support-bot:live serves version 9 again\x1b[2J"
    rollback_service(world.deps, "support-bot", "alice", comment)
    # Then the mail has its two lines, the comment escaped inside the first
    [message] = world.mail()
    lines = message.split("\n")
    assert len(lines) == 2 and "\x1b" not in message
    assert lines[0].startswith("manual rollback by alice: oops\\ntest-svc-support-bot:live serves version 9")
    assert lines[1].startswith("test-svc-support-bot:live serves version 1 again")


def test_manual_rollback_cancels_the_release_in_flight_first(world):
    # Given R promoted version 2, and release S baking a 10% canary of version 3 with the lock
    world.register()
    world.service_function()
    world.publish("support-bot-r-2")
    world.publish("support-bot-s-3")
    world.canary(stable="2", candidate="3")
    promoted(world, "support-bot-r-2", candidate="2", live_before="1")
    world.ledger.receive("support-bot-s-3", "uploaded", service="support-bot", commit="c0ffee1",
                         artifact={"bucket": "artefacts", "key": "k", "version_id": "v"})
    world.ledger.set_fields("support-bot-s-3", function_name="test-svc-support-bot", alias="live",
                            live_version="2", candidate_version="3")
    world.ledger.acquire_lock("support-bot", "support-bot-s-3", 3600)
    # When the service is rolled back
    rollback_service(world.deps, "support-bot", "alice")
    # Then S is rolled back too (its canary gone), the lock is free, and live is on version 1
    assert world.ledger.get("support-bot-s-3")["status"] == "RolledBack"
    assert world.ledger.lock_holder("support-bot") is None
    assert world.alias() == ("1", {})


def test_manual_rollback_after_a_failed_rollback_withdraws_the_canary_and_stops_at_the_live_version(world):
    # Given R promoted version 2 over 1, and release S whose Rollback failed for good: it ended
    # RollbackFailed with no lock, its 10% canary of version 3 still on live and its alarms still there
    world.register()
    world.service_function()
    world.publish("support-bot-r-2")
    world.publish("support-bot-s-3")
    promoted(world, "support-bot-r-2", candidate="2", live_before="1")
    world.canary(stable="2", candidate="3")
    alarm = world.put_alarm("test-canary-support-bot-s-3-errors", state="ALARM")
    world.ledger.receive("support-bot-s-3", "uploaded", service="support-bot", commit="c0ffee1",
                         artifact={"bucket": "artefacts", "key": "k", "version_id": "v"})
    world.ledger.record("support-bot-s-3", "RollbackFailed", "the rollback step failed", live_version="2",
                        candidate_version="3", canary_alarms=[alarm])
    # When the operator runs the command the alert names
    result = rollback_service(world.deps, "support-bot", "alice", "after the failed rollback")
    # Then live is wholly back on version 2 (where it was before S), not rolled past it to 1
    assert world.alias() == ("2", {})
    assert result == {"service": "support-bot", "release_id": "support-bot-s-3",
                      "from_version": "2 + 10.00% to 3", "to_version": "2", "status": "RolledBack"}
    # And S is recorded rolled back by hand, its alarms are gone, R is still the promoted release
    record = world.ledger.get("support-bot-s-3")
    assert (record["status"], record["error"]) == ("RolledBack", "ManualRollback")
    assert "served version 2 + 10.00% to 3; it serves version 2 alone again" in record["history"][-1]["detail"]
    assert not world.deps.cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
    assert world.ledger.get("support-bot-r-2")["status"] == "Promoted"
    [message] = world.mail()
    assert "serves version 2 alone again" in message and "release support-bot-s-3 is rolled back" in message
    # And a second rollback goes back past R, as any manual rollback does
    assert rollback_service(world.deps, "support-bot", "alice")["to_version"] == "1"
    assert world.alias() == ("1", {})


def test_manual_rollback_refuses_when_no_promoted_release_put_live_there(world):
    # Given a live version no release of this control plane promoted
    world.register()
    world.service_function()
    # When rolled back / Then it is refused, and live doesn't move
    with pytest.raises(DecisionConflict, match="serves version 1, which no promoted release of support-bot put there"):
        rollback_service(world.deps, "support-bot", "alice")
    assert world.alias() == ("1", {})


def test_manual_rollback_refuses_when_the_version_before_serves_no_model(world):
    # Given the first release promoted over a version that serves no model
    world.register()
    world.service_function(live_serves_a_release=False)
    world.publish("support-bot-first-2")
    world.deps.lambda_.update_alias(FunctionName="test-svc-support-bot", Name="live", FunctionVersion="2")
    promoted(world, "support-bot-first-2", candidate="2", live_before="1")
    # When rolled back / Then there is no known good version, and live stays
    with pytest.raises(DecisionConflict, match="is its first release: the version before it .1. serves no model"):
        rollback_service(world.deps, "support-bot", "alice")
    assert world.alias() == ("2", {})
    assert world.ledger.get("support-bot-first-2")["status"] == "Promoted"


# ---------------------------------------------------------------------- which step failed
class HistoryOf:
    """A Step Functions client fake that answers GetExecutionHistory with these states entered
    (oldest first), or raises ``error``."""

    def __init__(self, *states: str, error: Exception | None = None) -> None:
        self.states, self.error, self.calls = states, error, []

    def get_execution_history(self, **kwargs):
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        events = [{"id": i + 1, "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}}
                  for i, name in enumerate(self.states)]
        return {"events": list(reversed(events)) if kwargs.get("reverseOrder") else events}


def test_the_failed_step_is_the_newest_state_entered_before_the_closing_step():
    from types import SimpleNamespace

    from modelgate.pipeline.outcome import failed_step

    sfn = HistoryOf("Validate", "AcquireLock", "ShiftTraffic", "Rollback")
    error = TaskError(Error="Lambda.ServiceException", Cause="...")
    assert failed_step(SimpleNamespace(sfn=sfn), error, "arn:exec") == "ShiftTraffic"
    assert sfn.calls == [{"executionArn": "arn:exec", "reverseOrder": True, "maxResults": 200,
                          "includeExecutionData": False}]
    # an error that names itself needs no lookup
    assert failed_step(SimpleNamespace(sfn=sfn), TaskError(Error="GateFailed"), "arn:exec") is None
    assert len(sfn.calls) == 1
    # an unreadable history costs the detail, never the outcome step
    broken = SimpleNamespace(sfn=HistoryOf(error=RuntimeError("AccessDenied")))
    assert failed_step(broken, error, "arn:exec") is None


def test_record_outcome_names_the_step_that_failed_for_an_error_that_does_not_say(world, monkeypatch):
    # Given a release whose Register step crashed, with the lock held
    world.ledger.acquire_lock("support-bot", RELEASE, 3600)
    world.ledger.record(RELEASE, "GatePassed", "passed", service="support-bot")
    ctx = world.context(RELEASE, error=TaskError(Error="KeyError", Cause=json.dumps({"errorMessage": "'gate'"})))
    monkeypatch.setattr(type(world.deps), "sfn", HistoryOf("Gate", "Register", "RecordOutcome"), raising=False)
    # When the outcome is recorded
    out = record_outcome(world.deps, ctx, "arn:aws:states:us-east-1:123456789012:execution:x:" + RELEASE)
    # Then the reason says which step failed and how; the lock is free
    assert out.outcome.reason == "the Register step failed: KeyError: 'gate'"
    assert world.ledger.get(RELEASE)["reason"] == out.outcome.reason
    assert world.ledger.lock_holder("support-bot") is None


def test_the_execution_arn_is_derived_from_the_function_arn_and_the_stack():
    from modelgate.pipeline.outcome import pipeline_execution_arn

    arn = pipeline_execution_arn("arn:aws:lambda:eu-west-1:111122223333:function:st-RecordOutcome-x", "st", "rel-1")
    assert arn == "arn:aws:states:eu-west-1:111122223333:execution:st-release-pipeline:rel-1"
    assert pipeline_execution_arn("not-an-arn", "st", "rel-1") is None
