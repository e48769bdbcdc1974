"""The ASL's error handling, checked statically: it reads like the stage list.

- one retry shape per kind of task, the same wherever that kind is used;
- only transient errors are retried (never States.ALL or States.TaskFailed);
- no named Catch followed by a catch-all to the same state (the names live in Comments);
- every Lambda task retries a function timeout (Sandbox.Timedout, Lambda.Unknown), a little;
- Promote, Rollback and RecordOutcome, if they fail for good, read the ledger first: a release
  their write closed ends as they would have ended it; otherwise Promote rolls back, and
  RecordOutcome and Rollback lead to the last resort, which writes the ledger and the lock
  directly and alerts humans, and can't be stopped by its own errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelgate.ledger import FINAL_STATUSES
from modelgate.pipeline.outcome import STATUS_BY_ERROR

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "release_pipeline.asl.json"
DEFINITION = json.loads(ASL.read_text())
STATES = DEFINITION["States"]

TRANSIENT_LAMBDA = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
_BACKOFF = {"BackoffRate": 2.0, "JitterStrategy": "FULL"}
# A Lambda function that ran out of time: Sandbox.Timedout is the errorType the runtime reports and
# Step Functions takes as the error name; "Handle Lambda service exceptions" (Step Functions
# best practices) names a timeout Lambda.Unknown. Either way it is retried twice, no more: a
# deterministic timeout must not burn hours (EvaluateShard's function runs up to 900 s).
FUNCTION_TIMEOUT = ["Sandbox.Timedout", "Lambda.Unknown"]
TIMEOUT_RETRIER = {"ErrorEquals": FUNCTION_TIMEOUT, "IntervalSeconds": 2, "MaxAttempts": 2, **_BACKOFF}
# The retry shape of each kind of task: the whole Retry list, exactly.
SHAPES: dict[str, list[dict[str, Any]]] = {
    # a pipeline step (request-response or callback): the transient Lambda errors
    "step": [{"ErrorEquals": TRANSIENT_LAMBDA, "IntervalSeconds": 1, "MaxAttempts": 3, **_BACKOFF}, TIMEOUT_RETRIER],
    # a step that ends the release (idempotent, its last word): its own timeout too, longer
    "closing": [{"ErrorEquals": [*TRANSIENT_LAMBDA, "States.Timeout"], "IntervalSeconds": 1, "MaxAttempts": 6, **_BACKOFF},
                TIMEOUT_RETRIER],
    # AcquireLock: a step that also waits for a busy service
    "lock": [
        {"ErrorEquals": TRANSIENT_LAMBDA, "IntervalSeconds": 1, "MaxAttempts": 3, **_BACKOFF},
        TIMEOUT_RETRIER,
        {"ErrorEquals": ["ServiceLocked"], "IntervalSeconds": 30, "MaxAttempts": 12, "BackoffRate": 1.5,
         "MaxDelaySeconds": 600, "JitterStrategy": "FULL"},
    ],
    # the last resort's direct service calls: throttling and service-side errors
    "last_resort": [{
        "ErrorEquals": [
            "DynamoDB.ProvisionedThroughputExceededException", "DynamoDB.ThrottlingException",
            "DynamoDB.RequestLimitExceeded", "DynamoDB.InternalServerError",
            "SNS.ThrottledException", "SNS.InternalErrorException",
        ],
        "IntervalSeconds": 1, "MaxAttempts": 3, **_BACKOFF,
    }],
}
KIND = {"AcquireLock": "lock", "Promote": "closing", "Rollback": "closing", "RecordOutcome": "closing",
        "Attest": "closing", "AttestEnd": "closing", "LastResortAttest": "closing"}
LAST_RESORT = ["LastResortRecord", "LastResortUnlock", "LastResortAlert", "LastResortAttest", "LastResortFailed"]
# an Attest state failing for good: the ledger says so, operations are told (direct service calls)
ATTEST_FAILED = ["AttestFailedRecord", "AttestFailedAlert", "AttestFailedThen"]
ATTESTS = {"Attest": "Promoted", "AttestEnd": "ReleaseFailed", "LastResortAttest": "LastResortFailed"}
ENTRIES = {"RecordOutcome": "OutcomeStepFailed", "Rollback": "RollbackStepFailed"}
# A closing step failing for good: its ledger read, the choice after it, where a closed release
# goes (Promote's is a promotion), and where one that is not goes (as before the read).
LEDGER_CHECKS = {
    "Promote": ("CheckPromoted", "PromotedAnyway", "Rollback"),
    "Rollback": ("CheckRolledBack", "RolledBackAnyway", "RollbackStepFailed"),
    "RecordOutcome": ("CheckRecorded", "RecordedAnyway", "OutcomeStepFailed"),
}
# The statuses that say each step's write landed: Promote's; Rollback's own (or the lease's new
# holder's); every status record_outcome writes (STATUS_BY_ERROR, Failed for any other error).
CLOSED_BY = {
    "Promote": {"Promoted"},
    "Rollback": {"RolledBack", "Superseded"},
    "RecordOutcome": {*STATUS_BY_ERROR.values(), "Failed"},
}
ENDED = ["EndedUnlock", "EndedThen", "EndedOutcome"]


def all_states(states: dict[str, Any] = STATES) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, including those inside a Map's processor or a Parallel's branches."""
    for name, state in states.items():
        yield name, state
        for nested in [state.get("ItemProcessor") or state.get("Iterator") or {}, *state.get("Branches", [])]:
            if nested:
                yield from all_states(nested["States"])


