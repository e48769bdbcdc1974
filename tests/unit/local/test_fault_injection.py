"""Fault injection in the embedded Lambda runtime (modelgate_emulator.faults).

A fault is keyed by function and attempt (never by time): the Nth synchronous invocation
after it is armed fails as AWS fails it, and Step Functions sees the error AWS reports.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from modelgate_emulator import Fault, FaultInjector, LocalAWS
from modelgate_emulator.stepfunctions import exceeds_tolerated_failures

TRANSIENT = ["Lambda.ServiceException", "Lambda.TooManyRequestsException"]


@pytest.fixture
def local(local_aws: LocalAWS) -> Iterator[LocalAWS]:
    """The module's fixture stack with no fault left armed after each test."""
    yield local_aws
    assert local_aws.runtime is not None
    local_aws.runtime.faults.clear()


def no_retry_client() -> Any:
    """A Lambda client that shows each Invoke's own answer (botocore would retry a 429/500)."""
    return boto3.client("lambda", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}))


def invoke(local: LocalAWS, function: str, event: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    response = no_retry_client().invoke(FunctionName=local.function_name(function), Payload=json.dumps(event).encode())
    return response, json.loads(response["Payload"].read() or b"null")


def run_machine(local: LocalAWS, task_extra: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One Echo task in an ad-hoc machine (the stack's role); its description and history."""
    sfn = local.client("stepfunctions")
    role = local.client("iam").get_role(RoleName=local.stack.physical_id("MachineRole"))["Role"]["Arn"]
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": local.stack.function("EchoFunction").arn, "Payload": {"n": 1}},
        "End": True,
        **task_extra,
    }
    arn = sfn.create_state_machine(
        name=f"faults-{uuid.uuid4().hex[:10]}", definition=json.dumps({"StartAt": "Echo", "States": {"Echo": task}}),
        roleArn=role,
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    description = local.wait_for_execution(execution, timeout=30)
    return description, sfn.get_execution_history(executionArn=execution)["events"]


# ------------------------------------------------------------------ the injector alone
def test_attempts_are_counted_per_function_from_when_the_fault_is_armed():
    # Given a function invoked twice before a fault is armed for its attempts 2 and 4
    faults = FaultInjector()
    faults.take("fn", "r0")
    faults.take("fn", "r1")
    faults.inject("fn", Fault.throttled(), attempts={2, 4})
    # When it is invoked five more times, and another function once
    taken = [faults.take("fn", f"r{i}") for i in range(2, 7)]
    other = faults.take("other", "x")
    # Then exactly the 2nd and 4th invocations after arming failed, nothing else
    assert [t is not None for t in taken] == [False, True, False, True, False]
    assert other is None
    assert [(f.attempt, f.request_id) for f in faults.fired("fn")] == [(2, "r3"), (4, "r5")]
    assert faults.invocations("fn") == 7


def test_from_attempt_fails_that_attempt_and_every_later_one_until_cleared():
    faults = FaultInjector()
    faults.inject("fn", Fault.unhandled(), from_attempt=2)
    assert [faults.take("fn", str(i)) is not None for i in range(4)] == [False, True, True, True]
    faults.clear("fn")
    assert faults.take("fn", "later") is None
    assert len(faults.fired()) == 3  # what fired is kept after clearing


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({}, "give attempts, from_attempt, or both"),
        ({"attempts": [0]}, "counted from 1"),
        ({"attempts": [True]}, "counted from 1"),
        ({"from_attempt": 0}, "counted from 1"),
    ],
)
def test_bad_attempts_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FaultInjector().inject("fn", Fault.throttled(), **kwargs)


def test_bad_faults_are_refused_by_name():
    with pytest.raises(ValueError, match="not an exception name"):
        Fault.unhandled("not a name!")
    with pytest.raises(ValueError, match="without dots"):
        Fault.unhandled("Lambda.Unknown")
    with pytest.raises(ValueError, match="one of TooManyRequestsException"):
        Fault("ServiceException", "m", 503)
    with pytest.raises(ValueError, match="never reaches the function"):
        Fault("TooManyRequestsException", "m", 429, after_handler=True)
    with pytest.raises(ValueError, match="a fault needs a function name"):
        FaultInjector().inject("", Fault.throttled(), attempts=[1])
    with pytest.raises(TypeError, match="must be a Fault"):
        FaultInjector().inject("fn", "ServiceException", attempts=[1])  # type: ignore[arg-type]


# ------------------------------------------------------------------ Invoke, as a caller sees it
def test_a_throttle_answers_429_and_the_function_does_not_run(local):
    # Given Echo's next invocation is throttled
    ran_before = len(local.invocations("EchoFunction"))
    fired_before = len(local.runtime.faults.fired())  # what earlier tests' faults fired stays recorded
    name = local.inject_fault("EchoFunction", Fault.throttled(), attempts=[1])
    # When it is invoked / Then Invoke fails with Lambda's throttle, and the handler never ran
    with pytest.raises(ClientError) as caught:
        invoke(local, "EchoFunction", {"a": 1})
    error = caught.value.response
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error.get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert len(local.invocations("EchoFunction")) == ran_before
    # And the next invocation is served normally
    _, body = invoke(local, "EchoFunction", {"a": 2})
    assert body["event"] == {"a": 2}
    assert [(f.function_name, f.attempt) for f in local.runtime.faults.fired()[fired_before:]] == [(name, 1)]


def test_a_service_error_after_the_handler_ran_loses_its_result(local):
    # Given Echo's result is lost on the way back (a 500 after the handler ran)
    ran_before = len(local.invocations("EchoFunction"))
    local.inject_fault("EchoFunction", Fault.service_error(after_handler=True), attempts=[1])
    # When it is invoked
    with pytest.raises(ClientError) as caught:
        invoke(local, "EchoFunction", {"a": 1})
    # Then the caller sees ServiceException (500), although the handler did run, successfully
    assert caught.value.response["Error"]["Code"] == "ServiceException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    runs = local.invocations("EchoFunction")[ran_before:]
    assert len(runs) == 1 and runs[0].error_type is None


def test_an_unhandled_fault_is_a_function_error_in_the_runtimes_shape(local):
    # Given Echo fails permanently from its second invocation on
    local.inject_fault("EchoFunction", Fault.unhandled("DiskFull", "no space left"), from_attempt=2)
    # When it is invoked three times
    first, _ = invoke(local, "EchoFunction", {})
    results = [invoke(local, "EchoFunction", {}) for _ in range(2)]
    # Then the first succeeded and the next two failed like a raising handler
    assert "FunctionError" not in first
    for response, body in results:
        assert response["FunctionError"] == "Unhandled"
        assert (body["errorType"], body["errorMessage"]) == ("DiskFull", "no space left")
        assert body["requestId"]
    assert [r.error_type for r in local.invocations("EchoFunction")[-2:]] == ["DiskFull", "DiskFull"]


def logged(local: LocalAWS, function: str) -> list[str]:
    from modelgate_emulator.logs import read_events

    return [e["message"] for e in read_events(local.client("logs"), local.function_name(function))]


def test_a_timeout_after_the_handler_ran_keeps_its_side_effects_and_reports_the_timeout(local):
    # Given LogsBeta's next invocation times out after its handler ran to its end
    before = len(logged(local, "LogsBetaFunction"))
    fired_before = len(local.runtime.faults.fired())  # what earlier tests' faults fired stays recorded
    name = local.inject_fault("LogsBetaFunction", Fault.timed_out(after_handler=True), attempts=[1])
    # When it is invoked
    response, body = invoke(local, "LogsBetaFunction", {})
    # Then the caller sees the runtime's timeout: a function error Sandbox.Timedout, "Task timed out after 5.00 seconds"
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert body["errorMessage"] == f"RequestId: {body['requestId']} Error: Task timed out after 5.00 seconds"
    # And the handler did run (what it printed is in its log), and the log ends as a timed-out invocation's
    messages = logged(local, "LogsBetaFunction")[before:]
    assert "plain print from beta" in messages
    assert any(m.endswith(f"{body['requestId']} Task timed out after 5.00 seconds") for m in messages)
    assert not any(m.startswith("[ERROR]") for m in messages)
    record = local.invocations("LogsBetaFunction")[-1]
    assert record.error_type == "Sandbox.Timedout"
    assert record.duration_ms == 5000.0  # its Duration is the Timeout, as a real timeout's is
    assert [(f.function_name, f.attempt, f.fault.error) for f in local.runtime.faults.fired()[fired_before:]] == [
        (name, 1, "Sandbox.Timedout")]


def test_a_timeout_before_the_handler_completed_has_no_side_effects(local):
    # Given LogsBeta's next invocation times out without its handler completing
    before = len(logged(local, "LogsBetaFunction"))
    local.inject_fault("LogsBetaFunction", Fault.timed_out(), attempts=[1])
    # When it is invoked twice
    response, body = invoke(local, "LogsBetaFunction", {})
    second, served = invoke(local, "LogsBetaFunction", {})
    # Then the first reports the timeout and its handler left nothing behind (nothing printed before the second ran)
    assert (response["FunctionError"], body["errorType"]) == ("Unhandled", "Sandbox.Timedout")
    assert "Task timed out after 5.00 seconds" in body["errorMessage"]
    messages = logged(local, "LogsBetaFunction")[before:]
    timed_out = next(i for i, m in enumerate(messages) if m.endswith("Task timed out after 5.00 seconds"))
    assert "plain print from beta" not in messages[:timed_out]
    # And the second is served normally
    assert "FunctionError" not in second and served["who"] == "beta"


@pytest.mark.parametrize("after_handler", [True, False])
def test_step_functions_sees_a_timeout_as_sandbox_timedout_and_retries_it_by_that_name(local, after_handler):
    # Given Echo's next invocation times out
    local.inject_fault("EchoFunction", Fault.timed_out(after_handler=after_handler), attempts=[1])
    # When a task that retries the timeout names (and nothing else) invokes it
    description, history = run_machine(local, {"Retry": [
        {"ErrorEquals": ["Sandbox.Timedout", "Lambda.Unknown"], "IntervalSeconds": 1, "MaxAttempts": 2,
         "BackoffRate": 2.0}]})
    # Then the task failed once with the runtime's error name and cause, was retried, and succeeded
    failed = [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]
    assert [f["error"] for f in failed] == ["Sandbox.Timedout"]
    assert "Task timed out after" in json.loads(failed[0]["cause"])["errorMessage"]
    assert description["status"] == "SUCCEEDED"


def test_a_timeout_fault_is_only_built_as_one():
    assert Fault.timed_out().error == "Sandbox.Timedout" and not Fault.timed_out().transient
    with pytest.raises(ValueError, match="use Fault.timed_out"):
        Fault("Sandbox.Timedout", "m")
    with pytest.raises(ValueError, match="use Fault.timed_out"):
        Fault("Slow", "m", timeout=True)
    with pytest.raises(ValueError, match="not an Invoke error"):
        Fault("Sandbox.Timedout", "m", 500, timeout=True)
    with pytest.raises(ValueError, match="is a function error, not an Invoke error"):
        Fault.timed_out().invoke_error()


def test_a_fault_for_an_unknown_function_is_refused(local):
    with pytest.raises(ValueError, match="no such function"):
        local.inject_fault("NoSuchFunction", Fault.throttled(), attempts=[1])


# ------------------------------------------------------------------ what Step Functions sees
def test_step_functions_retries_the_transient_faults_by_their_lambda_error_names(local):
    # Given Echo's next two invocations fail transiently (a throttle, then a lost result)
    local.inject_fault("EchoFunction", Fault.throttled(), attempts=[1])
    local.inject_fault("EchoFunction", Fault.service_error(after_handler=True), attempts=[2])
    # When a task that retries AWS's transient Lambda errors invokes it
    description, history = run_machine(local, {"Retry": [
        {"ErrorEquals": TRANSIENT, "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0}]})
    # Then the task failed twice with the names AWS reports, was retried, and succeeded
    failed = [e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"]
    assert failed == ["Lambda.TooManyRequestsException", "Lambda.ServiceException"]
    assert description["status"] == "SUCCEEDED"
    assert json.loads(description["output"])["Payload"]["event"] == {"n": 1}


def test_step_functions_does_not_retry_a_function_error_as_transient(local):
    # Given Echo fails for good
    local.inject_fault("EchoFunction", Fault.unhandled(), from_attempt=1)
    # When the same retrying task invokes it
    description, history = run_machine(local, {"Retry": [
        {"ErrorEquals": TRANSIENT, "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0}]})
    # Then it failed once, by the exception's name
    assert next(e for e in history if e["type"] == "TaskFailed")["taskFailedEventDetails"]["error"] == "InjectedFault"
    assert len([e for e in history if e["type"] == "TaskScheduled"]) == 1
    assert (description["status"], description["error"]) == ("FAILED", "InjectedFault")


def run_map(local: LocalAWS, **tolerance: Any) -> dict[str, Any]:
    """A Distributed Map over two items, each invoking Echo once."""
    sfn = local.client("stepfunctions")
    role = local.client("iam").get_role(RoleName=local.stack.physical_id("MachineRole"))["Role"]["Arn"]
    item = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True,
            "Parameters": {"FunctionName": local.stack.function("EchoFunction").arn, "Payload.$": "$"}}
    definition = {"StartAt": "Each", "States": {"Each": {
        "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1, "End": True, **tolerance,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": "Echo", "States": {"Echo": item}}}}}
    arn = sfn.create_state_machine(name=f"faults-{uuid.uuid4().hex[:10]}", definition=json.dumps(definition),
                                   roleArn=role)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"items": [{"i": 1}, {"i": 2}]}))
    return local.wait_for_execution(execution["executionArn"], timeout=30)


def test_a_failed_item_fails_a_distributed_map_run_by_default(local):
    # Given the second item's invocation fails for good
    local.inject_fault("EchoFunction", Fault.unhandled(), attempts=[2])
    # When a Distributed Map with no tolerated failures runs both items
    description = run_map(local)
    # Then the Map Run fails as AWS's does (moto would succeed with a null result)
    assert (description["status"], description["error"]) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    assert "1 of 2 items failed" in description["cause"]


def test_a_tolerated_item_failure_leaves_the_map_run_succeeding(local):
    local.inject_fault("EchoFunction", Fault.unhandled(), attempts=[2])
    description = run_map(local, ToleratedFailureCount=1)
    assert description["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    "failed,total,count,percentage,fails",
    [(0, 5, 0, 0.0, False), (1, 5, 0, 0.0, True), (1, 5, 1, 0.0, False), (2, 5, 1, 0.0, True),
     (1, 10, 0, 10.0, False), (2, 10, 0, 10.0, True), (1, 1, None, None, True)],
)
def test_tolerated_failure_thresholds(failed, total, count, percentage, fails):
    assert exceeds_tolerated_failures(failed, total, count, percentage) is fails


# ---------------------------------------------------------------------- throttled SDK calls
@pytest.fixture
def backoff(monkeypatch) -> list[float]:
    """botocore's standard-mode backoff, as computed for each retry (recorded), without the
    sleep: the retries and their growing waits are botocore's own, and no test waits on a clock."""
    from botocore.retries.standard import ExponentialBackoff

    computed: list[float] = []
    original = ExponentialBackoff.delay_amount

    def delay_amount(self, context):
        computed.append(original(self, context))
        return 0.0

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", delay_amount)
    return computed


@pytest.fixture
def sdk_faults(local: LocalAWS) -> Iterator[LocalAWS]:
    yield local
    local.sdk_faults.clear()


def _table(local: LocalAWS) -> str:
    return local.stack.resources["Table"].physical_id


def test_the_pipelines_retry_mode_absorbs_a_few_throttled_dynamodb_writes(sdk_faults, backoff):
    from modelgate.adapters import clients

    # Given DynamoDB throttles the next two PutItem calls
    throttle = sdk_faults.throttle_sdk("dynamodb", "PutItem", times=2)
    assert throttle.error == "ThrottlingException"
    # When a pipeline client (standard retry mode, 5 attempts) writes
    response = clients.client("dynamodb").put_item(
        TableName=_table(sdk_faults), Item={"pk": {"S": "throttled"}, "service": {"S": "svc"}})
    # Then botocore retried twice, with exponential backoff for throttles (rand * 2**i seconds), and the write landed
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert len(backoff) == 2 and 0 <= backoff[0] <= 1 and 0 <= backoff[1] <= 2
    assert [f.error for f in sdk_faults.sdk_faults.fired()[-2:]] == ["ThrottlingException"] * 2
    item = clients.client("dynamodb").get_item(TableName=_table(sdk_faults), Key={"pk": {"S": "throttled"}})
    assert item["Item"]["service"] == {"S": "svc"}


def test_a_persistent_throttle_ends_the_call_after_the_retry_modes_retries(sdk_faults, backoff):
    from modelgate.adapters import clients

    # Given Lambda throttles every UpdateAlias of the service function
    function = sdk_faults.function_name("ServiceFunction")
    before = clients.client("lambda").get_alias(FunctionName=function, Name="live")["FunctionVersion"]
    sdk_faults.throttle_sdk("lambda", "UpdateAlias", times=None)
    fired_before = len(sdk_faults.sdk_faults.fired())
    # When a pipeline client moves the alias / Then it gives up with Lambda's throttle after its
    # "max_attempts": 5 retries (boto3's retries key counts retries, so 6 calls in all)
    with pytest.raises(ClientError) as raised:
        clients.client("lambda").update_alias(FunctionName=function, Name="live", FunctionVersion="$LATEST")
    error = raised.value.response
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429 and error["ResponseMetadata"]["RetryAttempts"] == 5
    assert len(sdk_faults.sdk_faults.fired()) - fired_before == 6 and len(backoff) == 5
    assert backoff[4] <= 16  # the fifth wait's bound: 1 s * 2**4 (at most 20 s)
    # and nothing moved
    sdk_faults.sdk_faults.clear()
    assert clients.client("lambda").get_alias(FunctionName=function, Name="live")["FunctionVersion"] == before


def test_a_persistent_kms_throttle_ends_a_sign_call_as_kms_answers_it(sdk_faults, backoff):
    from modelgate.adapters import clients

    # Given a signing key, and KMS throttling every Sign call
    kms = clients.client("kms")
    key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]["KeyId"]
    sdk_faults.throttle_sdk("kms", "Sign", times=None)
    fired_before = len(sdk_faults.sdk_faults.fired())
    # When a pipeline client signs / Then it gives up after its retries with KMS's throttle (HTTP 400)
    with pytest.raises(ClientError) as raised:
        kms.sign(KeyId=key, Message=b"0" * 32, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")
    error = raised.value.response
    assert error["Error"]["Code"] == "ThrottlingException" and "rate at which you may call KMS" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400 and error["ResponseMetadata"]["RetryAttempts"] == 5
    assert len(sdk_faults.sdk_faults.fired()) - fired_before == 6
    # And once the throttle is gone the key signs again
    sdk_faults.sdk_faults.clear()
    assert kms.sign(KeyId=key, Message=b"0" * 32, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")["Signature"]


def test_a_throttle_for_one_function_leaves_other_callers_alone(sdk_faults, backoff):
    from modelgate.adapters import clients

    sdk_faults.throttle_sdk("dynamodb", "PutItem", times=None, function="ServiceFunction")
    response = clients.client("dynamodb").put_item(TableName=_table(sdk_faults), Item={"pk": {"S": "test-code"}})
    assert response["ResponseMetadata"]["RetryAttempts"] == 0 and backoff == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("sqs", "SendMessage"), "no throttle shape for service 'sqs'"),
        (("dynamodb", "put_item"), "is not an API operation name"),
        (("dynamodb", "PutItem", {"times": 0}), "times counts throttled calls from 1"),
        (("dynamodb", "PutItem", {"error": "SlowDown"}), "DynamoDB throttles with one of"),
        (("lambda", "UpdateAlias", {"error": "ThrottlingException"}), "lambda throttles with TooManyRequestsException"),
        (("kms", "Sign", {"error": "KMSInternalException"}), "kms throttles with ThrottlingException"),
    ],
)
def test_a_bad_throttle_is_refused_naming_the_problem(args, says):
    from modelgate_emulator.faults import SdkThrottle

    service, operation, *rest = args
    options = {"times": 1, **(rest[0] if rest else {})}
    with pytest.raises(ValueError, match=says):
        SdkThrottle.of(service, operation, **options)
