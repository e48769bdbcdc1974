"""EventBridge Scheduler on the embedded AWS: schedules run on the runtime's clock; Bedrock's
GetFoundationModel with a lifecycle state; CloudFormation's schedules and dashboards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from modelgate_emulator import bedrock
from modelgate_emulator.clock import ManualClock
from modelgate_emulator.scheduler import ScheduleRunner, parse_expression
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
    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.refuse = refuse

    def invoke_async(self, arn: str, payload: bytes) -> None:
        self.calls.append((arn, json.loads(payload)))

    def authorize(self, role_arn: str, arn: str) -> None:
        if self.refuse:
            raise PermissionError(f"{role_arn} may not invoke {arn}")


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
    # the one-time schedule ran once, at its moment; the ended one stopped at its EndDate; the others never ran
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
    assert not delivery.delivered and "may not invoke" in (delivery.error or "")


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
        bucket = local.stack.outputs["ArtifactBucketName"]
        [rule] = local.client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert rule["Filter"]["Prefix"] == "capture/" and rule["Expiration"]["Days"] == 30
