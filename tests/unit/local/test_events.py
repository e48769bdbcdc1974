"""EventBridge shim: Lambda / Step Functions delivery, rule state, input shaping, retries."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from modelgate_emulator import events
from modelgate_emulator.events import render_input_template
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.events.models import Rule

REGION = "us-east-1"
ACCOUNT = DEFAULT_ACCOUNT_ID
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:intake"
DEADLINE_SECONDS = 15.0
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config=MOTO_CONFIG):
        yield


class FakeInvoker:
    """Stands in for the runtime's async Lambda invoke; fails its first ``failures`` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.failures = failures
        self._lock = threading.Lock()

    def __call__(self, function_arn: str, payload: bytes) -> None:
        with self._lock:
            self.calls.append((function_arn, payload))
            if len(self.calls) <= self.failures:
                raise RuntimeError(f"TooManyRequestsException (call {len(self.calls)})")

    def payloads(self) -> list[Any]:
        return [json.loads(payload) for _, payload in self.calls]


@pytest.fixture
def invoker(aws: None) -> Iterator[FakeInvoker]:
    fake = FakeInvoker()
    uninstall = events.install(invoke_async=fake)
    yield fake
    uninstall()


@pytest.fixture
def eb(aws: None) -> Any:
    return boto3.client("events", region_name=REGION)


def rule_with_target(eb: Any, target: dict[str, Any], *, name: str = "intake", **rule: Any) -> None:
    params: dict[str, Any] = {
        "Name": name,
        "EventPattern": json.dumps({"source": ["modelgate.test"]}),
    }
    params.update(rule)
    eb.put_rule(**params)
    eb.put_targets(Rule=name, Targets=[{"Id": "t1", **target}])


def put_event(eb: Any, detail: dict[str, Any]) -> None:
    entries = eb.put_events(
        Entries=[
            {
                "Source": "modelgate.test",
                "DetailType": "Release Requested",
                "Detail": json.dumps(detail),
            }
        ]
    )
    assert entries["FailedEntryCount"] == 0


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.02)


# --------------------------------------------------------------------------- delivery


def test_lambda_target_gets_the_event_as_aws_sends_it(eb: Any, invoker: FakeInvoker) -> None:
    # Given a rule with a Lambda target
    rule_with_target(eb, {"Arn": FUNCTION_ARN})

    # When a matching event is put
    put_event(eb, {"service": "chat"})

    # Then the function is invoked with the event
    [(arn, _)] = invoker.calls
    assert arn == FUNCTION_ARN
    [event] = invoker.payloads()
    assert event["source"] == "modelgate.test"
    assert event["detail-type"] == "Release Requested"
    assert event["detail"] == {"service": "chat"}
    assert event["account"] == ACCOUNT
    assert event["region"] == REGION
    assert ISO_SECONDS.match(event["time"])
    assert "ingestion-time" not in event


def test_non_matching_events_are_not_delivered(eb: Any, invoker: FakeInvoker) -> None:
    rule_with_target(eb, {"Arn": FUNCTION_ARN})

    eb.put_events(Entries=[{"Source": "other", "DetailType": "x", "Detail": "{}"}])

    assert invoker.calls == []


def test_s3_object_created_reaches_a_lambda_target(
    aws: None, eb: Any, invoker: FakeInvoker
) -> None:
    # Given a bucket sending its notifications to EventBridge and a rule for created objects
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="releases")
    s3.put_bucket_notification_configuration(
        Bucket="releases", NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    rule_with_target(
        eb,
        {"Arn": FUNCTION_ARN},
        EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}),
    )

    # When a manifest is uploaded
    s3.put_object(Bucket="releases", Key="releases/chat/abc/model-config.json", Body=b"{}")

    # Then intake gets the S3 event
    [event] = invoker.payloads()
    assert event["detail"]["object"]["key"] == "releases/chat/abc/model-config.json"
    assert ISO_SECONDS.match(event["time"])


