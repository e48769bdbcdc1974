"""Against a deployed stack on real AWS: skipped without credentials and MODELGATE_STACK.

    MODELGATE_STACK=modelgate-dev .venv/bin/python -m pytest tests/integration
"""

from __future__ import annotations

import os

import pytest

boto3 = pytest.importorskip("boto3")

STACK = os.environ.get("MODELGATE_STACK")


def _credentials() -> bool:
    try:
        return boto3.Session().get_credentials() is not None
    except Exception:  # noqa: BLE001 - any failure to find credentials means "skip"
        return False


pytestmark = [
    pytest.mark.integration,
    pytest.mark.enable_socket,
    pytest.mark.skipif(not STACK or not _credentials(), reason="needs AWS credentials and MODELGATE_STACK"),
]


def test_the_stack_has_its_outputs_and_a_registered_service():
    from modelgate_harness.control import Control

    from modelgate.registry import list_services

    control = Control.from_stack(STACK, boto3.Session())
    for key in ("ArtifactBucketName", "LedgerTableName", "ReleasePipelineArn", "ApprovalTopicArn", "ServicesPrefix"):
        assert control.outputs.get(key), key
    services = list_services(control.client("ssm"), control.outputs["ServicesPrefix"])
    assert "support-bot" in [s.service for s in services]


def test_the_live_alias_reports_its_executed_version():
    """The traffic generator counts calls per version from the response's executed version
    (the X-Amz-Executed-Version header of a synchronous invocation). The canary alarms'
    ExecutedVersion *metric dimension* is another matter: AWS documents it for weighted
    aliases only, so every bake, the final one too, keeps the alias weighted."""
    from modelgate_harness.control import Control

    control = Control.from_stack(STACK, boto3.Session())
    response = control.client("lambda").invoke(
        FunctionName=control.outputs["SampleServiceFunctionName"], Qualifier="live", Payload=b'{"inputs": {"question": "hi"}}'
    )
    assert response.get("ExecutedVersion")
