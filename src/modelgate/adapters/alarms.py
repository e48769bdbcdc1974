"""Adapter over CloudWatch alarms: the canary alarms of one release (idempotent puts and deletes)."""

from __future__ import annotations

import json
from typing import Any

from modelgate.policy import CanaryAlarmSpec


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
) -> list[str]:
    """Alarms on the candidate alone: the ExecutedVersion dimension of the alias's metrics.

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
            Dimensions=[
                {"Name": "FunctionName", "Value": function_name},
                {"Name": "Resource", "Value": f"{function_name}:{alias}"},
                {"Name": "ExecutedVersion", "Value": candidate},
            ],
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
