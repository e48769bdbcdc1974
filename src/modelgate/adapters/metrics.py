"""CloudWatch reading for the canary judge: both sides' counts and latencies over one window."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from modelgate.canary_judge import SideSample

LAMBDA_NAMESPACE = "AWS/Lambda"


def version_dimensions(function_name: str, alias: str, version: str) -> list[dict[str, str]]:
    """The dimension set Lambda emits for invocations through a weighted alias, per executed
    version ("For alias invocations, Lambda uses the ExecutedVersion dimension to filter the
    metric data by the invoked version", "Implement Lambda canary deployments using a weighted
    alias", https://docs.aws.amazon.com/lambda/latest/dg/configuring-alias-routing.html). The
    judge reads it during the steps before the final bake, while the alias is weighted."""
    return [
        {"Name": "FunctionName", "Value": function_name},
        {"Name": "Resource", "Value": f"{function_name}:{alias}"},
        {"Name": "ExecutedVersion", "Value": version},
    ]


def collect_window(
    cloudwatch: Any,
    *,
    function_name: str,
    alias: str,
    candidate_version: str,
    stable_version: str,
    start: datetime,
    end: datetime,
    period: int = 60,
    latency_statistic: str = "Average",
) -> tuple[SideSample, SideSample]:
    """Both sides' counts and per-period latencies over [start, end), in one GetMetricData.

    Invocations and Errors are summed over the window (exact counts); Duration gives one
    ``latency_statistic`` value per period that had traffic (see the module docstring for
    why ``Average``). The window is widened to whole periods (Lambda metrics have
    1-minute resolution and CloudWatch aligns periods anyway); both sides get the same
    window, so the comparison stays fair.

    Metrics are timestamped when the invocation started and arrive a minute or more
    later: a window that ends "now" under-counts its last minute on both sides alike, so
    the canary stage ends it ``metrics_delay_seconds`` (policy) before now. A window that
    holds no whole period yet (a bake shorter than that delay) returns empty samples: no
    evidence, never a pass.

    Local runtime: moto 5.2.1's GetMetricData computes Sum/Average/Minimum/Maximum/
    SampleCount only (a percentile such as ``p90`` makes its response fail), and matches
    dimensions only in the order they were put unless ``modelgate_emulator.cloudwatch``'s
    patches are installed; the order above is the one the local runtime emits.
    """
    if period < 60 or period % 60:
        raise ValueError(
            f"period must be a multiple of 60 s (Lambda metrics are per minute), got {period}"
        )
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    if end < start:
        raise ValueError(f"the window ends before it starts: {start.isoformat()} to {end.isoformat()}")
    start, end = _aligned(start, period, up=False), _aligned(end, period, up=True)
    sides = {"candidate": candidate_version, "stable": stable_version}
    metrics = {
        "invocations": ("Invocations", "Sum"),
        "errors": ("Errors", "Sum"),
        "duration": ("Duration", latency_statistic),
    }
    queries: list[dict[str, Any]] = [
        {
            "Id": f"{side}_{key}",
            "MetricStat": {
                "Metric": {
                    "Namespace": LAMBDA_NAMESPACE,
                    "MetricName": metric,
                    "Dimensions": version_dimensions(function_name, alias, version),
                },
                "Period": period,
                "Stat": stat,
            },
            "ReturnData": True,
        }
        for side, version in sides.items()
        for key, (metric, stat) in metrics.items()
    ]
    values: dict[str, list[float]] = {q["Id"]: [] for q in queries}
    pages = (
        cloudwatch.get_paginator("get_metric_data").paginate(
            MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending"
        )
        if end > start
        else ()
    )
    for page in pages:
        for result in page.get("MetricDataResults", []):
            if result.get("StatusCode") in ("InternalError", "Forbidden"):
                raise RuntimeError(
                    f"CloudWatch could not read {result['Id']} for {function_name}:{alias}: "
                    f"{result['StatusCode']} {page.get('Messages') or ''}".strip()
                )
            values[result["Id"]].extend(v for v in result.get("Values", []) if v == v)  # no NaN
    def sample(side: str) -> SideSample:
        return SideSample(
            version=sides[side],
            invocations=round(sum(values[f"{side}_invocations"])),
            errors=round(sum(values[f"{side}_errors"])),
            latencies_ms=tuple(values[f"{side}_duration"]),
            latency_basis=f"per-{period}s {latency_statistic} of Duration",
        )

    return sample("candidate"), sample("stable")


def _aligned(moment: datetime, period: int, *, up: bool) -> datetime:
    seconds = moment.timestamp()
    aligned = (math.ceil if up else math.floor)(seconds / period) * period
    return datetime.fromtimestamp(aligned, timezone.utc)

