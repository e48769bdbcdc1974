"""CloudWatch shims: Lambda metrics, alarm evaluation and alarm state change events."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from modelgate_emulator import cloudwatch, events
from modelgate_emulator.clock import ManualClock, ScaledClock
from modelgate_emulator.cloudwatch import AlarmEvaluator, LambdaMetricsPublisher, emit_lambda_metrics
from moto import mock_aws
from moto.cloudwatch.models import CloudWatchBackend, Dimension, cloudwatch_backends
from moto.core import DEFAULT_ACCOUNT_ID

REGION = "us-east-1"
ACCOUNT = DEFAULT_ACCOUNT_ID
FUNCTION = "inference"
DEADLINE_SECONDS = 15.0
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


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


@pytest.fixture
def cw(aws: None) -> Any:
    return boto3.client("cloudwatch", region_name=REGION)


@pytest.fixture
def clock() -> ManualClock:
    """Nominal time, 30 s into a minute (alarm periods are aligned to whole minutes)."""
    return ManualClock(math.floor(time.time() / 60) * 60 + 30)


def to_next_boundary(clock: ManualClock, period: int = 60) -> None:
    """Move the clock to the next period boundary (where CloudWatch evaluates)."""
    clock.set(math.floor(clock.now() / period) * period + period)


@pytest.fixture
def patched(aws: None) -> Iterator[None]:
    uninstall = cloudwatch.install()
    yield
    uninstall()


class FakeInvoker:
    """Stands in for the runtime's async Lambda invoke: records what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def __call__(self, function_arn: str, payload: bytes) -> None:
        self.calls.append((function_arn, payload))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for _, payload in self.calls]


@pytest.fixture
def invoker(aws: None) -> Iterator[FakeInvoker]:
    fake = FakeInvoker()
    uninstall = events.install(invoke_async=fake)
    yield fake
    uninstall()


def emit(
    version: str,
    *,
    error: bool,
    resource: str | None = f"{FUNCTION}:live",
    weighted_alias: bool = True,
    **kwargs: Any,
) -> None:
    """One invocation's metrics; by default through the live alias while it is weighted (a canary)."""
    emit_lambda_metrics(
        account_id=ACCOUNT,
        region=REGION,
        function_name=FUNCTION,
        resource=resource,
        executed_version=version,
        duration_ms=12.5,
        error=error,
        weighted_alias=weighted_alias,
        **kwargs,
    )


def put_datum(
    cw: Any, clock: ManualClock, value: float, *, seconds_ago: float = 0.0, name: str = "Latency"
) -> None:
    cw.put_metric_data(
        Namespace="App",
        MetricData=[
            {
                "MetricName": name,
                "Value": value,
                "Timestamp": clock.datetime() - timedelta(seconds=seconds_ago),
            }
        ],
    )


def put_alarm(cw: Any, name: str = "latency", **overrides: Any) -> None:
    params: dict[str, Any] = {
        "AlarmName": name,
        "Namespace": "App",
        "MetricName": "Latency",
        "Statistic": "Maximum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 100.0,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    params.update(overrides)
    cw.put_metric_alarm(**params)


def evaluator(clock: ManualClock | ScaledClock) -> AlarmEvaluator:
    return AlarmEvaluator(account_id=ACCOUNT, region=REGION, clock=clock)


def alarm_state(cw: Any, name: str) -> str:
    return cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.02)


def metric_sum(
    cw: Any, metric: str, dimensions: dict[str, str], statistic: str = "Sum"
) -> float | None:
    now = datetime.now(UTC)
    points = cw.get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName=metric,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=7200,
        Statistics=[statistic],
    )["Datapoints"]
    if not points:
        return None
    assert len(points) == 1
    return points[0][statistic]


# --------------------------------------------------------------------------- metrics


