"""EMF: metrics CloudWatch Logs extracts from log lines (emf.py), their resolution and timing,
and a 10 s canary alarm on the service's high-resolution health signal."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from modelgate_emulator import cloudwatch, emf
from modelgate_emulator.clock import ManualClock
from modelgate_emulator.cloudwatch import AlarmEvaluator, LambdaMetricsPublisher
from modelgate_emulator.logs import FunctionLogs
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from modelgate import service_metrics
from modelgate.adapters import alarms
from modelgate.alarm_thresholds import AlarmThreshold
from modelgate.policy import CanaryAlarmSpec

REGION = "us-east-1"
ACCOUNT = DEFAULT_ACCOUNT_ID


@pytest.fixture
def cw(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws(config={"lambda": {"use_docker": False}}):
        uninstall = cloudwatch.install()
        yield boto3.client("cloudwatch", region_name=REGION)
        uninstall()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(math.floor(time.time() / 60) * 60 + 30)


def document(clock: ManualClock, *, failed: bool, version: str = "7") -> dict[str, Any]:
    return service_metrics.request_document(
        service="support-bot", version=version, when=datetime.fromtimestamp(clock.now(), UTC),
        latency_ms=40.0, failed=failed,
        response=None if failed else {"usage": {"input_tokens": 5, "output_tokens": 9}, "cost_usd": 0.002,
                                      "output": "Reset password"},
        refusal=None if failed else False,
    )


def test_a_powertools_document_becomes_one_datapoint_per_metric_with_its_resolution(clock: ManualClock) -> None:
    doc = document(clock, failed=False)
    datums = emf.parse(json.dumps(doc))
    by_name = {d.name: d for d in datums}
    assert set(by_name) == {"Requests", "Failures", "Latency", "InputTokens", "OutputTokens", "Cost", "OutputLength",
                            "Refusals"}
    assert {d.namespace for d in datums} == {"Modelgate/Service"}
    assert [(x.name, x.value) for x in by_name["Failures"].dimensions] == [("service", "support-bot"), ("version", "7")]
    assert by_name["OutputTokens"].value == 9 and by_name["OutputLength"].value == len("Reset password")
    # high resolution keeps the second; standard resolution is stored at its minute
    stamp = clock.now()
    assert by_name["Failures"].timestamp.replace(tzinfo=UTC).timestamp() == pytest.approx(stamp)
    assert by_name["Cost"].timestamp.replace(tzinfo=UTC).timestamp() == math.floor(stamp / 60) * 60


def test_values_arrays_and_several_dimension_sets_follow_the_specification() -> None:
    doc = {
        "_aws": {"Timestamp": 1_700_000_000_000, "CloudWatchMetrics": [
            {"Namespace": "App", "Dimensions": [["svc"], ["svc", "v"]], "Metrics": [{"Name": "Hits"}]}]},
        "svc": "a", "v": "1", "Hits": [1, 2, 3],
    }
    datums = emf.parse(json.dumps(doc))
    assert len(datums) == 6 and sorted({len(d.dimensions) for d in datums}) == [1, 2]
    assert sorted(d.value for d in datums) == [1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["_aws"].pop("Timestamp"), "Timestamp"),
        (lambda d: d.pop("Hits"), "not a member of the root"),
        (lambda d: d.pop("svc"), "dimension 'svc' has no string value"),
        (lambda d: d.update(Hits="many"), "not a finite number"),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(StorageResolution=5), "StorageResolution"),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0].update(Namespace="AWS/Lambda"), "Namespace"),
        (lambda d: d.update(Hits=list(range(101))), "at most 100"),
    ],
)
def test_a_document_breaking_the_specification_is_refused_with_its_reason(change: Any, message: str) -> None:
    doc = {"_aws": {"Timestamp": 1_700_000_000_000, "CloudWatchMetrics": [
        {"Namespace": "App", "Dimensions": [["svc"]], "Metrics": [{"Name": "Hits", "Unit": "Count"}]}]},
        "svc": "a", "Hits": 1}
    assert len(emf.parse(json.dumps(doc))) == 1
    change(doc)
    with pytest.raises(emf.EmfInvalid, match=message):
        emf.parse(json.dumps(doc))
    assert emf.extract([{"timestamp": 0, "message": json.dumps(doc)}]) == []  # skipped, as AWS does


def test_plain_log_lines_are_not_metrics() -> None:
    assert emf.extract([{"timestamp": 0, "message": m} for m in ("START RequestId: x", '{"level": "INFO"}', "{")]) == []


def test_log_group_writes_feed_the_sink_and_the_publisher_keeps_the_emf_delay(cw: Any, clock: ManualClock) -> None:
    # Given the function log writer wired to a publisher with a 5 s EMF delay
    publisher = LambdaMetricsPublisher(clock, delay_seconds=60)
    uninstall = publisher.install()
    logs = FunctionLogs(echo=False)
    logs.emf_sink = lambda a, r, d: publisher.put_datums(a, r, d, delay_seconds=emf.DEFAULT_EMF_DELAY_SECONDS)
    try:
        # When a function's log lines carry an EMF document
        logs.write(ACCOUNT, REGION, "/aws/lambda/fn", "s", [
            {"timestamp": 1, "message": "START RequestId: r"},
            {"timestamp": 2, "message": json.dumps(document(clock, failed=True))},
        ])
        query = {"Namespace": service_metrics.NAMESPACE, "MetricName": "Failures",
                 "Dimensions": service_metrics.dimensions("support-bot", "7")}

        def failures() -> list[float]:
            now = datetime.fromtimestamp(clock.now(), UTC)
            points = cw.get_metric_statistics(**query, StartTime=now.replace(hour=0, minute=0), EndTime=now,
                                              Period=60, Statistics=["Sum"])["Datapoints"]
            return [p["Sum"] for p in points]

        # Then nothing is readable before the delay, and the datapoint is after it
        clock.advance(4.9)
        assert failures() == []
        clock.advance(0.2)
        assert failures() == [1.0]
    finally:
        uninstall()


def test_a_ten_second_canary_alarm_on_the_service_signal_fires_within_one_period(cw: Any, clock: ManualClock) -> None:
    # Given the canary alarm a policy with source: service creates for candidate version 7
    spec = CanaryAlarmSpec(name="failures", metric="Errors", source="service", statistic="Sum", threshold=1,
                           period_seconds=10)
    alarms.put_canary_alarms(
        cw, stack_name="s", release_id="r1", function_name="s-svc-support-bot", alias="live", candidate="7",
        specs=[spec], thresholds=[AlarmThreshold(alarm="failures", metric="Errors", statistic="Sum", threshold=1,
                                                 basis="fixed", explanation="fixed")],
        service="support-bot",
    )
    publisher = LambdaMetricsPublisher(clock, delay_seconds=60)
    uninstall = publisher.install()
    evaluator = AlarmEvaluator(account_id=ACCOUNT, region=REGION, clock=clock)
    try:
        # When the candidate fails once (and the stable version 6 fails too, which must not count)
        failed_at = clock.now()
        for version in ("7", "6"):
            publisher.put_datums(ACCOUNT, REGION, emf.parse(json.dumps(document(clock, failed=True, version=version))),
                                 delay_seconds=emf.DEFAULT_EMF_DELAY_SECONDS)
        # Then the alarm is in ALARM at the first 10 s boundary after the datapoint arrived
        fired_at = None
        while clock.now() < failed_at + 60:
            clock.set(math.floor(clock.now() / 10) * 10 + 10)
            evaluator.evaluate_once()
            state = cw.describe_alarms(AlarmNames=["s-canary-r1-failures"])["MetricAlarms"][0]["StateValue"]
            if state == "ALARM":
                fired_at = clock.now()
                break
        assert fired_at is not None and fired_at - failed_at <= 20
    finally:
        uninstall()


def test_alarm_specs_refuse_periods_their_metrics_cannot_serve() -> None:
    with pytest.raises(ValueError, match="one-minute resolution"):
        CanaryAlarmSpec(name="e", metric="Errors", threshold=1, period_seconds=10)
    with pytest.raises(ValueError, match="10, 20, 30 or a multiple of 60"):
        CanaryAlarmSpec(name="e", metric="Errors", source="service", threshold=1, period_seconds=45)
    with pytest.raises(ValueError, match="no Throttles"):
        CanaryAlarmSpec(name="e", metric="Throttles", source="service", threshold=1, period_seconds=10)


def test_the_sample_service_reports_its_own_metrics_through_its_log_group() -> None:
    from pathlib import Path

    from modelgate_emulator.runtime import LambdaInvokeError, LocalAWS

    root = Path(__file__).resolve().parents[3]
    with LocalAWS(root / "template.yaml", stack_name="emf", parameters={"ModelProvider": "local"},
                  echo_logs=False) as local:
        # Given the sample service's version 1 (its bootstrap configuration) answering one request
        # and failing one that carries no inputs
        local.invoke("SampleServiceFunction", {"inputs": {"question": "hi"}}, qualifier="live")
        with pytest.raises(LambdaInvokeError):
            local.invoke("SampleServiceFunction", {"inputs": "not an object"}, qualifier="live")
        local.sleep(emf.DEFAULT_EMF_DELAY_SECONDS + 1)
        # Then its EMF line became the service's metrics, by service and the version that ran
        cw = local.client("cloudwatch")
        now = datetime.fromtimestamp(local.clock.now(), UTC)
        points = cw.get_metric_statistics(
            Namespace=service_metrics.NAMESPACE, MetricName="Failures",
            Dimensions=service_metrics.dimensions("support-bot", "1"),
            StartTime=now - timedelta(hours=1), EndTime=now, Period=7200,
            Statistics=["Sum"],
        )["Datapoints"]
        assert sum(p["Sum"] for p in points) == 1