def test_s3_events_name_the_callers_account_as_requester_as_aws_does(aws: None, eb: Any) -> None:
    # Given delivery that knows who is calling: a principal of another account, then a service
    caller = {"requester": "210987654321"}
    fake = FakeInvoker()
    uninstall = events.install(invoke_async=fake, requester=lambda: caller["requester"])
    try:
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="releases")
        s3.put_bucket_notification_configuration(
            Bucket="releases", NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        rule_with_target(eb, {"Arn": FUNCTION_ARN},
                         EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"]}))
        # When each uploads
        s3.put_object(Bucket="releases", Key="a", Body=b"{}")
        caller["requester"] = "s3.amazonaws.com"
        s3.put_object(Bucket="releases", Key="b", Body=b"{}")
    finally:
        uninstall()
    # Then each event names its requester (an account ID or a service principal: never an ARN), not moto's constant
    assert [(e["detail"]["requester"], e["detail"]["source-ip-address"]) for e in fake.payloads()] == [
        ("210987654321", "127.0.0.1"), ("s3.amazonaws.com", "127.0.0.1")]


def make_queue(name: str) -> tuple[Any, str, str]:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return sqs, url, arn


def received(sqs: Any, queue_url: str) -> list[Any]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"])["detail"] for m in messages]


def test_disabled_rule_does_not_fire(eb: Any, invoker: FakeInvoker) -> None:
    # Given a disabled rule (an SQS target: the fix holds for every target type)
    sqs, queue_url, queue_arn = make_queue("disabled")
    rule_with_target(eb, {"Arn": queue_arn}, State="DISABLED")

    # When a matching event is put
    put_event(eb, {"n": 1})

    # Then nothing is delivered
    assert received(sqs, queue_url) == []

    # When the rule is enabled
    eb.enable_rule(Name="intake")
    put_event(eb, {"n": 2})

    # Then it fires
    assert received(sqs, queue_url) == [{"n": 2}]


def test_a_schedule_rule_is_not_triggered_by_events(eb: Any, invoker: FakeInvoker) -> None:
    # Given a schedule-only rule (moto gives it an empty pattern that matches everything)
    sqs, queue_url, queue_arn = make_queue("drift")
    eb.put_rule(Name="drift", ScheduleExpression="rate(1 hour)")
    eb.put_targets(Rule="drift", Targets=[{"Id": "t1", "Arn": queue_arn}])

    # When any event is put
    put_event(eb, {"n": 1})

    # Then the scheduled target is not run
    assert received(sqs, queue_url) == []


def test_step_functions_target_starts_an_execution(eb: Any, invoker: FakeInvoker) -> None:
    # Given a state machine and a rule targeting it
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(
        name="release-pipeline",
        definition=json.dumps(
            {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
        ),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
    )["stateMachineArn"]
    rule_with_target(eb, {"Arn": machine, "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/events"})

    # When a matching event is put
    put_event(eb, {"n": 1})

    # Then it starts an execution named by a uuid, with the event as input, that runs
    def executions() -> list[dict[str, Any]]:
        return sfn.list_executions(stateMachineArn=machine)["executions"]

    wait_until(lambda: len(executions()) == 1)
    [execution] = executions()
    uuid.UUID(execution["name"])
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    started = json.loads(described["input"])
    assert (started["source"], started["detail"]) == ("modelgate.test", {"n": 1})
    assert ISO_SECONDS.match(started["time"])
    wait_until(
        lambda: (
            sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "SUCCEEDED"
        )
    )


def test_step_functions_target_can_go_through_the_runtime(eb: Any) -> None:
    # Given the runtime's own start_execution
    started: list[tuple[str, str]] = []
    uninstall = events.install(
        invoke_async=FakeInvoker(), start_execution=lambda arn, body: started.append((arn, body))
    )
    try:
        machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:release-pipeline"
        rule_with_target(eb, {"Arn": machine, "InputPath": "$.detail"})

        # When a matching event is put
        put_event(eb, {"release": "r-1"})

        # Then it is called with the machine and the shaped input
        assert started == [(machine, '{"release": "r-1"}')]
    finally:
        uninstall()


# --------------------------------------------------------------------------- input


def test_input_transformer_quotes_values_like_aws(eb: Any, invoker: FakeInvoker) -> None:
    # Given a transformer using placeholders outside and inside JSON strings
    template = (
        '{"service": <service>, "message": "release of <service> by \\"<who>\\" is <state>", '
        '"count": <count>, "tags": <tags>, "nothing": <nothing>, "rule": "<aws.events.rule-name>", '
        '"html": "<b>"}'
    )
    rule_with_target(
        eb,
        {
            "Arn": FUNCTION_ARN,
            "InputTransformer": {
                "InputPathsMap": {
                    "service": "$.detail.service",
                    "who": "$.detail.who",
                    "state": "$.detail.state",
                    "count": "$.detail.count",
                    "tags": "$.detail.tags",
                    "nothing": "$.detail.absent",
                },
                "InputTemplate": template,
            },
        },
    )

    # When an event is put
    put_event(
        eb, {"service": "chat", "who": "ci", "state": "PENDING", "count": 3, "tags": ["a", "b"]}
    )

    # Then strings outside quotes are JSON, inside quotes raw
    assert invoker.payloads() == [
        {
            "service": "chat",
            "message": 'release of chat by "ci" is PENDING',
            "count": 3,
            "tags": ["a", "b"],
            "nothing": None,
            "rule": "intake",
            "html": "<b>",
        }
    ]


def test_sqs_target_gets_the_transformed_input_too(eb: Any, invoker: FakeInvoker) -> None:
    # Given an SQS target with a transformer (moto pastes the value unquoted: invalid JSON)
    sqs, queue_url, queue_arn = make_queue("audit")
    rule_with_target(
        eb,
        {
            "Arn": queue_arn,
            "InputTransformer": {
                "InputPathsMap": {"service": "$.detail.service"},
                "InputTemplate": '{"service": <service>, "note": "for <service>"}',
            },
        },
    )

    # When an event is put
    put_event(eb, {"service": "chat"})

    # Then the message body is the transformed JSON
    [message] = sqs.receive_message(QueueUrl=queue_url)["Messages"]
    assert json.loads(message["Body"]) == {"service": "chat", "note": "for chat"}


def test_text_input_template_inserts_values_raw(eb: Any, invoker: FakeInvoker) -> None:
    rule_with_target(
        eb,
        {
            "Arn": FUNCTION_ARN,
            "InputTransformer": {
                "InputPathsMap": {"service": "$.detail.service", "state": "$.detail.state"},
                "InputTemplate": '<service> is in state "<state>"',
            },
        },
    )

    put_event(eb, {"service": "chat", "state": "LIVE"})

    assert invoker.calls[0][1] == b'chat is in state "LIVE"'


def test_input_and_input_path(eb: Any, invoker: FakeInvoker) -> None:
    # Given one rule with a constant Input target and one with an InputPath target
    rule_with_target(eb, {"Arn": FUNCTION_ARN, "Input": '{"mode": "drift"}'}, name="constant")
    rule_with_target(eb, {"Arn": FUNCTION_ARN, "InputPath": "$.detail.release"}, name="path")

    # When an event is put
    put_event(eb, {"release": {"id": "r-1"}})

    # Then each gets its own shape
    assert sorted(invoker.payloads(), key=json.dumps) == sorted(
        [{"mode": "drift"}, {"id": "r-1"}], key=json.dumps
    )


def test_render_input_template_escapes_inside_strings_to_stay_json() -> None:
    rendered = render_input_template('{"msg": "said <x>", "raw": <x>}', {"x": 'a "quote"'})

    assert json.loads(rendered) == {"msg": 'said a "quote"', "raw": 'a "quote"'}


def test_aws_predefined_event_variables() -> None:
    event = {"id": "1", "source": "s", "detail": {"k": 1}, "time": "2030-01-01T00:00:00Z"}

    payload = events.target_input(
        {
            "InputTransformer": {
                "InputTemplate": '{"e": <aws.events.event>, "j": <aws.events.event.json>}'
            }
        },
        event,
        rule_arn="arn:rule",
        rule_name="r",
    )

    assert json.loads(payload) == {
        "e": {"id": "1", "source": "s", "time": "2030-01-01T00:00:00Z"},
        "j": event,
    }


# --------------------------------------------------------------------------- failures


def test_failed_delivery_is_retried_per_retry_policy(aws: None, eb: Any) -> None:
    # Given a function that is throttled twice
    fake = FakeInvoker(failures=2)
    uninstall = events.install(invoke_async=fake)
    try:
        rule_with_target(eb, {"Arn": FUNCTION_ARN, "RetryPolicy": {"MaximumRetryAttempts": 5}})

        # When an event is put
        put_event(eb, {"n": 1})

        # Then the third attempt delivers it, and no more attempts follow
        wait_until(lambda: len(fake.calls) == 3)
        time.sleep(0.3)
        assert len(fake.calls) == 3
    finally:
        uninstall()


def test_each_target_retries_to_its_own_arn(aws: None, eb: Any) -> None:
    # Given two Lambda targets on one rule, both throttled on their first attempt
    fake = FakeInvoker(failures=2)
    uninstall = events.install(invoke_async=fake)
    other = FUNCTION_ARN.replace(":intake", ":audit")
    try:
        eb.put_rule(Name="intake", EventPattern=json.dumps({"source": ["modelgate.test"]}))
        eb.put_targets(
            Rule="intake", Targets=[{"Id": "a", "Arn": FUNCTION_ARN}, {"Id": "b", "Arn": other}]
        )

        # When an event is put
        put_event(eb, {"n": 1})

        # Then each retry goes to the target that failed
        wait_until(lambda: len(fake.calls) == 4)
        assert sorted(arn for arn, _ in fake.calls[2:]) == sorted([FUNCTION_ARN, other])
    finally:
        uninstall()


def test_exhausted_retries_are_logged_and_dead_lettered(
    aws: None, eb: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a function that always fails, one retry allowed, and a dead-letter queue
    sqs, queue_url, queue_arn = make_queue("intake-dlq")
    fake = FakeInvoker(failures=10**6)
    uninstall = events.install(invoke_async=fake)
    caplog.set_level(logging.ERROR, logger="modelgate_emulator.events")
    try:
        rule_with_target(
            eb,
            {
                "Arn": FUNCTION_ARN,
                "RetryPolicy": {"MaximumRetryAttempts": 1},
                "DeadLetterConfig": {"Arn": queue_arn},
            },
        )

        # When an event is put
        put_event(eb, {"n": 1})

        # Then after two attempts it lands in the dead-letter queue with the reason
        messages: list[dict[str, Any]] = []

        def dead_lettered() -> bool:
            messages.extend(
                sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"]).get(
                    "Messages", []
                )
            )
            return bool(messages)

        wait_until(dead_lettered)
        assert len(fake.calls) == 2
        assert json.loads(messages[0]["Body"])["detail"] == {"n": 1}
        assert messages[0]["MessageAttributes"]["TARGET_ARN"]["StringValue"] == FUNCTION_ARN
        assert messages[0]["MessageAttributes"]["ERROR_CODE"]["StringValue"] == "RuntimeError"
        # and the drop is logged, never silent
        assert any("DROPPED after 2 attempt(s)" in r.getMessage() for r in caplog.records)
    finally:
        uninstall()


def test_a_failing_target_does_not_stop_the_others_and_sqs_still_works(aws: None, eb: Any) -> None:
    # Given a rule with a failing Lambda target (no retries) and an SQS target
    sqs, queue_url, queue_arn = make_queue("audit")
    uninstall = events.install(invoke_async=FakeInvoker(failures=10**6))
    try:
        eb.put_rule(Name="intake", EventPattern=json.dumps({"source": ["modelgate.test"]}))
        eb.put_targets(
            Rule="intake",
            Targets=[
                {"Id": "fn", "Arn": FUNCTION_ARN, "RetryPolicy": {"MaximumRetryAttempts": 0}},
                {"Id": "queue", "Arn": queue_arn},
            ],
        )

        # When an event is put
        put_event(eb, {"n": 1})

        # Then the queue still gets it, through moto's own SQS delivery
        assert received(sqs, queue_url) == [{"n": 1}]
    finally:
        uninstall()


def test_log_group_targets_still_go_through_moto(eb: Any, invoker: FakeInvoker) -> None:
    # Given a rule writing to a CloudWatch Logs group (moto's own delivery)
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName="/aws/events/audit")
    rule_with_target(eb, {"Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/events/audit"})

    # When an event is put
    put_event(eb, {"n": 1})

    # Then the event is in the log group
    [logged] = logs.filter_log_events(logGroupName="/aws/events/audit")["events"]
    assert json.loads(logged["message"])["detail"] == {"n": 1}


def test_uninstall_restores_moto(aws: None) -> None:
    original = Rule.send_to_targets

    events.install(invoke_async=FakeInvoker())()

    assert Rule.send_to_targets is original