def test_lambda_metrics_land_in_each_aws_dimension_set(cw: Any, patched: None) -> None:
    # Given invocations through the live alias while it is weighted (versions 1 and 2), one
    # through a version and one unqualified
    emit("1", error=False)
    emit("2", error=True)
    emit("2", error=False)
    emit("3", error=False, resource=f"{FUNCTION}:3")
    emit("$LATEST", error=False, resource=None)

    # Then each dimension set AWS emits holds exactly its own invocations
    assert metric_sum(cw, "Invocations", {}) == 5
    assert metric_sum(cw, "Invocations", {"FunctionName": FUNCTION}) == 5
    assert (
        metric_sum(cw, "Invocations", {"FunctionName": FUNCTION, "Resource": f"{FUNCTION}:live"})
        == 3
    )
    assert (
        metric_sum(cw, "Invocations", {"FunctionName": FUNCTION, "Resource": f"{FUNCTION}:3"}) == 1
    )
    candidate = {"FunctionName": FUNCTION, "Resource": f"{FUNCTION}:live", "ExecutedVersion": "2"}
    assert metric_sum(cw, "Invocations", candidate) == 2
    assert metric_sum(cw, "Errors", candidate) == 1
    assert metric_sum(cw, "Errors", candidate, "Average") == 0.5
    assert metric_sum(cw, "Duration", candidate, "Maximum") == 12.5
    # and a version invocation carries no ExecutedVersion dimension set
    assert (
        metric_sum(
            cw,
            "Invocations",
            {"FunctionName": FUNCTION, "Resource": f"{FUNCTION}:3", "ExecutedVersion": "3"},
        )
        is None
    )
    listed = cw.list_metrics(Namespace="AWS/Lambda", MetricName="Duration")["Metrics"]
    assert {frozenset(d["Name"] for d in m["Dimensions"]) for m in listed} >= {
        frozenset({"FunctionName", "Resource", "ExecutedVersion"})
    }


def test_an_unweighted_alias_call_has_no_executed_version_dimension(cw: Any, patched: None) -> None:
    # Given calls through the live alias while it routes to one version only (no
    # additional version: AWS documents ExecutedVersion for weighted aliases alone)
    emit("2", error=True, weighted_alias=False)
    emit("2", error=False, weighted_alias=False)
    # Then the alias's Resource dimension set counts them
    assert metric_sum(cw, "Invocations", {"FunctionName": FUNCTION, "Resource": f"{FUNCTION}:live"}) == 2
    assert metric_sum(cw, "Errors", {"FunctionName": FUNCTION, "Resource": f"{FUNCTION}:live"}) == 1
    # but no ExecutedVersion dimension set exists for them: an alarm on it would see nothing
    candidate = {"FunctionName": FUNCTION, "Resource": f"{FUNCTION}:live", "ExecutedVersion": "2"}
    assert metric_sum(cw, "Invocations", candidate) is None
    listed = cw.list_metrics(Namespace="AWS/Lambda")["Metrics"]
    assert not [m for m in listed if any(d["Name"] == "ExecutedVersion" for d in m["Dimensions"])]
    # When the alias is weighted again, the same version's calls carry it
    emit("2", error=True)
    assert metric_sum(cw, "Errors", candidate) == 1


def test_get_metric_data_matches_dimensions_listed_in_any_order(cw: Any, patched: None) -> None:
    # Given candidate invocations through the alias
    emit("2", error=True)
    now = datetime.now(UTC)

    # When a query names the dimensions in another order than they were emitted
    result = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "errors",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Errors",
                        "Dimensions": [
                            {"Name": "ExecutedVersion", "Value": "2"},
                            {"Name": "Resource", "Value": f"{FUNCTION}:live"},
                            {"Name": "FunctionName", "Value": FUNCTION},
                        ],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=5),
    )

    # Then the datapoint is found
    assert sum(result["MetricDataResults"][0]["Values"]) == 1


