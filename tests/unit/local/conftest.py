"""Fixtures for the embedded local AWS (modelgate_emulator): a small fixture stack.

The fixture template (fixtures/template.yaml) has every resource kind the real template
uses, and handlers written for the tests, so these tests don't depend on the real
functions. One test (test_template.py) deploys the real template.yaml.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from modelgate_emulator import LocalAWS

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_TEMPLATE = FIXTURES / "template.yaml"
REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def local_aws() -> Iterator[LocalAWS]:
    """The fixture stack, deployed once per test module (time factor 0.01)."""
    with LocalAWS(FIXTURE_TEMPLATE, stack_name="fixture", time_factor=0.01, seed=7) as local:
        yield local


def _poll(condition: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition") -> Any:
    """Wait for ``condition()`` to be truthy; return its value (no fixed sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def _task_token(local: LocalAWS, execution_arn: str) -> str | None:
    """The task token a waitForTaskToken task sent to its Lambda (read from the history)."""
    sfn = local.client("stepfunctions")
    for event in sfn.get_execution_history(executionArn=execution_arn)["events"]:
        details = event.get("taskScheduledEventDetails")
        if details:
            payload = json.loads(details["parameters"]).get("Payload", {})
            if isinstance(payload, dict) and payload.get("token"):
                return str(payload["token"])
    return None


# Helpers as fixtures: test modules here are not a package, so they can't import conftest.
@pytest.fixture(scope="session")
def fixture_template() -> Path:
    return FIXTURE_TEMPLATE


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def poll() -> Callable[..., Any]:
    return _poll


@pytest.fixture(scope="session")
def task_token() -> Callable[[LocalAWS, str], str | None]:
    return _task_token
