"""The CloudWatch adapter the canary judge reads its window through (moto)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest

from modelgate.adapters.metrics import collect_window, version_dimensions
from modelgate.canary_judge import (
    JudgePolicy,
    judge_canary,
)

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
FN, ALIAS, CANDIDATE, STABLE = "svc-fn", "live", "7", "6"


# --------------------------------------------------------------------------- adapter (moto)


def _put(cloudwatch, version: str, minute: int, *, invocations: int, errors: int, durations: list[float], dims=None) -> None:
    when = T0 + timedelta(minutes=minute, seconds=10)
    dimensions = dims if dims is not None else version_dimensions(FN, ALIAS, version)
    cloudwatch.put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {"MetricName": "Invocations", "Dimensions": dimensions, "Timestamp": when, "Value": invocations, "Unit": "Count"},
            {"MetricName": "Errors", "Dimensions": dimensions, "Timestamp": when, "Value": errors, "Unit": "Count"},
            *(
                {"MetricName": "Duration", "Dimensions": dimensions, "Timestamp": when, "Value": d, "Unit": "Milliseconds"}
                for d in durations
            ),
        ],
    )


def test_collect_window_reads_both_versions_from_cloudwatch(aws_env) -> None:
    # Given 5 minutes of alias metrics per executed version, plus data that must not count:
    # another alias, the [FunctionName, Resource] aggregate, and a minute outside the window
    cloudwatch = boto3.client("cloudwatch")
    for minute in range(5):
        _put(cloudwatch, CANDIDATE, minute, invocations=3, errors=1 if minute == 2 else 0, durations=[100.0 + minute, 120.0 + minute])
        _put(cloudwatch, STABLE, minute, invocations=27, errors=0, durations=[90.0, 110.0])
    _put(cloudwatch, CANDIDATE, 1, invocations=50, errors=50, durations=[999.0],
         dims=[{"Name": "FunctionName", "Value": FN}, {"Name": "Resource", "Value": f"{FN}:other"}, {"Name": "ExecutedVersion", "Value": CANDIDATE}])
    _put(cloudwatch, CANDIDATE, 1, invocations=30, errors=1, durations=[999.0],
         dims=[{"Name": "FunctionName", "Value": FN}, {"Name": "Resource", "Value": f"{FN}:{ALIAS}"}])
    _put(cloudwatch, CANDIDATE, 7, invocations=100, errors=100, durations=[999.0])
    # When the window of the first 5 minutes is collected
    candidate, stable = collect_window(
        cloudwatch, function_name=FN, alias=ALIAS, candidate_version=CANDIDATE,
        stable_version=STABLE, start=T0, end=T0 + timedelta(minutes=5), period=60,
    )
    # Then the counts are exact sums and the latencies one per-minute Average per minute
    assert (candidate.version, candidate.invocations, candidate.errors) == (CANDIDATE, 15, 1)
    assert (stable.version, stable.invocations, stable.errors) == (STABLE, 135, 0)
    assert sorted(candidate.latencies_ms) == [110.0, 111.0, 112.0, 113.0, 114.0]
    assert stable.latencies_ms == (100.0,) * 5
    assert candidate.latency_basis == "per-60s Average of Duration"
    # And the judge can use them as they are
    assert judge_canary(candidate, stable, JudgePolicy(min_invocations=10)).verdict in ("pass", "not_enough_evidence")


def test_collect_window_widens_to_whole_periods(aws_env) -> None:
    # Given one minute of data, and a window starting mid-minute and ending mid-minute
    cloudwatch = boto3.client("cloudwatch")
    _put(cloudwatch, CANDIDATE, 0, invocations=4, errors=0, durations=[100.0])
    _put(cloudwatch, STABLE, 0, invocations=36, errors=0, durations=[100.0])
    candidate, stable = collect_window(
        cloudwatch, function_name=FN, alias=ALIAS, candidate_version=CANDIDATE, stable_version=STABLE,
        start=T0 + timedelta(seconds=30), end=T0 + timedelta(seconds=45),
    )
    # Then the minute counts for both sides alike
    assert (candidate.invocations, stable.invocations) == (4, 36)


def test_collect_window_with_no_traffic_is_not_enough_evidence(aws_env) -> None:
    # Given a window with no metrics at all
    candidate, stable = collect_window(
        boto3.client("cloudwatch"), function_name=FN, alias=ALIAS, candidate_version=CANDIDATE,
        stable_version=STABLE, start=T0, end=T0 + timedelta(minutes=15),
    )
    # Then zeros, which the judge never passes
    assert (candidate.invocations, stable.invocations) == (0, 0)
    assert judge_canary(candidate, stable, JudgePolicy()).verdict == "not_enough_evidence"


def test_collect_window_reads_what_the_local_runtime_emits(aws_env) -> None:
    # Given invocations through the weighted alias recorded as the local runtime records them
    from modelgate_emulator.cloudwatch import emit_lambda_metrics
    from moto.core import DEFAULT_ACCOUNT_ID

    for i in range(40):
        version = CANDIDATE if i % 10 == 0 else STABLE  # 10% canary
        emit_lambda_metrics(
            account_id=DEFAULT_ACCOUNT_ID, region="us-east-1", function_name=FN,
            resource=f"{FN}:{ALIAS}", executed_version=version, weighted_alias=True,
            duration_ms=200.0 if version == CANDIDATE else 100.0,
            error=version == CANDIDATE and i == 0,
            timestamp=T0 + timedelta(seconds=5 * i),
        )
    # When the window is collected
    candidate, stable = collect_window(
        boto3.client("cloudwatch"), function_name=FN, alias=ALIAS, candidate_version=CANDIDATE,
        stable_version=STABLE, start=T0, end=T0 + timedelta(minutes=4),
    )
    # Then each side has its own invocations, errors and per-minute durations
    assert (candidate.invocations, candidate.errors) == (4, 1)
    assert (stable.invocations, stable.errors) == (36, 0)
    assert set(candidate.latencies_ms) == {200.0}
    assert set(stable.latencies_ms) == {100.0}


def test_collect_window_refuses_bad_windows(aws_env) -> None:
    cloudwatch = boto3.client("cloudwatch")
    common = dict(function_name=FN, alias=ALIAS, candidate_version=CANDIDATE, stable_version=STABLE)
    with pytest.raises(ValueError, match="multiple of 60"):
        collect_window(cloudwatch, **common, start=T0, end=T0 + timedelta(minutes=5), period=30)
    with pytest.raises(ValueError, match="timezone-aware"):
        collect_window(cloudwatch, **common, start=T0.replace(tzinfo=None), end=T0 + timedelta(minutes=5))
    with pytest.raises(ValueError, match="ends before it starts"):
        collect_window(cloudwatch, **common, start=T0, end=T0 - timedelta(seconds=1))


def test_a_window_with_no_whole_period_yet_is_no_evidence(aws_env) -> None:
    # Given traffic in the minute at T0, and a window that ends where it starts (a bake
    # shorter than the metrics delay)
    cloudwatch = boto3.client("cloudwatch")
    _put(cloudwatch, CANDIDATE, 0, invocations=4, errors=4, durations=[100.0])
    candidate, stable = collect_window(
        cloudwatch, function_name=FN, alias=ALIAS, candidate_version=CANDIDATE, stable_version=STABLE,
        start=T0, end=T0,
    )
    # Then nothing is counted, and the judge does not pass it
    assert (candidate.invocations, stable.invocations) == (0, 0)
    assert judge_canary(candidate, stable, JudgePolicy()).verdict == "not_enough_evidence"