def tasks() -> list[tuple[str, dict[str, Any]]]:
    return [(n, s) for n, s in all_states() if s["Type"] == "Task"]


def is_lambda(state: dict[str, Any]) -> bool:
    return state["Resource"].startswith("arn:aws:states:::lambda:invoke")


@pytest.mark.parametrize("name,state", [t for t in tasks() if is_lambda(t[1])], ids=lambda v: v if isinstance(v, str) else "")
def test_every_lambda_task_has_the_retry_shape_of_its_kind(name, state):
    assert state.get("Retry") == SHAPES[KIND.get(name, "step")], name


@pytest.mark.parametrize("name,state", [t for t in tasks() if not is_lambda(t[1])], ids=lambda v: v if isinstance(v, str) else "")
def test_every_direct_service_task_is_in_the_last_resort_and_has_its_retry_shape(name, state):
    checks = {check for check, _, _ in LEDGER_CHECKS.values()}
    assert name in LAST_RESORT or name in ATTEST_FAILED or name in checks or name in ENDED, \
        f"{name} calls {state['Resource']} directly"
    assert state.get("Retry") == SHAPES["last_resort"], name


def test_one_retry_shape_per_kind():
    shapes = {json.dumps(s.get("Retry"), sort_keys=True) for _, s in tasks()}
    assert len(shapes) == len(SHAPES)


def test_only_transient_errors_are_retried():
    for name, state in tasks():
        for retrier in state.get("Retry", []):
            assert not {"States.ALL", "States.TaskFailed"} & set(retrier["ErrorEquals"]), f"{name} retries every failure"


def test_rollback_retries_what_is_transient_and_nothing_else():
    retried = {e for retrier in STATES["Rollback"]["Retry"] for e in retrier["ErrorEquals"]}
    assert retried == {*TRANSIENT_LAMBDA, "States.Timeout", *FUNCTION_TIMEOUT}


@pytest.mark.parametrize("name,state", [t for t in tasks() if is_lambda(t[1])], ids=lambda v: v if isinstance(v, str) else "")
def test_every_lambda_task_retries_a_function_timeout_by_both_names_a_little(name, state):
    # a Task added without it fails here, whatever its kind: its function may time out after its
    # write, and only a retry (every handler is idempotent) finishes what the cut run began
    retriers = [r for r in state.get("Retry", []) if set(FUNCTION_TIMEOUT) & set(r["ErrorEquals"])]
    assert len(retriers) == 1, f"{name} does not retry a function timeout (Sandbox.Timedout, Lambda.Unknown)"
    (retrier,) = retriers
    # both names, in a retrier of their own (never with the service errors' longer budget)
    assert sorted(retrier["ErrorEquals"]) == sorted(FUNCTION_TIMEOUT), name
    assert 1 <= retrier["MaxAttempts"] <= 2 and isinstance(retrier["IntervalSeconds"], int), name


