"""Adapter over CloudWatch alarms: the canary alarms of one release (idempotent puts and deletes)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelgate import service_metrics
from modelgate.policy import CanaryAlarmSpec, is_percentile

if TYPE_CHECKING:
    from modelgate.alarm_thresholds import AlarmThreshold, LiveLatency

LAMBDA_NAMESPACE = "AWS/Lambda"
SERVICE_METRIC_NAMES = {"Errors": service_metrics.HEALTH_METRIC, "Duration": service_metrics.LATENCY_METRIC}


def canary_alarm_name(stack_name: str, release_id: str, spec: CanaryAlarmSpec) -> str:
    return f"{stack_name}-canary-{release_id}-{spec.name}"


def put_canary_alarms(
    cloudwatch: Any,
    *,
    stack_name: str,
    release_id: str,
    function_name: str,
    alias: str,
    candidate: str,
    specs: list[CanaryAlarmSpec],
    thresholds: list[AlarmThreshold],
    service: str | None = None,
) -> list[str]:
    """Alarms on the candidate alone: the ExecutedVersion dimension of the alias's metrics,
    each at its resolved threshold (``thresholds``, one per spec, in order).

    ExecutedVersion is documented for a *weighted* alias: "Use the ExecutedVersion dimension
    to compare error rates for two versions of a function that are both targets of a
    weighted alias" (AWS Lambda Developer Guide, "Viewing metrics for Lambda functions",
    https://docs.aws.amazon.com/lambda/latest/dg/monitoring-functions-metrics.html; also
    "Implement Lambda canary deployments using a weighted alias",
    https://docs.aws.amazon.com/lambda/latest/dg/configuring-alias-routing.html). So these
    alarms live exactly as long as the alias is weighted: every rollout step, the final bake
    too (99.99%, rollout.py), keeps it weighted, and Promote or Rollback deletes them when
    the alias goes back to one version. Unlike an alarm on the alias's ``Resource``
    dimension, no late datapoint of the stable version can ever land in their lookback.

    Missing data is not breaching *and* not healthy: the alarm stays out of ALARM, and the
    bake's end checks separately that the canary had enough invocations to judge.
    A percentile statistic goes in ``ExtendedStatistic`` (PutMetricAlarm takes either
    ``Statistic`` or ``ExtendedStatistic``, never both:
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html).

    A spec with ``source: service`` watches the service's own high-resolution metrics
    instead (:mod:`modelgate.service_metrics`, dimensions ``[service, version=candidate]``,
    ``service`` required): they name the version that ran, so they watch the candidate
    alone too, on 10 s periods, with no metric delay of AWS/Lambda's.
    """
    if len(thresholds) != len(specs):
        raise ValueError(f"{len(specs)} alarm specs but {len(thresholds)} thresholds")
    names = []
    for spec, threshold in zip(specs, thresholds):
        if threshold.alarm != spec.name:
            raise ValueError(f"threshold for alarm {threshold.alarm} given for alarm {spec.name}")
        name = canary_alarm_name(stack_name, release_id, spec)
        statistic = {"ExtendedStatistic" if is_percentile(spec.statistic) else "Statistic": spec.statistic}
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            # AlarmDescription holds at most 1024 characters: the basis, not its explanation.
            AlarmDescription=json.dumps(
                {"release_id": release_id, "alarm": spec.name, "threshold_basis": threshold.basis}
            ),
            **_metric(spec, function_name, alias, candidate, service),
            **statistic,
            Period=spec.period_seconds,
            EvaluationPeriods=spec.evaluation_periods,
            Threshold=threshold.threshold,
            ComparisonOperator=spec.comparison,
            TreatMissingData="notBreaching",
        )
        names.append(name)
    return names


def _metric(spec: CanaryAlarmSpec, function_name: str, alias: str, candidate: str, service: str | None) -> dict:
    if spec.source == "service":
        if not service:
            raise ValueError(f"alarm {spec.name} watches the service's metrics: the service name is required")
        return {
            "Namespace": service_metrics.NAMESPACE,
            "MetricName": SERVICE_METRIC_NAMES[spec.metric],
            "Dimensions": service_metrics.dimensions(service, candidate),
        }
    return {
        "Namespace": LAMBDA_NAMESPACE,
        "MetricName": spec.metric,
        "Dimensions": [
            {"Name": "FunctionName", "Value": function_name},
            {"Name": "Resource", "Value": f"{function_name}:{alias}"},
            {"Name": "ExecutedVersion", "Value": candidate},
        ],
    }


def live_latency(
    cloudwatch: Any,
    *,
    function_name: str,
    alias: str,
    statistic: str,
    window_seconds: int,
    end: datetime | None = None,
) -> LiveLatency:
    """Live's ``statistic`` of ``Duration`` through the alias over the ``window_seconds``
    before ``end`` (now), with the number of invocations it is computed from.

    Read before the canary starts, when the alias routes everything to live, from the
    ``[FunctionName, Resource=function:alias]`` dimension set that Lambda publishes for
    every invocation through an alias (AWS Lambda Developer Guide, "Using CloudWatch metrics
    with Lambda", dimensions: Resource is "the function version or alias",
    https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html) - not
    ``ExecutedVersion``, which AWS documents for alias invocations to tell versions apart. One GetMetricData
    with one period as long as the window (whole minutes, aligned to the minute: Lambda
    metrics have one-minute resolution); ``Stat`` takes percentiles as well as basic
    statistics (MetricStat: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricStat.html).
    Lambda metrics arrive a minute or more late, so the newest minute may be missing: an
    hour's window loses little. ``samples`` 0 means live had no traffic in the window.
    """
    if window_seconds < 60 or window_seconds % 60:
        raise ValueError(f"window_seconds must be a positive number of whole minutes, got {window_seconds}")
    end = end or datetime.now(UTC)
    if end.tzinfo is None:
        raise ValueError("end must be a timezone-aware datetime")
    end = datetime.fromtimestamp(math.floor(end.timestamp() / 60) * 60, UTC)
    start = end - timedelta(seconds=window_seconds)
    dimensions = [
        {"Name": "FunctionName", "Value": function_name},
        {"Name": "Resource", "Value": f"{function_name}:{alias}"},
    ]

    def query(query_id: str, stat: str) -> dict[str, Any]:
        metric = {"Namespace": LAMBDA_NAMESPACE, "MetricName": "Duration", "Dimensions": dimensions}
        return {"Id": query_id, "MetricStat": {"Metric": metric, "Period": window_seconds, "Stat": stat}}

    response = cloudwatch.get_metric_data(
        MetricDataQueries=[query("samples", "SampleCount"), query("value", statistic)],
        StartTime=start,
        EndTime=end,
        ScanBy="TimestampAscending",
    )
    # The steps that arm a canary (pipeline.canary) load the thresholds' models at init.
    from modelgate.alarm_thresholds import LiveLatency

    values: dict[str, list[float]] = {"samples": [], "value": []}
    for result in response.get("MetricDataResults", []):
        if result.get("StatusCode") in ("InternalError", "Forbidden"):
            raise RuntimeError(
                f"CloudWatch could not read live's Duration {result['Id']} for {function_name}:{alias}: "
                f"{result['StatusCode']} {response.get('Messages') or ''}".strip()
            )
        values[result["Id"]] = [v for v in result.get("Values", []) if not math.isnan(v)]
    samples = round(sum(values["samples"]))
    where = f"{function_name}:{alias} over the {window_seconds // 60} min before {end:%Y-%m-%dT%H:%M}Z"
    if not samples or not values["value"]:
        return LiveLatency(source="cloudwatch", value_ms=0.0, samples=0, detail=f"no invocations of {where}")
    # One period spans the window; should CloudWatch split it in two, weigh each by its calls.
    if len(values["value"]) == len(values["samples"]):
        value = sum(v * n for v, n in zip(values["value"], values["samples"])) / sum(values["samples"])
    else:
        value = max(values["value"])
    return LiveLatency(
        source="cloudwatch", value_ms=round(value, 3), samples=samples,
        detail=f"{statistic} of Duration of {samples} invocations of {where}",
    )


def alarms_firing(cloudwatch: Any, names: list[str]) -> list[dict]:
    """The named alarms currently in ALARM (with their reasons)."""
    if not names:
        return []
    firing = []
    for start in range(0, len(names), 100):
        response = cloudwatch.describe_alarms(AlarmNames=names[start : start + 100])
        firing += [
            {"name": a["AlarmName"], "reason": a.get("StateReason", "")}
            for a in response.get("MetricAlarms", [])
            if a["StateValue"] == "ALARM"
        ]
    return firing


def delete_alarms(cloudwatch: Any, names: list[str]) -> None:
    for start in range(0, len(names), 100):
        if names[start : start + 100]:
            cloudwatch.delete_alarms(AlarmNames=names[start : start + 100])
