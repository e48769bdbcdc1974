"""Adapter over Lambda: the service function's versions, its live alias, and version invokes.

Every side effect here is idempotent, so a task Step Functions retries does no harm:
publishing reuses the version already published for a release, alias updates set an
absolute state, alarm puts overwrite and deletes ignore what is gone.
"""

from __future__ import annotations

import json
from typing import Any

from modelgate.errors import THROTTLE_CODES, CandidatePublishFailed, Throttled
from modelgate.manifest import is_pinned


def alias_state(lambda_client: Any, function_name: str, alias: str) -> tuple[str, dict[str, float]]:
    """(the alias's version, its additional version weights)."""
    response = lambda_client.get_alias(FunctionName=function_name, Name=alias)
    weights = response.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}) or {}
    return response["FunctionVersion"], {k: float(v) for k, v in weights.items()}


def version_environment(lambda_client: Any, function_name: str, version: str) -> dict[str, str]:
    config = lambda_client.get_function_configuration(FunctionName=function_name, Qualifier=version)
    return config.get("Environment", {}).get("Variables", {}) or {}


def is_configured(lambda_client: Any, function_name: str, version: str) -> bool:
    """Whether that version of the function serves a model release (its environment pins one)."""
    return is_pinned(version_environment(lambda_client, function_name, version))


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
    """Route ``weight`` of the alias to ``candidate``, the rest to ``stable``: the alias stays
    weighted, so Lambda publishes each version's metrics under ``ExecutedVersion`` ("Use the
    ExecutedVersion dimension to compare error rates for two versions of a function that are
    both targets of a weighted alias", https://docs.aws.amazon.com/lambda/latest/dg/monitoring-functions-metrics.html).
    A weight that rounds to 0 or 1 at 4 decimals is refused: all traffic to one version is
    :func:`point_alias`'s job (promotion and rollback), never a canary's.
    """
    if not 0.0 < round(weight, 4) < 1.0:
        raise ValueError(
            f"canary weight {weight} of {function_name}:{alias} rounds to {round(weight, 4)}: a weighted alias "
            "routes between 0.0001 and 0.9999 to its additional version (use point_alias for one version)"
        )
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


def invoke_version(lambda_client: Any, function_name: str, version: str, inputs: dict) -> dict:
    """Call one exact version of the service; a function error is raised, never scored as output."""
    response = lambda_client.invoke(
        FunctionName=function_name,
        Qualifier=version,
        Payload=json.dumps({"inputs": inputs}).encode(),
    )
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        error = payload if isinstance(payload, dict) else {}
        kind = error.get("errorType", "Error")
        message = f"{kind}: {error.get('errorMessage', payload)}"
        if kind in THROTTLE_CODES:  # the model provider throttled the function
            raise Throttled(message)
        raise RuntimeError(message)
    return payload


def invoke_alias(lambda_client: Any, function_name: str, alias: str, inputs: dict) -> bool:
    """One request through the alias, as live traffic sends it; True if the function failed."""
    response = lambda_client.invoke(
        FunctionName=function_name, Qualifier=alias, Payload=json.dumps({"inputs": inputs}).encode()
    )
    response["Payload"].read()
    return bool(response.get("FunctionError"))