def test_get_metric_data_computes_percentiles_from_the_raw_datapoints(cw: Any, patched: None) -> None:
    # Given 100 latencies (1..100 ms) in one minute on one dimension set, and a slow one on another set
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    live = [{"Name": "Resource", "Value": "fn:live"}]
    for first in range(1, 101, 20):
        cw.put_metric_data(Namespace="App", MetricData=[
            {"MetricName": "Latency", "Dimensions": live, "Value": float(v), "Timestamp": minute + timedelta(seconds=1)}
            for v in range(first, first + 20)
        ])
    cw.put_metric_data(Namespace="App", MetricData=[{
        "MetricName": "Latency", "Dimensions": [{"Name": "Resource", "Value": "fn:other"}], "Value": 9999.0,
        "Timestamp": minute + timedelta(seconds=1),
    }])

    def query(query_id: str, stat: str) -> dict[str, Any]:
        metric = {"Namespace": "App", "MetricName": "Latency", "Dimensions": live}
        return {"Id": query_id, "MetricStat": {"Metric": metric, "Period": 60, "Stat": stat}}

    # When one GetMetricData asks for percentiles beside a basic statistic
    result = cw.get_metric_data(
        MetricDataQueries=[query("p95", "p95"), query("p99", "p99.9"), query("n", "SampleCount")],
        StartTime=minute - timedelta(minutes=1), EndTime=minute + timedelta(minutes=2),
    )

    # Then each percentile is the nearest rank of that set's raw values, beside moto's own statistic
    values = {r["Id"]: r["Values"] for r in result["MetricDataResults"]}
    assert values == {"p95": [95.0], "p99": [100.0], "n": [100.0]}
    assert {r["Id"]: r["Label"] for r in result["MetricDataResults"]}["p95"] == "Latency p95"


