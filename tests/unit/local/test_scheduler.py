"""EventBridge Scheduler on the embedded AWS: rate schedules fired on the clock, as the target's role."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from modelgate_emulator.clock import ManualClock
from modelgate_emulator.scheduler import SchedulerRunner, rate_seconds
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

REGION = "us-east-1"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:drift"
ROLE_ARN = f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/scheduler"


@pytest.fixture
def scheduler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("scheduler", region_name=REGION)


def create(client: Any, name: str, expression: str = "rate(5 minutes)", **extra: Any) -> None:
    client.create_schedule(
        Name=name, ScheduleExpression=expression, FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": FUNCTION_ARN, "RoleArn": ROLE_ARN, "Input": json.dumps({"service": name})}, **extra,
    )


@pytest.mark.parametrize(("expression", "seconds"), [("rate(1 minute)", 60), ("rate(5 minutes)", 300),
                                                     ("rate(2 hours)", 7200), ("rate(1 day)", 86_400)])
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize("expression", ["cron(0 12 * * ? *)", "at(2026-12-01T00:00:00)", "rate(0 minutes)",
                                        "rate(5 weeks)"])
def test_other_expressions_are_refused_by_name(expression: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        rate_seconds(expression)


def test_a_rate_schedule_fires_at_once_then_every_period_with_its_input_as_its_role(scheduler: Any) -> None:
    clock = ManualClock(math.floor(time.time()))
    calls: list[tuple[str, dict]] = []
    checked: list[tuple[str, str]] = []
    create(scheduler, "support-bot")
    create(scheduler, "paused", State="DISABLED")
    runner = SchedulerRunner(account_id=DEFAULT_ACCOUNT_ID, region=REGION, clock=clock,
                             invoke_async=lambda arn, body: calls.append((arn, json.loads(body))),
                             authorize=lambda role, arn: checked.append((role, arn)))
    # "no StartDate: the schedule starts invoking the target immediately"
    assert runner.fire_due() == ["support-bot"]
    assert calls == [(FUNCTION_ARN, {"service": "support-bot"})] and checked == [(ROLE_ARN, FUNCTION_ARN)]
    clock.advance(299)
    assert runner.fire_due() == []
    clock.advance(1)
    assert runner.fire_due() == ["support-bot"]
    # a jump over three periods fires each missed one
    clock.advance(900)
    assert runner.fire_due() == ["support-bot"] * 3
    assert [t for _, t in runner.fired] == [runner.fired[0][1] + 300 * i for i in range(5)]


def test_a_refused_invocation_is_dropped_and_the_schedule_goes_on(scheduler: Any) -> None:
    clock = ManualClock(math.floor(time.time()))
    create(scheduler, "denied", "rate(1 minute)")
    calls: list[str] = []

    def refuse(role: str, arn: str) -> None:
        raise PermissionError(f"{role} may not invoke {arn}")

    runner = SchedulerRunner(account_id=DEFAULT_ACCOUNT_ID, region=REGION, clock=clock,
                             invoke_async=lambda arn, body: calls.append(arn), authorize=refuse)
    runner.fire_due()
    clock.advance(60)
    runner.fire_due()
    assert calls == [] and len(runner.fired) == 2


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
        assert local.scheduler is None  # schedules fire only with run_schedules
