"""Every call the CLI's commands make, as the HTTP request botocore would send to `modelgate
local up`, maps back to the same operation and parameters (what the server authorises).

The calls are captured where the in-process IAM hook authorises them (``Enforcer.authorize``,
which the HTTP authoriser calls too), while the CLI's own code runs a release as each principal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from modelgate_emulator import http_iam, iam
from modelgate_emulator.logs import read_events
from modelgate_harness.control import caller_identity, put_dataset

from modelgate.errors import DecisionConflict
from modelgate.pipeline import outcome

CLI_SESSIONS = ("modelgate-ci", "modelgate-approver", "modelgate-operator")
KEYS = {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret", "session_token": "token"}


@pytest.fixture
def cli_calls(monkeypatch) -> Iterator[list[tuple[str, str, str, dict[str, Any]]]]:
    """(session, service, operation, params) of every call a CLI principal makes."""
    calls: list[tuple[str, str, str, dict[str, Any]]] = []
    original = iam.Enforcer.authorize

    def authorize(enforcer, principal, service, operation, params, region):
        session = principal.arn.rsplit("/", 1)[-1]
        if session in CLI_SESSIONS:
            calls.append((session, service, operation, {k: _content(v) for k, v in params.items()}))
        return original(enforcer, principal, service, operation, params, region)

    monkeypatch.setattr(iam.Enforcer, "authorize", authorize)
    yield calls


def _content(value: Any) -> Any:
    """A streaming parameter (botocore wraps a body in a stream) as the bytes it carries."""
    if not hasattr(value, "read"):
        return value
    position = value.tell()
    value.seek(0)
    data = value.read()
    value.seek(position)
    return data


def _normal(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def test_every_cli_call_round_trips_through_the_http_mapper(pipeline, cli_calls):
    # (a fresh stack: no release promoted first, which only gave the rollback below a live release
    # to find; the rollback's GetFunctionConfiguration is in tests/unit/local/test_http_iam.py)
    control = pipeline.control
    # Given the CLI's commands: submit (ci), approve (approver), status, dataset, logs, rollback (operator)
    run = pipeline.driver.submit(pipeline.examples / "v4", commit=pipeline.commit_for("v4"))
    assert pipeline.driver.wait_for_decision_point(run)
    pipeline.driver.decide(run, "approve", "captured")
    with control.acting("operator"):
        control.ledger().list_releases(service="support-bot", limit=20)
        control.ledger().get(run.release_id)
        read_events(control.client("logs"), pipeline.function, limit=5)
    put_dataset(control, "support-bot", pipeline.examples / "dataset.jsonl")
    with control.acting("operator"), pytest.raises(DecisionConflict, match="nothing to roll back to"):
        # v4 in flight is cancelled first; live serves the template's version, which no release put there
        outcome.rollback_service(control.deps(), "support-bot", caller_identity(control), "captured")
    pipeline.driver.finish(run)

    # Then CI and the operator made SDK calls, and every one maps back from its HTTP request; the
    # approver made none: it only asked the decision URL (a signed Function URL request, which
    # `modelgate local up` answers through LocalAWS.call_function_url: test_local_server.py)
    assert {session for session, *_ in cli_calls} == set(CLI_SESSIONS) - {"modelgate-approver"}
    asked = {r.action for r in pipeline.local.enforcer.records if r.principal.endswith("/modelgate-approver")}
    assert asked == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    seen: set[tuple[str, str]] = set()
    for session, service, operation, params in cli_calls:
        if (service, operation) in seen:
            continue
        seen.add((service, operation))
        wire = http_iam.serialize_call(service, operation, params, **KEYS)
        parsed = http_iam.parse_request(service, wire.method, wire.raw_url, wire.headers, wire.body)
        assert parsed.operation == operation, (session, service)
        for name, value in params.items():
            assert _normal(parsed.params.get(name)) == _normal(value), (service, operation, name)
    # the commands' calls span the services the README's CLI section names
    assert {service for service, _ in seen} >= {"s3", "dynamodb", "stepfunctions", "ssm", "lambda", "logs"}
