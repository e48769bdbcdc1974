"""Adapters over Lambda (versions, the live alias) and CloudWatch (canary alarms).

Every side effect here is idempotent, so a task Step Functions retries does no harm:
publishing reuses the version already published for a release, alias updates set an
absolute state, alarm puts overwrite and deletes ignore what is gone.
"""

from __future__ import annotations

import json
from typing import Any

from modelgate.errors import CandidatePublishFailed
from modelgate.models import CanaryAlarmSpec

MODEL_CONFIG_VARS = ("MODEL_CONFIG_KEY", "MODEL_CONFIG_VERSION", "MODEL_PROMPT_VERSIONS")


def alias_state(lambda_client: Any, function_name: str, alias: str) -> tuple[str, dict[str, float]]:
    """(the alias's version, its additional version weights)."""
    response = lambda_client.get_alias(FunctionName=function_name, Name=alias)
    weights = response.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}) or {}
    return response["FunctionVersion"], {k: float(v) for k, v in weights.items()}


def version_environment(lambda_client: Any, function_name: str, version: str) -> dict[str, str]:
    config = lambda_client.get_function_configuration(FunctionName=function_name, Qualifier=version)
    return config.get("Environment", {}).get("Variables", {}) or {}


def is_configured(environment: dict[str, str]) -> bool:
    """A version serves a model release only when its environment pins one."""
    return bool(environment.get("MODEL_CONFIG_KEY"))


def publish_candidate(
    lambda_client: Any,
    function_name: str,
    *,
    release_id: str,
    model_config: dict[str, str],
) -> str:
    """Point $LATEST at the release's exact model config and publish a version of it.

    Idempotent: a version whose description is this release id is reused.
    """
    existing = _version_for_release(lambda_client, function_name, release_id)
    if existing:
        return existing
    current = lambda_client.get_function_configuration(FunctionName=function_name)
    variables = dict(current.get("Environment", {}).get("Variables", {}) or {})
    variables.update(model_config)
    lambda_client.update_function_configuration(
        FunctionName=function_name, Environment={"Variables": variables}
    )
    lambda_client.get_waiter("function_updated_v2").wait(
        FunctionName=function_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    published = lambda_client.publish_version(FunctionName=function_name, Description=release_id)
    version = published["Version"]
    pinned = version_environment(lambda_client, function_name, version)
    for key, value in model_config.items():
        if pinned.get(key) != value:
            raise CandidatePublishFailed(
                f"version {version} of {function_name} does not pin {key}={value!r} "
                f"(it has {pinned.get(key)!r}); another change raced this release"
            )
    return version


def _version_for_release(lambda_client: Any, function_name: str, release_id: str) -> str | None:
    for page in lambda_client.get_paginator("list_versions_by_function").paginate(
        FunctionName=function_name
    ):
        for version in page["Versions"]:
            if version["Version"] != "$LATEST" and version.get("Description") == release_id:
                return version["Version"]
    return None


def set_canary(
    lambda_client: Any, function_name: str, alias: str, *, stable: str, candidate: str, weight: float
) -> None:
    lambda_client.update_alias(
        FunctionName=function_name,
        Name=alias,
        FunctionVersion=stable,
        RoutingConfig={"AdditionalVersionWeights": {candidate: round(weight, 4)}},
    )


def point_alias(lambda_client: Any, function_name: str, alias: str, version: str) -> None:
    """Send all of the alias's traffic to one version (promotion and rollback)."""
    lambda_client.update_alias(
        FunctionName=function_name,
        Name=alias,
        FunctionVersion=version,
        RoutingConfig={"AdditionalVersionWeights": {}},
    )


# ---------------------------------------------------------------------- canary alarms
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