def test_backoff_rates_are_floats():
    # statelint rejects an integer BackoffRate: 2.0, not 2 (json keeps the difference)
    for name, state in tasks():
        for retrier in state.get("Retry", []):
            assert isinstance(retrier["BackoffRate"], float), name
    assert not re.search(r'"BackoffRate":\s*\d+\s*[,}\n]', ASL.read_text())


def test_no_named_catch_is_followed_by_a_catch_all_to_the_same_state():
    for name, state in all_states():
        catchers = state.get("Catch", [])
        for i, catcher in enumerate(catchers):
            if catcher["ErrorEquals"] == ["States.ALL"]:
                assert i == len(catchers) - 1, f"{name}: States.ALL must be the last catcher"
                redundant = [c["ErrorEquals"] for c in catchers[:i] if c["Next"] == catcher["Next"]]
                assert not redundant, f"{name}: {redundant} end at {catcher['Next']} anyway (name them in the Comment)"


def test_the_domain_errors_that_end_a_release_are_named_where_they_are_caught():
    for name, errors in {
        "Validate": ["ManifestInvalid", "ServiceNotRegistered"],
        "Gate": ["GateFailed"],
        "WaitForApproval": ["ApprovalRejected"],
        "Bake": ["CanaryAlarm"],
        "CheckCanary": ["CanaryAlarm", "CanaryRegression", "NotEnoughEvidence"],
    }.items():
        for error in errors:
            assert error in STATES[name]["Comment"], (name, error)


def test_what_the_closing_steps_read_at_error_is_always_there():
    # the last resort's reason reads $.error.Error: every way into RecordOutcome/Rollback sets it
    # (CheckPromoted's catcher keeps its input, which carries Promote's $.error)
    for name, state in all_states():
        for catcher in state.get("Catch", []):
            if catcher["Next"] in ENTRIES:
                assert catcher["ResultPath"] == ("$.error" if name != "CheckPromoted" else None), name
        if state["Type"] == "Pass" and state.get("Next") in ENTRIES:
            assert state["ResultPath"] == "$.error", name


@pytest.mark.parametrize("step,entry", ENTRIES.items())
def test_recordoutcome_and_rollback_failing_for_good_lead_to_the_last_resort(step, entry):
    # (through the ledger read: a record the step did not close, or a read that fails)
    check, choice, otherwise = LEDGER_CHECKS[step]
    assert STATES[step]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.last_resort", "Next": check}]
    assert otherwise == entry and STATES[choice]["Default"] == entry
    assert STATES[check]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": entry}]
    assert STATES[entry]["Type"] == "Pass" and STATES[entry]["Next"] == LAST_RESORT[0]
    assert STATES[entry]["Parameters"]["status"] in FINAL_STATUSES


def test_the_last_resort_runs_to_its_end_whatever_fails_in_it():
    for name, following in zip(LAST_RESORT, LAST_RESORT[1:]):
        state = STATES[name]
        assert state["Next"] == following
        if name in ATTESTS:  # its failure is an attestation's: the path below, which ends at LastResortFailed
            continue
        assert state["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": f"$.last_resort.{_what(name)}_error",
                                   "Next": following}]
    assert STATES[LAST_RESORT[-1]]["Type"] == "Fail"


def _what(name: str) -> str:
    return name.removeprefix("LastResort").lower()


def test_the_last_resort_calls_dynamodb_and_sns_directly():
    assert [STATES[n]["Resource"] for n in LAST_RESORT[:-2]] == [
        "arn:aws:states:::dynamodb:updateItem",
        "arn:aws:states:::dynamodb:deleteItem",
        "arn:aws:states:::sns:publish",
    ]
    assert STATES["LastResortRecord"]["Parameters"]["TableName"] == "${LedgerTableName}"
    assert STATES["LastResortUnlock"]["Parameters"]["TableName"] == "${LedgerTableName}"
    assert STATES["LastResortAlert"]["Parameters"]["TopicArn"] == "${ApprovalTopicArn}"


