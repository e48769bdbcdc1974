"""Adapter over Lambda: the service function's versions, its live alias, and version invokes.

Every side effect here is idempotent, so a task Step Functions retries does no harm:
publishing reuses the version already published for a release, alias updates set an
absolute state, alarm puts overwrite and deletes ignore what is gone. The pipeline moves the
alias only through ``fenced_update``: conditional on the alias's RevisionId and on the
release still holding its service's lease.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from modelgate.errors import (
    THROTTLE_CODES,
    AliasConflict,
    CandidatePublishFailed,
    LeaseLost,
    Throttled,
    error_code,
)
from modelgate.manifest import is_pinned

AliasState = tuple[str, dict[str, float]]  # (the alias's version, its additional version weights)
AliasTarget = Callable[[str, dict[str, float]], AliasState]  # the state to set, from the current one


def alias_state(lambda_client: Any, function_name: str, alias: str) -> AliasState:
    """(the alias's version, its additional version weights)."""
    return _state(lambda_client.get_alias(FunctionName=function_name, Name=alias))


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


def canary_state(stable: str, candidate: str, weight: float) -> AliasState:
    """The alias for a canary step: ``stable`` with ``weight`` of the calls to ``candidate``
    (4 decimals, as Lambda applies weights). The alias stays weighted, so Lambda publishes each
    version's metrics under ``ExecutedVersion`` ("Use the ExecutedVersion dimension to compare
    error rates for two versions of a function that are both targets of a weighted alias",
    https://docs.aws.amazon.com/lambda/latest/dg/monitoring-functions-metrics.html).
    A weight that rounds to 0 or 1 at 4 decimals is refused: all traffic to one version is
    promotion's and rollback's job, never a canary's.
    """
    if not 0.0 < round(weight, 4) < 1.0:
        raise ValueError(
            f"canary weight {weight} rounds to {round(weight, 4)}: a weighted alias routes between "
            "0.0001 and 0.9999 to its additional version (promotion points the alias at one version)"
        )
    return stable, {candidate: round(weight, 4)}


class AliasChange(NamedTuple):
    """A fenced alias update that happened: the alias before and after, and its new RevisionId."""

    before: AliasState
    after: AliasState
    revision: str | None


def fenced_update(
    lambda_client: Any,
    function_name: str,
    alias: str,
    target: AliasTarget,
    *,
    holds_lease: Callable[[], bool],
    what: str,
    attempts: int = 5,
) -> AliasChange:
    """Move the alias to ``target(version, weights)`` (from what it is now) only while
    ``holds_lease()`` (the caller's release still holds its service's lease).

    1. GetAlias: the alias and its RevisionId; 2. the lease check; 3. UpdateAlias with that
    RevisionId, so the update fails (PreconditionFailedException) if anyone changed the alias
    since step 1: UpdateAlias "Only update the alias if the revision ID matches the ID that's
    specified. Use this option to avoid modifying an alias that has changed since you last read
    it." (Lambda API reference, UpdateAlias, RevisionId:
    https://docs.aws.amazon.com/lambda/latest/api/API_UpdateAlias.html); then it starts again
    from step 1 (``attempts`` times at most, then AliasConflict). 4. The lease check again:
    if the lease moved between 2 and 3 the update is undone (UpdateAlias back to the state of
    step 1, with the RevisionId step 3 returned, so the undo never overwrites a change made
    since, e.g. the new holder's) and LeaseLost is raised.

    Who takes the lease over bumps the alias's RevisionId with a fenced update of its own, so
    an update in flight that read the alias before is refused, and one that read it after
    finds the lease gone at step 2 or 4.
    """
    for _ in range(attempts):
        current = lambda_client.get_alias(FunctionName=function_name, Name=alias)
        before = _state(current)
        after = target(*before)
        if not holds_lease():
            raise LeaseLost(f"{what}: the lease is no longer held; {function_name}:{alias} not changed")
        conditional = {"RevisionId": current["RevisionId"]} if current.get("RevisionId") else {}
        try:
            response = lambda_client.update_alias(
                FunctionName=function_name,
                Name=alias,
                FunctionVersion=after[0],
                RoutingConfig={"AdditionalVersionWeights": after[1]},
                **conditional,
            )
        except ClientError as exc:
            if error_code(exc) == "PreconditionFailedException":
                continue  # the alias changed since it was read: read it again (and the lease)
            raise
        if holds_lease():
            return AliasChange(before=before, after=after, revision=response.get("RevisionId"))
        raise LeaseLost(f"{what}: the lease moved during the update; " + _undo(
            lambda_client, function_name, alias, before, response.get("RevisionId")
        ))
    raise AliasConflict(
        f"{what}: {function_name}:{alias} changed under each of {attempts} conditional updates (RevisionId moved)"
    )


def _undo(lambda_client: Any, function_name: str, alias: str, before: AliasState, revision: str | None) -> str:
    try:
        lambda_client.update_alias(
            FunctionName=function_name,
            Name=alias,
            FunctionVersion=before[0],
            RoutingConfig={"AdditionalVersionWeights": before[1]},
            **({"RevisionId": revision} if revision else {}),
        )
    except ClientError as exc:
        if error_code(exc) != "PreconditionFailedException":
            raise
        return f"{function_name}:{alias} was changed again since (by the lease's new holder): left as it is"
    return f"{function_name}:{alias} put back to version {before[0]} {before[1] or ''}".rstrip()


def _state(response: dict) -> AliasState:
    weights = response.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}) or {}
    return response["FunctionVersion"], {k: float(v) for k, v in weights.items()}


def point_alias(lambda_client: Any, function_name: str, alias: str, version: str) -> None:
    """Send all of the alias's traffic to one version, unconditionally: for setting a stack
    up (tests, tools). The pipeline moves the alias with ``fenced_update`` only."""
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