def test_get_metric_data_puts_each_datapoint_in_its_own_period_for_percentiles(cw: Any, patched: None) -> None:
    # Given latencies in three minutes, put out of order, one exactly on a minute's start
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    live = [{"Name": "Resource", "Value": "fn:live"}]
    points = [(2, 0, 300.0), (0, 10, 10.0), (1, 59, 20.0), (0, 59, 11.0), (2, 30, 301.0), (1, 0, 21.0)]
    cw.put_metric_data(Namespace="App", MetricData=[
        {"MetricName": "Latency", "Dimensions": live, "Value": value,
         "Timestamp": start + timedelta(minutes=minute, seconds=second)}
        for minute, second, value in points
    ])
    query = {"Id": "p50", "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "Latency", "Dimensions": live},
                                         "Period": 60, "Stat": "p50"}}
    # When GetMetricData asks for the median per minute
    result = cw.get_metric_data(MetricDataQueries=[query], StartTime=start, EndTime=start + timedelta(minutes=3),
                                ScanBy="TimestampAscending")
    # Then each minute's value is its own datapoints' median (a point on a minute's start is in
    # that minute, not the one before)
    series = result["MetricDataResults"][0]
    by_minute = {int((t - start).total_seconds() // 60): v for t, v in zip(series["Timestamps"], series["Values"])}
    assert by_minute == {0: 10.0, 1: 20.0, 2: 300.0}


# --------------------------------------------------------------------------- evaluation


def test_canary_alarm_fires_on_errors_of_its_executed_version_only(
    cw: Any, patched: None, clock: ManualClock
) -> None:
    # Given an alarm on the candidate's (version 2) errors behind the live alias
    put_alarm(
        cw,
        "canary-errors",
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Statistic="Sum",
        Threshold=0.0,
        Dimensions=[
            {"Name": "FunctionName", "Value": FUNCTION},
            {"Name": "Resource", "Value": f"{FUNCTION}:live"},
            {"Name": "ExecutedVersion", "Value": "2"},
        ],
        TreatMissingData="notBreaching",
    )
    alarms = evaluator(clock)

    # When the stable version 1 fails and the period ends
    emit("1", error=True, timestamp=clock.datetime())
    to_next_boundary(clock)
    alarms.evaluate_once()

    # Then the canary alarm stays out of ALARM
    assert alarm_state(cw, "canary-errors") == "OK"

    # When the candidate fails, it is not evaluated before its period ends
    emit("2", error=True, timestamp=clock.datetime())
    assert alarms.evaluate_once() == []
    to_next_boundary(clock)
    changes = alarms.evaluate_once()

    # Then it goes to ALARM, with AWS's reason
    assert [(c.alarm_name, c.old_state, c.new_state) for c in changes] == [
        ("canary-errors", "OK", "ALARM")
    ]
    alarm = cw.describe_alarms(AlarmNames=["canary-errors"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    assert alarm["StateReason"].startswith(
        "Threshold Crossed: 1 out of the last 1 datapoints [1.0 ("
    )
    assert "was greater than the threshold (0.0)" in alarm["StateReason"]
    assert json.loads(alarm["StateReasonData"])["recentDatapoints"] == [1.0]


@pytest.mark.parametrize(
    ("treat_missing_data", "expected"),
    [
        (None, "INSUFFICIENT_DATA"),
        ("missing", "INSUFFICIENT_DATA"),
        ("notBreaching", "OK"),
        ("breaching", "ALARM"),
        ("ignore", "ALARM"),  # keeps the state it was in
    ],
)
def test_an_alarm_with_no_data_follows_treat_missing_data(
    cw: Any, clock: ManualClock, treat_missing_data: str | None, expected: str
) -> None:
    # Given an alarm in ALARM whose metric has no datapoint at all
    extra = {"TreatMissingData": treat_missing_data} if treat_missing_data else {}
    put_alarm(cw, **extra)
    cw.set_alarm_state(AlarmName="latency", StateValue="ALARM", StateReason="test setup")

    # When it is evaluated
    evaluator(clock).evaluate_once()

    # Then its state follows AWS's missing-data rules
    assert alarm_state(cw, "latency") == expected


@pytest.mark.parametrize(
    ("treat_missing_data", "value", "expected"),
    [
        # "3 out of 3" alarm, one real datapoint and two missing (AWS's missing-data table)
        ("missing", 500.0, "ALARM"),
        ("missing", 1.0, "OK"),
        ("ignore", 500.0, "INSUFFICIENT_DATA"),  # keeps the current state
        ("ignore", 1.0, "OK"),
        ("breaching", 500.0, "ALARM"),
        ("breaching", 1.0, "OK"),
        ("notBreaching", 500.0, "OK"),
    ],
)
def test_too_few_datapoints_are_filled_per_treat_missing_data(
    cw: Any, patched: None, clock: ManualClock, treat_missing_data: str, value: float, expected: str
) -> None:
    # Given a 3-out-of-3 alarm and a single datapoint in the latest period
    put_alarm(cw, EvaluationPeriods=3, DatapointsToAlarm=3, TreatMissingData=treat_missing_data)
    put_datum(cw, clock, value, seconds_ago=1)

    # When it is evaluated at the end of that period
    to_next_boundary(clock)
    evaluator(clock).evaluate_once()

    # Then
    assert alarm_state(cw, "latency") == expected


def test_enough_real_datapoints_decide_and_datapoints_to_alarm_counts(
    cw: Any, patched: None, clock: ManualClock
) -> None:
    # Given a 2-out-of-3 alarm with breaching datapoints in two of the last three periods
    put_alarm(cw, EvaluationPeriods=3, DatapointsToAlarm=2)
    put_datum(cw, clock, 500, seconds_ago=1)
    put_datum(cw, clock, 1, seconds_ago=61)
    put_datum(cw, clock, 500, seconds_ago=121)
    alarms = evaluator(clock)

    # When it is evaluated at the end of the latest period
    to_next_boundary(clock)
    alarms.evaluate_once()

    # Then two breaching out of three is enough
    alarm = cw.describe_alarms(AlarmNames=["latency"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    assert "2 out of the last 3 datapoints" in alarm["StateReason"]
    assert (
        "(minimum 2 datapoints for INSUFFICIENT_DATA -> ALARM transition)" in alarm["StateReason"]
    )


@pytest.mark.parametrize(
    ("statistic", "expected"),
    [
        ({"Statistic": "Sum"}, 55.0),
        ({"Statistic": "Average"}, 5.5),
        ({"Statistic": "Minimum"}, 1.0),
        ({"Statistic": "Maximum"}, 10.0),
        ({"Statistic": "SampleCount"}, 10.0),
        ({"ExtendedStatistic": "p90"}, 9.0),
        ({"ExtendedStatistic": "p50"}, 5.0),
    ],
)
def test_statistics(
    cw: Any, patched: None, clock: ManualClock, statistic: dict[str, str], expected: float
) -> None:
    # Given values 1..10 in the latest period and an alarm using one statistic
    params: dict[str, Any] = {
        "AlarmName": "latency",
        "Namespace": "App",
        "MetricName": "Latency",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": -1.0,
        "ComparisonOperator": "GreaterThanThreshold",
        **statistic,
    }
    cw.put_metric_alarm(**params)
    for value in range(1, 11):
        put_datum(cw, clock, float(value), seconds_ago=1)

    # When it is evaluated at the end of the period
    to_next_boundary(clock)
    evaluator(clock).evaluate_once()

    # Then the statistic over the period is the evaluated datapoint
    alarm = cw.describe_alarms(AlarmNames=["latency"])["MetricAlarms"][0]
    assert json.loads(alarm["StateReasonData"])["recentDatapoints"] == [expected]


def test_periods_are_whole_and_aligned_to_the_clock(cw: Any, patched: None, clock: ManualClock) -> None:
    # Given a 5-minute alarm (periods start at multiples of 300 s) and a breaching
    # datapoint now, and the clock at the period boundary before it
    put_alarm(cw, Period=300)
    start = math.floor(clock.now() / 300) * 300
    clock.set(start + 299)
    put_datum(cw, clock, 500)
    alarms = evaluator(clock)

    # When it is evaluated before the period ends
    alarms.evaluate_once()

    # Then the datapoint is not judged yet (the periods evaluated ended at `start`)
    assert alarm_state(cw, "latency") == "INSUFFICIENT_DATA"

    # When the clock reaches the boundary
    clock.set(start + 300)
    alarms.evaluate_once()

    # Then the whole period is evaluated, and reported with its aligned start
    alarm = cw.describe_alarms(AlarmNames=["latency"])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM"
    [point] = json.loads(alarm["StateReasonData"])["evaluatedDatapoints"]
    assert datetime.strptime(point["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() == start


def test_an_alarm_is_evaluated_once_per_period_boundary(cw: Any, patched: None, clock: ManualClock) -> None:
    # Given an alarm evaluated at a boundary with no data (INSUFFICIENT_DATA)
    put_alarm(cw)
    alarms = evaluator(clock)
    to_next_boundary(clock)
    alarms.evaluate_once()
    # When a breaching datapoint lands in the following period, in the middle of it
    clock.advance(10)
    put_datum(cw, clock, 500, seconds_ago=5)
    put_datum(cw, clock, 500, seconds_ago=65)  # and one in the period evaluated already

    # Then nothing is evaluated until the next boundary
    assert alarms.evaluate_once() == []
    assert alarm_state(cw, "latency") == "INSUFFICIENT_DATA"
    to_next_boundary(clock)
    [change] = alarms.evaluate_once()
    assert (change.old_state, change.new_state) == ("INSUFFICIENT_DATA", "ALARM")


def test_lambda_metrics_are_readable_only_after_the_publication_delay(
    cw: Any, patched: None, clock: ManualClock
) -> None:
    # Given the runtime's publisher with AWS's one-minute delay, and a canary alarm
    publisher = LambdaMetricsPublisher(clock, delay_seconds=60)
    uninstall = publisher.install()
    put_alarm(
        cw, "canary-errors", Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum",
        Threshold=0.0, TreatMissingData="notBreaching",
        Dimensions=[
            {"Name": "FunctionName", "Value": FUNCTION},
            {"Name": "Resource", "Value": f"{FUNCTION}:live"},
            {"Name": "ExecutedVersion", "Value": "2"},
        ],
    )
    alarms = evaluator(clock)
    try:
        # When the candidate fails
        invoked_at = clock.now()
        publisher(
            account_id=ACCOUNT, region=REGION, function_name=FUNCTION, resource=f"{FUNCTION}:live",
            executed_version="2", duration_ms=12.5, error=True, weighted_alias=True,
        )
        candidate = {"FunctionName": FUNCTION, "Resource": f"{FUNCTION}:live", "ExecutedVersion": "2"}

        # Then for 59 s nothing can be read and the alarm evaluated at the boundary sees no data
        to_next_boundary(clock)  # 30 s later
        alarms.evaluate_once()
        assert metric_sum(cw, "Errors", candidate) is None
        assert alarm_state(cw, "canary-errors") == "OK"
        clock.set(invoked_at + 59)
        assert metric_sum(cw, "Errors", candidate) is None
        assert publisher.pending() == 12

        # When the delay has passed, it is there, timestamped when the invocation ran
        clock.set(invoked_at + 60)
        assert metric_sum(cw, "Errors", candidate) == 1
        [datum] = [d for d in cloudwatch_backends[ACCOUNT][REGION].metric_data
                   if d.name == "Errors" and len(d.dimensions) == 3]
        assert datum.timestamp.replace(tzinfo=UTC).timestamp() == invoked_at
        # and the alarm fires at the next boundary, on the period it belongs to
        to_next_boundary(clock)
        alarms.evaluate_once()
        assert alarm_state(cw, "canary-errors") == "ALARM"
    finally:
        uninstall()
    assert publisher.pending() == 0


def test_running_evaluator_alarms_on_live_errors_then_loses_evidence(
    cw: Any, patched: None
) -> None:
    # Given a canary alarm (missing data = not enough evidence) and a running evaluator
    put_alarm(
        cw,
        "canary-errors",
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Statistic="Sum",
        Threshold=0.0,
        Dimensions=[
            {"Name": "FunctionName", "Value": FUNCTION},
            {"Name": "Resource", "Value": f"{FUNCTION}:live"},
            {"Name": "ExecutedVersion", "Value": "2"},
        ],
    )
    clock = ScaledClock(0.01)  # a 60 s period lasts 0.6 real seconds
    alarms = evaluator(clock)
    alarms.start()
    try:
        # When the candidate keeps failing
        def failing() -> bool:
            emit("2", error=True, timestamp=clock.datetime())
            return alarm_state(cw, "canary-errors") == "ALARM"

        # Then the alarm fires
        wait_until(failing)

        # When the traffic stops, after a few scaled periods there is no evidence left
        wait_until(lambda: alarm_state(cw, "canary-errors") == "INSUFFICIENT_DATA")
    finally:
        alarms.stop()


# --------------------------------------------------------------------------- events


def test_new_alarms_start_with_insufficient_data(cw: Any, patched: None) -> None:
    put_alarm(cw)

    alarm = cw.describe_alarms(AlarmNames=["latency"])["MetricAlarms"][0]

    assert alarm["StateValue"] == "INSUFFICIENT_DATA"
    assert alarm["StateReason"] == "Unchecked: Initial alarm creation"


def alarm_rule(target_arn: str) -> None:
    client = boto3.client("events", region_name=REGION)
    client.put_rule(
        Name="on-alarm",
        EventPattern=json.dumps(
            {
                "source": ["aws.cloudwatch"],
                "detail-type": ["CloudWatch Alarm State Change"],
                "detail": {"state": {"value": ["ALARM"]}},
            }
        ),
    )
    client.put_targets(Rule="on-alarm", Targets=[{"Id": "on-alarm", "Arn": target_arn}])


def test_state_change_event_reaches_a_lambda_target_in_aws_shape(
    cw: Any, patched: None, invoker: FakeInvoker, clock: ManualClock
) -> None:
    # Given a rule sending alarm state changes to a Lambda function
    target = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:on-alarm"
    alarm_rule(target)
    dimensions = [
        {"Name": "FunctionName", "Value": FUNCTION},
        {"Name": "Resource", "Value": f"{FUNCTION}:live"},
        {"Name": "ExecutedVersion", "Value": "2"},
    ]
    put_alarm(
        cw,
        "canary-errors",
        AlarmDescription="candidate errors",
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Statistic="Sum",
        Threshold=0.0,
        Dimensions=dimensions,
    )

    # When the candidate fails and the alarm is evaluated at the end of the period
    emit("2", error=True, timestamp=clock.datetime())
    to_next_boundary(clock)
    evaluator(clock).evaluate_once()

    # Then the function gets the event AWS sends
    assert [arn for arn, _ in invoker.calls] == [target]
    event = invoker.events()[0]
    assert event["source"] == "aws.cloudwatch"
    assert event["detail-type"] == "CloudWatch Alarm State Change"
    assert event["account"] == ACCOUNT
    assert event["region"] == REGION
    assert event["resources"] == [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:canary-errors"]
    assert datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() == clock.now()
    detail = event["detail"]
    assert detail["alarmName"] == "canary-errors"
    assert detail["state"]["value"] == "ALARM"
    assert detail["state"]["reason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints")
    assert json.loads(detail["state"]["reasonData"])["threshold"] == 0.0
    assert datetime.strptime(detail["state"]["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert detail["previousState"]["value"] == "INSUFFICIENT_DATA"
    assert detail["previousState"]["reason"] == "Unchecked: Initial alarm creation"
    assert detail["configuration"]["description"] == "candidate errors"
    [metric] = detail["configuration"]["metrics"]
    assert metric["returnData"] is True
    assert metric["metricStat"] == {
        "metric": {
            "dimensions": {d["Name"]: d["Value"] for d in dimensions},
            "name": "Errors",
            "namespace": "AWS/Lambda",
        },
        "period": 60,
        "stat": "Sum",
    }


def test_set_alarm_state_emits_the_event_once_per_change(
    cw: Any, patched: None, invoker: FakeInvoker
) -> None:
    # Given a rule on alarm state changes to ALARM
    alarm_rule(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:on-alarm")
    put_alarm(cw)

    # When the alarm is set to ALARM by hand, twice
    cw.set_alarm_state(AlarmName="latency", StateValue="ALARM", StateReason="drill")
    cw.set_alarm_state(AlarmName="latency", StateValue="ALARM", StateReason="drill again")

    # Then one event tells the change
    [event] = invoker.events()
    assert event["detail"]["state"]["value"] == "ALARM"
    assert event["detail"]["state"]["reason"] == "drill"
    assert event["detail"]["previousState"]["value"] == "INSUFFICIENT_DATA"


def test_uninstall_restores_moto(aws: None) -> None:
    originals = (
        CloudWatchBackend.set_alarm_state,
        CloudWatchBackend.get_metric_statistics,
        CloudWatchBackend.get_all_metrics,
        cloudwatch.Alarm.__init__,
        Dimension.__lt__,
        CloudWatchBackend.get_metric_data,
    )

    cloudwatch.install()()

    assert originals == (
        CloudWatchBackend.set_alarm_state,
        CloudWatchBackend.get_metric_statistics,
        CloudWatchBackend.get_all_metrics,
        cloudwatch.Alarm.__init__,
        Dimension.__lt__,
        CloudWatchBackend.get_metric_data,
    )


def test_metrics_go_straight_into_the_backend(aws: None) -> None:
    emit("2", error=True, timestamp=datetime(2030, 1, 1, tzinfo=UTC))

    data = cloudwatch_backends[ACCOUNT][REGION].metric_data

    assert len(data) == 12  # 3 metrics x 4 dimension sets
    assert {d.timestamp for d in data} == {datetime(2030, 1, 1)}