def test_the_last_resort_never_overwrites_a_final_status():
    parameters = STATES["LastResortRecord"]["Parameters"]
    condition = parameters["ConditionExpression"]
    names = re.findall(r":final\d+", condition)
    finals = {parameters["ExpressionAttributeValues"][n]["S"] for n in names}
    assert finals == FINAL_STATUSES  # the ledger's list, no more, no less
    assert condition.startswith("attribute_not_exists(#status) OR NOT (#status IN (")


def test_the_last_resort_releases_only_a_lock_this_release_holds():
    parameters = STATES["LastResortUnlock"]["Parameters"]
    assert parameters["Key"] == {"pk": {"S.$": "States.Format('SERVICE#{}', $.service)"}, "sk": {"S": "LOCK"}}
    # the holder, as Ledger.acquire_lock writes it, owing no cancel (lease.py keeps those for the next holder)
    assert parameters["ConditionExpression"] == "release_id = :me AND attribute_not_exists(cleanup)"
    assert parameters["ExpressionAttributeValues"] == {":me": {"S.$": "$.release_id"}}


@pytest.mark.parametrize("name,after", ATTESTS.items())
def test_attest_follows_every_closing_step_and_never_changes_how_the_release_ended(name, after):
    # Given the Attest states: they follow the closing steps, the last resort's included
    assert STATES["Promote"]["Next"] == "Attest"
    assert STATES["Rollback"]["Next"] == STATES["RecordOutcome"]["Next"] == "AttestEnd"
    assert STATES["LastResortAlert"]["Next"] == "LastResortAttest"
    state = STATES[name]
    assert state["Parameters"] == {"FunctionName": "${AttestFunctionArn}", "Payload.$": "$"}
    # Then their result is discarded (the outcome stays what the closing step made it), and a
    # failure, once retried, goes to the attestation-failure path with the error kept apart
    assert state["ResultPath"] is None and state["Next"] == after
    assert state["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.attest_error",
                               "Next": "AttestFailedRecord"}]


def test_a_failed_attestation_is_recorded_alerted_and_ends_where_the_release_was_going():
    record, alert, then = (STATES[n] for n in ATTEST_FAILED)
    # the record and the alert run whatever fails in them, record first
    assert record["Next"] == "AttestFailedAlert" and alert["Next"] == "AttestFailedThen"
    assert record["Catch"][0]["Next"] == "AttestFailedAlert" and alert["Catch"][0]["Next"] == "AttestFailedThen"
    # the ledger: only an existing release record, only its attestation_error
    parameters = record["Parameters"]
    assert parameters["TableName"] == "${LedgerTableName}" and parameters["ConditionExpression"] == "attribute_exists(pk)"
    assert parameters["UpdateExpression"] == "SET attestation_error = :why"
    # the alert: the operations topic, naming the release and the error
    assert alert["Parameters"]["TopicArn"] == "${OperationsTopicArn}"
    assert "$.release_id" in alert["Parameters"]["Message.$"] and "$.attest_error" in alert["Parameters"]["Message.$"]
    # then each Attest's own end: the choice routes every way in to where its Attest would have gone
    ends = {c["Next"] for c in then["Choices"]} | {then["Default"]}
    assert ends == set(ATTESTS.values())


def _statuses(rule: dict[str, Any]) -> set[str]:
    """The statuses a choice rule accepts (StringEquals on the ledger's status, inside And/Or)."""
    found = set()
    if rule.get("Variable") == "$.ledger_check.Item.status.S" and "StringEquals" in rule:
        found.add(rule["StringEquals"])
    for nested in [*rule.get("And", []), *rule.get("Or", [])]:
        found |= _statuses(nested)
    return found


