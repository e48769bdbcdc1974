"""EventBridge Scheduler on the embedded AWS: schedules run on the runtime's clock; Bedrock's
GetFoundationModel with a lifecycle state; CloudFormation's schedules and dashboards."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.exceptions import ClientError
from modelgate_emulator import bedrock
from modelgate_emulator.clock import ManualClock
from modelgate_emulator.scheduler import ScheduleRunner, check_schedule, parse_expression
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

REGION = "us-east-1"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:monitor"
ROLE_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/scheduler"


@pytest.fixture
def scheduler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("scheduler", region_name=REGION)


class Invocations:
    """The runtime's asynchronous invoke and the role check, recorded; ``fail``: how many invokes are
    throttled first; ``refuse``: the actions the role may not take."""

    def __init__(self, refuse: bool | set[str] = False, fail: int = 0) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.refuse = {"lambda:InvokeFunction"} if refuse is True else set(refuse or ())
        self.fail = fail

    def invoke_async(self, arn: str, payload: bytes) -> None:
        if self.fail:
            self.fail -= 1
            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}, "Invoke")
        self.calls.append((arn, json.loads(payload)))

    def authorize(self, role_arn: str, arn: str, action: str) -> None:
        if action in self.refuse:
            raise PermissionError(f"{role_arn} may not {action} {arn}")


def create(scheduler: Any, name: str, expression: str, **extra: Any) -> None:
    scheduler.create_schedule(
        Name=name, ScheduleExpression=expression, FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": FUNCTION_ARN, "RoleArn": ROLE_ARN, "Input": json.dumps({"task": name})}, **extra,
    )


def runner(clock: ManualClock, invocations: Invocations) -> ScheduleRunner:
    return ScheduleRunner(account_id=DEFAULT_ACCOUNT_ID, region=REGION, clock=clock,
                          invoke_async=invocations.invoke_async, authorize=invocations.authorize)


@pytest.mark.parametrize(
    ("expression", "parsed"),
    [("rate(1 minute)", ("rate", 60.0)), ("rate(5 minutes)", ("rate", 300.0)), ("rate(2 hours)", ("rate", 7200.0)),
     ("rate(1 day)", ("rate", 86400.0)), ("cron(0 8 * * ? *)", ("cron", None)),
     ("at(2030-01-02T03:04:05)", ("at", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()))],
)
def test_schedule_expressions_parse_as_scheduler_defines_them(expression, parsed):
    assert parse_expression(expression) == parsed


@pytest.mark.parametrize(("expression", "message"), [
    ("rate(0 minutes)", "is not rate"), ("rate(5 weeks)", "is not rate"), ("rate(1 minutes)", "use 'minute' for 1"),
    ("rate(2 day)", "'days' above"), ("every day", "is not rate"),
])
def test_a_bad_expression_is_refused_naming_it(expression, message):
    with pytest.raises(ValueError, match=message):
        parse_expression(expression)


def test_a_rate_schedule_runs_at_once_then_every_period_on_the_clock(scheduler):
    # Given a rate(10 minutes) schedule with no StartDate, and a clock that moves only when told
    create(scheduler, "every-ten", "rate(10 minutes)")
    clock, invocations = ManualClock(1_000_000.0), Invocations()
    run = runner(clock, invocations)
    # When the runner looks: it runs at once ("starts invoking its target immediately")
    assert run.run_due() == 1_000_600.0
    assert invocations.calls == [(FUNCTION_ARN, {"task": "every-ten"})]
    # And nothing more until the period passed, then once per period, never twice for one moment
    clock.advance(599)
    run.run_due()
    assert len(invocations.calls) == 1
    clock.advance(1)
    run.run_due()
    run.run_due()
    assert len(invocations.calls) == 2
    clock.advance(1800)  # three periods at once (a slow pass): each is delivered
    run.run_due()
    assert len(invocations.calls) == 5
    assert [d.at for d in run.deliveries] == [1_000_000.0 + 600 * i for i in range(5)]


def test_disabled_ended_one_time_and_cron_schedules(scheduler):
    clock, invocations = ManualClock(datetime(2030, 1, 1, tzinfo=UTC)), Invocations()
    create(scheduler, "disabled", "rate(1 minute)", State="DISABLED")
    create(scheduler, "once", "at(2030-01-01T00:05:00)")
    create(scheduler, "cron", "cron(0 8 * * ? *)")
    create(scheduler, "ended", "rate(1 minute)", EndDate=datetime(2030, 1, 1, 0, 1, 30, tzinfo=UTC))
    run = runner(clock, invocations)
    run.run_due()
    assert [c[1]["task"] for c in invocations.calls] == ["ended"]
    clock.advance(3600)
    run.run_due()
    # the one-time schedule ran once, at its moment; the ended one stopped at its EndDate; the disabled one never
    # ran and the cron one is not due before 08:00
    assert sorted(c[1]["task"] for c in invocations.calls) == ["ended", "ended", "once"]
    # a disabled schedule enabled later runs from then on
    scheduler.update_schedule(Name="disabled", ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": FUNCTION_ARN, "RoleArn": ROLE_ARN, "Input": "{}"}, State="ENABLED")
    run.run_due()
    assert invocations.calls[-1] == (FUNCTION_ARN, {})


def test_a_delivery_the_role_may_not_make_is_logged_and_counted_not_made(scheduler):
    create(scheduler, "refused", "rate(1 hour)")
    invocations = Invocations(refuse=True)
    run = runner(ManualClock(1_000_000.0), invocations)
    run.run_due()
    assert invocations.calls == []
    [delivery] = run.deliveries
    assert not delivery.delivered and "may not lambda:InvokeFunction" in (delivery.error or "")


def test_a_cron_schedule_runs_at_its_wall_clock_times_in_its_time_zone_between_start_and_end(scheduler):
    # Given weekdays at 09:00 Tokyo time (00:00 UTC), from Tuesday 8 to Friday 11 January 2030 (UTC)
    create(scheduler, "weekdays", "cron(0 9 ? * MON-FRI *)", ScheduleExpressionTimezone="Asia/Tokyo",
           StartDate=datetime(2030, 1, 8, tzinfo=UTC), EndDate=datetime(2030, 1, 11, tzinfo=UTC))
    clock, invocations = ManualClock(datetime(2030, 1, 6, tzinfo=UTC)), Invocations()
    run = runner(clock, invocations)
    # the runner says when it is next due: Tuesday 09:00 in Tokyo
    assert run.run_due() == datetime(2030, 1, 8, 9, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()
    for _ in range(14 * 24):
        clock.advance(3600)
        run.run_due()
    ran = [datetime.fromtimestamp(d.at, ZoneInfo("Asia/Tokyo")).strftime("%a %d %H:%M") for d in run.deliveries]
    assert ran == ["Tue 08 09:00", "Wed 09 09:00", "Thu 10 09:00", "Fri 11 09:00"]
    assert all(d.delivered and d.scheduled == d.at for d in run.deliveries)


def test_a_flexible_window_delays_each_run_within_the_window_the_same_way_each_time(scheduler):
    scheduler.create_schedule(Name="flexible", ScheduleExpression="rate(1 hour)",
                              StartDate=datetime(2030, 1, 1, tzinfo=UTC),
                              FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15},
                              Target={"Arn": FUNCTION_ARN, "RoleArn": ROLE_ARN, "Input": "{}"})

    def ten_hours() -> list[Any]:
        clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
        run = runner(clock, Invocations())
        for _ in range(600):
            run.run_due()
            clock.advance(60)
        return run.deliveries

    deliveries = ten_hours()
    start = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert [d.scheduled for d in deliveries] == [start + 3600 * i for i in range(10)]
    delays = [d.at - d.scheduled for d in deliveries]
    assert all(0 <= delay < 15 * 60 for delay in delays) and len(set(delays)) > 1
    assert [d.at for d in ten_hours()] == [d.at for d in deliveries]


@pytest.fixture
def dead_letters(scheduler: Any) -> Any:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="schedule-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn


def test_a_failed_invocation_is_retried_with_backoff_then_sent_to_the_dead_letter_queue(scheduler, dead_letters):
    sqs, url, queue_arn = dead_letters
    scheduler.create_schedule(
        Name="daily", ScheduleExpression="cron(0 6 * * ? *)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": FUNCTION_ARN, "RoleArn": ROLE_ARN, "Input": '{"task": "daily"}',
                "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
                "DeadLetterConfig": {"Arn": queue_arn}})
    six = datetime(2030, 1, 1, 6, tzinfo=UTC).timestamp()
    clock, invocations = ManualClock(six), Invocations(fail=3)
    run = runner(clock, invocations)
    # the first attempt fails (throttled); the retries wait 1 s, then 2 s
    assert run.run_due() == six + 1
    clock.advance(1)
    assert run.run_due() == six + 3
    clock.advance(2)
    assert run.run_due() == six + 86_400  # retries spent: the next run is tomorrow's
    assert [(d.attempt, d.at - six, d.delivered, d.dead_lettered) for d in run.deliveries] == [
        (1, 0, False, False), (2, 1, False, False), (3, 3, False, True)]
    [message] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert json.loads(message["Body"]) == {"task": "daily"}
    assert attributes["ERROR_CODE"] == "TooManyRequestsException" and "Rate exceeded" in attributes["ERROR_MESSAGE"]
    assert attributes["SCHEDULED_TIME"] == "2030-01-01T06:00:00Z" and attributes["TARGET_ARN"] == FUNCTION_ARN
    assert attributes["SCHEDULE_ARN"].endswith(":schedule/default/daily") and attributes["EXECUTION_ID"]
    # the next day the target answers: one attempt, delivered
    clock.advance(86_400)
    run.run_due()
    assert invocations.calls == [(FUNCTION_ARN, {"task": "daily"})] and run.deliveries[-1].attempt == 1


def test_retries_stop_at_the_maximum_event_age_and_a_retry_that_succeeds_delivers(scheduler):
    for name, age in (("aged", 60), ("recovers", 3600)):
        scheduler.create_schedule(
            Name=name, ScheduleExpression="at(2030-01-01T00:00:00)", FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": FUNCTION_ARN, "RoleArn": ROLE_ARN, "Input": json.dumps({"task": name}),
                    "RetryPolicy": {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": age}})
    clock, invocations = ManualClock(datetime(2030, 1, 1, tzinfo=UTC)), Invocations(fail=1_000)
    run = runner(clock, invocations)
    for second in range(120):
        run.run_due()
        clock.advance(1)
        if second == 40:
            invocations.fail = 0  # the target recovers: "recovers" is still within its hour, "aged" is over
    aged = [d for d in run.deliveries if d.schedule == "aged"]
    # retries after 1, 2, 4, 8, 16 s (at 1, 3, 7, 15, 31 s); the next (63 s) would pass the 60 s age: dropped
    assert [d.at - aged[0].at for d in aged] == [0, 1, 3, 7, 15, 31]
    assert not any(d.delivered or d.dead_lettered for d in aged)  # no dead-letter queue: logged as dropped
    recovers = [d for d in run.deliveries if d.schedule == "recovers"]
    assert [d.delivered for d in recovers] == [False] * 6 + [True] and recovers[-1].at - recovers[0].at == 63


def test_a_dead_letter_the_role_may_not_send_is_lost_and_logged(scheduler, dead_letters, caplog):
    sqs, url, queue_arn = dead_letters
    scheduler.create_schedule(
        Name="no-dlq-grant", ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": FUNCTION_ARN, "RoleArn": ROLE_ARN, "Input": "{}", "DeadLetterConfig": {"Arn": queue_arn},
                "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}})
    run = runner(ManualClock(1_000_000.0), Invocations(refuse={"lambda:InvokeFunction", "sqs:SendMessage"}))
    run.run_due()
    [delivery] = run.deliveries
    assert not delivery.delivered and not delivery.dead_lettered
    assert "may not sqs:SendMessage" in caplog.text
    assert "Messages" not in sqs.receive_message(QueueUrl=url)


def test_a_one_time_schedule_reads_its_moment_in_its_time_zone(scheduler):
    create(scheduler, "once-in-paris", "at(2030-07-01T09:00:00)", ScheduleExpressionTimezone="Europe/Paris")
    run = runner(ManualClock(datetime(2030, 7, 1, tzinfo=UTC)), Invocations())
    assert run.run_due() == datetime(2030, 7, 1, 7, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("changes", "message"), [
    ({"ScheduleExpression": "cron(0 8 * * * *)"}, "exactly one of day-of-month"),
    ({"ScheduleExpressionTimezone": "Europe/Atlantis"}, "'Europe/Atlantis' is not a time zone"),
    ({"FlexibleTimeWindow": {"Mode": "FLEXIBLE"}}, "needs MaximumWindowInMinutes 1-1440"),
    ({"FlexibleTimeWindow": {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 1441}}, "1-1440, not 1441"),
    ({"FlexibleTimeWindow": {"Mode": "SOMETIMES"}}, "is not OFF or FLEXIBLE"),
    ({"Target": {"RetryPolicy": {"MaximumRetryAttempts": 186}}}, "MaximumRetryAttempts 186 is outside 0-185"),
    ({"Target": {"RetryPolicy": {"MaximumEventAgeInSeconds": 30}}}, "MaximumEventAgeInSeconds 30 is outside 60-86400"),
    ({"Target": {"DeadLetterConfig": {"Arn": "arn:aws:sns:us-east-1:123456789012:topic"}}}, "is not an SQS queue"),
    ({"StartDate": "2030-01-02T00:00:00Z", "EndDate": "2030-01-01T00:00:00Z"}, "is not after StartDate"),
])
def test_the_deploy_refuses_what_create_schedule_refuses(changes, message):
    properties = {"ScheduleExpression": "cron(0 8 * * ? *)", "FlexibleTimeWindow": {"Mode": "OFF"},
                  "Target": {"Arn": FUNCTION_ARN, "RoleArn": ROLE_ARN}}
    check_schedule(properties)
    with pytest.raises(ValueError, match=re.escape(message)):
        check_schedule({**properties, **changes})


def test_a_template_schedule_with_a_unix_cron_expression_is_refused_at_deploy(tmp_path: Path) -> None:
    from modelgate_emulator.runtime import LocalAWS
    from modelgate_emulator.template import TemplateError

    template = tmp_path / "template.yaml"
    template.write_text(
        'AWSTemplateFormatVersion: "2010-09-09"\nResources:\n  Nightly:\n    Type: AWS::Scheduler::Schedule\n'
        '    Properties:\n      ScheduleExpression: cron(0 2 * * 1)\n      FlexibleTimeWindow:\n        Mode: "OFF"\n'
        f"      Target:\n        Arn: {FUNCTION_ARN}\n        RoleArn: {ROLE_ARN}\n")
    with (pytest.raises(TemplateError, match=re.escape("Nightly: cron expression 'cron(0 2 * * 1)' has 5 fields")),
          LocalAWS(template, echo_logs=False)):
        pass


# ---------------------------------------------------------------------- Bedrock
def test_get_foundation_model_answers_the_lifecycle_state_and_refuses_an_unknown_id(scheduler):
    catalogue = bedrock.FoundationModels(["anthropic.claude-3-haiku-20240307-v1:0"])
    uninstall = bedrock.install(catalogue)
    try:
        client = boto3.client("bedrock", region_name=REGION)
        details = client.get_foundation_model(modelIdentifier="anthropic.claude-3-haiku-20240307-v1:0")["modelDetails"]
        assert details["modelLifecycle"] == {"status": "ACTIVE"}
        catalogue.set_lifecycle("anthropic.claude-3-haiku-20240307-v1:0", "LEGACY")
        details = client.get_foundation_model(modelIdentifier="anthropic.claude-3-haiku-20240307-v1:0")["modelDetails"]
        assert details["modelLifecycle"] == {"status": "LEGACY"}
        assert details["modelArn"].endswith(":foundation-model/anthropic.claude-3-haiku-20240307-v1:0")
        with pytest.raises(ClientError, match="ValidationException.*model identifier is invalid"):
            client.get_foundation_model(modelIdentifier="anthropic.nothing-v9:0")
        with pytest.raises(ValueError, match="'RETIRED' is not one of ACTIVE, LEGACY"):
            catalogue.set_lifecycle("x", "RETIRED")
    finally:
        uninstall()


def test_a_provider_side_change_alters_the_answers_of_that_model_only_until_reverted():
    from modelgate.manifest import InferenceParameters
    from modelgate.providers import LocalProvider

    catalogue = bedrock.FoundationModels()
    uninstall = bedrock.install(catalogue)
    try:
        provider = LocalProvider(base_ms=0, per_output_token_ms=0)
        system = "Q: How much does Plus cost? A: Plus costs $5 per month."
        questions = [f"How much does Plus cost, question {i}?" for i in range(40)]

        def answers(model: str) -> list[str]:
            return [provider.converse(model_id=model, system=system, user=q, parameters=InferenceParameters()).text
                    for q in questions]

        before, other = answers("local.retrieval-small-v1:0"), answers("local.retrieval-large-v1:0")
        catalogue.change_answers("local.retrieval-small-v1:0", bedrock.degraded(0.5, answer="no idea"))
        after = answers("local.retrieval-small-v1:0")
        # about half the questions (the same ones each time) now get the changed answer; the other model is untouched
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert 10 <= len(changed) <= 30 and all(after[i] == "no idea" for i in changed)
        assert answers("local.retrieval-small-v1:0") == after
        assert answers("local.retrieval-large-v1:0") == other
        catalogue.revert_answers("local.retrieval-small-v1:0")
        assert answers("local.retrieval-small-v1:0") == before
    finally:
        uninstall()
    with pytest.raises(ValueError, match="share must be in"):
        bedrock.degraded(0.0)


def test_the_stack_deploys_its_drift_schedule_with_the_bucket_lifecycle() -> None:
    from pathlib import Path

    from modelgate_emulator.runtime import LocalAWS

    root = Path(__file__).resolve().parents[3]
    with LocalAWS(root / "template.yaml", stack_name="sched", parameters={"ModelProvider": "local"},
                  echo_logs=False) as local:
        schedules = local.client("scheduler").list_schedules()["Schedules"]
        [schedule] = [s for s in schedules if "SampleServiceDriftSchedule" in s["Name"]]
        detail = local.client("scheduler").get_schedule(Name=schedule["Name"])
        assert detail["ScheduleExpression"] == "rate(60 minutes)"
        assert json.loads(detail["Target"]["Input"]) == {"service": "support-bot"}
        assert detail["Target"]["Arn"] == local.stack.function("DriftCheckFunction").arn
        # a check Scheduler cannot invoke after its retries lands in the schedule dead-letter queue, watched by an alarm
        assert detail["Target"]["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600}
        queue_url = local.stack.physical_id("ScheduleDeadLetterQueue")
        queue_arn = local.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        assert detail["Target"]["DeadLetterConfig"] == {"Arn": queue_arn["Attributes"]["QueueArn"]}
        [alarm] = local.client("cloudwatch").describe_alarms(
            AlarmNames=[local.stack.physical_id("ScheduleDeadLetterAlarm")])["MetricAlarms"]
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue_url.rsplit("/", 1)[-1]}]
        bucket = local.stack.outputs["ArtifactBucketName"]
        [rule] = local.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert rule["Filter"]["Prefix"] == "capture/" and rule["Expiration"]["Days"] == 30
