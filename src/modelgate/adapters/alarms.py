"""Adapter over CloudWatch alarms: the canary alarms of one release (idempotent puts and deletes)."""

from __future__ import annotations

import json
from typing import Any

from modelgate.policy import CanaryAlarmSpec


def canary_alarm_name(stack_name: str, release_id: str, spec: CanaryAlarmSpec) -> str:
    return f"{stack_name}-canary-{release_id}-{spec.name}"


def canary_dimensions(function_name: str, alias: str, candidate: str, *, whole_alias: bool) -> list[dict[str, str]]:
    """The dimension set a canary alarm watches (see :func:`put_canary_alarms`)."""
    dimensions = [
        {"Name": "FunctionName", "Value": function_name},
        {"Name": "Resource", "Value": f"{function_name}:{alias}"},
    ]
    if not whole_alias:
        dimensions.append({"Name": "ExecutedVersion", "Value": candidate})
    return dimensions


def put_canary_alarms(
    cloudwatch: Any,
    *,
    stack_name: str,
    release_id: str,
    function_name: str,
    alias: str,
    candidate: str,
    specs: list[CanaryAlarmSpec],
    whole_alias: bool = False,
) -> list[str]:
    """Alarms on the candidate alone (idempotent: a put replaces an alarm of the same name).

    While the alias is weighted they watch its ``ExecutedVersion`` dimension, which AWS
    documents for telling the two versions behind a weighted alias apart ("Types of metrics
    for Lambda functions": ExecutedVersion "only applies to alias invocations";
    https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html, and
    "Implement Lambda canary deployments using a weighted alias",
    https://docs.aws.amazon.com/lambda/latest/dg/configuring-alias-routing.html). Whether
    Lambda publishes it for an alias with no weights is not documented, so with
    ``whole_alias`` (the 100 % step: the alias serves the candidate alone) they watch the
    alias's own ``Resource`` dimension (``function:alias``), which Lambda documents for
    every qualified invocation.

    Missing data is not breaching *and* not healthy: the alarm stays out of ALARM, and the
    bake's end checks separately that the canary had enough invocations to judge.
    """
    names = []
    for spec in specs:
        name = canary_alarm_name(stack_name, release_id, spec)
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            AlarmDescription=json.dumps({"release_id": release_id, "alarm": spec.name}),
            Namespace="AWS/Lambda",
            MetricName=spec.metric,
            Dimensions=canary_dimensions(function_name, alias, candidate, whole_alias=whole_alias),
            Statistic=spec.statistic,
            Period=spec.period_seconds,
            EvaluationPeriods=spec.evaluation_periods,
            Threshold=spec.threshold,
            ComparisonOperator=spec.comparison,
            TreatMissingData="notBreaching",
        )
        names.append(name)
    return names


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