@pytest.mark.parametrize("step", LEDGER_CHECKS)
def test_a_closing_step_failing_for_good_reads_the_ledger_before_acting(step):
    check, choice, otherwise = LEDGER_CHECKS[step]
    # Given the step's catch-all leads to its ledger read
    assert STATES[step]["Catch"][-1]["Next"] == check
    read = STATES[check]
    # Then the read is DynamoDB's, of the release record, strongly consistent (the write it looks
    # for just landed: "Read consistency", Amazon DynamoDB Developer Guide), into $.ledger_check
    assert read["Resource"] == "arn:aws:states:::dynamodb:getItem" and read["Next"] == choice
    parameters = read["Parameters"]
    assert parameters["TableName"] == "${LedgerTableName}" and parameters["ConsistentRead"] is True
    assert parameters["Key"] == {"pk": {"S.$": "States.Format('RELEASE#{}', $.release_id)"}, "sk": {"S": "RELEASE"}}
    assert read["ResultPath"] == "$.ledger_check" and read["Retry"] == SHAPES["last_resort"]
    # And a read that fails changes nothing: on to where the step's failure went before
    assert read["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": otherwise}]
    # And the choice: only the statuses the step's own write (or the lease's new holder) leaves
    # end the release as closed; anything else goes where it went before
    (rule,) = STATES[choice]["Choices"]
    assert rule["Next"] == ENDED[0] and STATES[choice]["Default"] == otherwise
    assert _statuses(rule) == CLOSED_BY[step] and CLOSED_BY[step] <= FINAL_STATUSES
    # the status is tested present first (a missing path must not fail the choice)
    assert rule["And"][0] == {"Variable": "$.ledger_check.Item.status.S", "IsPresent": True}
    if step != "Promote":  # the outcome is built from the record: its error and reason must be there
        text = json.dumps(rule)
        # and the record's error is the one the step was handling: its own write, not a status
        # someone else wrote (an approver's Rejected while RecordOutcome is broken: the last resort's)
        assert {"Variable": "$.ledger_check.Item.error.S", "StringEqualsPath": "$.error.Error"} in rule["And"]
        assert {"Variable": "$.error.Error", "IsPresent": True} in rule["And"]
        assert '"$.ledger_check.Item.error.S", "IsPresent": true' in text
        assert '"$.ledger_check.Item.reason.S", "IsPresent": true' in text
        assert '"StringMatches": "States.*"' in text  # a Fail state can't end with a reserved name


def test_a_release_its_closing_step_closed_ends_as_that_step_would_have_ended_it():
    unlock, then, outcome = (STATES[n] for n in ENDED)
    # the lock, if this release still holds it: the last resort's own conditional delete
    assert unlock["Resource"] == "arn:aws:states:::dynamodb:deleteItem"
    assert unlock["Parameters"] == STATES["LastResortUnlock"]["Parameters"]
    assert unlock["Next"] == "EndedThen" and unlock["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "EndedThen"}]
    # promoted: attested, then the execution succeeds; otherwise the record's outcome, attested, failed
    assert then["Choices"] == [{"Variable": "$.ledger_check.Item.status.S", "StringEquals": "Promoted", "Next": "Attest"}]
    assert then["Default"] == "EndedOutcome"
    assert outcome["Type"] == "Pass" and outcome["ResultPath"] == "$.outcome" and outcome["Next"] == "AttestEnd"
    assert outcome["Parameters"] == {"status.$": "$.ledger_check.Item.status.S",
                                     "error.$": "$.ledger_check.Item.error.S",
                                     "reason.$": "$.ledger_check.Item.reason.S"}
    assert STATES["ReleaseFailed"]["ErrorPath"] == "$.outcome.error"


def test_the_state_that_failed_is_found_past_the_ledger_read():
    # Rollback names the step that failed (outcome.failed_step): the newest state entered that is
    # neither a closing step nor the read between a failed Promote and Rollback
    from modelgate.pipeline.outcome import CLOSING_STATES

    check, choice, _ = LEDGER_CHECKS["Promote"]
    assert {check, choice, "Rollback", "RecordOutcome"} <= CLOSING_STATES
