"""Canary steps against moto: an alarm already firing, the on_alarm handler."""

from __future__ import annotations

import boto3
import pytest

from modelgate.contract import ReleaseContext
from modelgate.errors import CanaryAlarm
from modelgate.ledger import Ledger
from modelgate.manifest import ArtifactRef
from modelgate.pipeline.canary import on_alarm, start_bake
from modelgate.pipeline.deps import Deps
from modelgate.policy import ReleasePolicy
from modelgate.settings import Settings


class FakeStepFunctions:
    def __init__(self):
        self.failures = []

    def send_task_failure(self, **kwargs):
        self.failures.append(kwargs)


@pytest.fixture
def deps(ledger_table):
    settings = Settings(
        LEDGER_TABLE="ledger", ARTIFACT_BUCKET="b", SERVICES_PREFIX="/p/",
        APPROVAL_TOPIC_ARN="arn:aws:sns:us-east-1:123456789012:t", STACK_NAME="test",
    )
    clients = {"stepfunctions": FakeStepFunctions(), "cloudwatch": boto3.client("cloudwatch")}
    return Deps(settings, lambda name: clients.get(name) or boto3.client(name), Ledger(ledger_table))


def canary_ctx(alarm: str) -> ReleaseContext:
    return ReleaseContext(
        release_id="r1", service="svc", commit="abc1234", branch="main",
        artifact=ArtifactRef(bucket="b", key="releases/svc/abc1234/model-config.json", version_id="v"),
        policy=ReleasePolicy(), function_name="fn", alias="live", live_version="1", candidate_version="2",
        canary_alarms=[alarm], step={"index": 0, "weight": 0.1, "bake_seconds": 900, "is_final": False},
    )


def put_alarm(cloudwatch, name):
    cloudwatch.put_metric_alarm(
        AlarmName=name, Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
    )


def test_an_alarm_already_in_alarm_fails_the_bake_when_it_starts(deps):
    # Given a canary alarm already in ALARM (no state change event will come)
    put_alarm(deps.cloudwatch, "test-canary-r1-errors")
    deps.cloudwatch.set_alarm_state(AlarmName="test-canary-r1-errors", StateValue="ALARM", StateReason="5 errors")
    # When the bake starts, Then it fails at once, naming the alarm, and keeps no token
    with pytest.raises(CanaryAlarm, match="test-canary-r1-errors is in ALARM: 5 errors .*already firing"):
        start_bake(deps, canary_ctx("test-canary-r1-errors"), "token-1")
    assert deps.ledger.get_token("r1", "bake") is None


def test_a_quiet_alarm_arms_the_bake_and_an_alarm_event_fails_it_with_the_reason(deps):
    put_alarm(deps.cloudwatch, "test-canary-r1-errors")
    deps.ledger.put_alarm_owner("test-canary-r1-errors", "r1", "svc")
    start_bake(deps, canary_ctx("test-canary-r1-errors"), "token-1")
    assert deps.ledger.get_token("r1", "bake") == "token-1"
    result = on_alarm(deps, "test-canary-r1-errors", "Threshold Crossed")
    assert result["action"] == "bake failed"
    assert deps.sfn.failures == [{"taskToken": "token-1", "error": "CanaryAlarm",
                                  "cause": "alarm test-canary-r1-errors is in ALARM: Threshold Crossed"}]
    # a second event for the same alarm finds no bake waiting: nothing is sent twice
    assert on_alarm(deps, "test-canary-r1-errors", "again")["action"] == "none"
    assert on_alarm(deps, "someone-elses-alarm", "x")["action"] == "ignored"
