"""The IAM decision URL's handler (functions/approval_decision): who decides is the caller
Lambda authenticated (requestContext.authorizer.iam), never a field of the body."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from modelgate.pipeline.approval import register
from modelgate.policy import ReleasePolicy

APP = Path(__file__).resolve().parents[2] / "functions" / "approval_decision" / "app.py"
TOKEN = "AQCEAAAA-the-task-token=="
BOB = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Release_1a2b/bob@example.com"


@pytest.fixture
def app(world, monkeypatch):
    spec = importlib.util.spec_from_file_location("approval_decision_app_under_test", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "build_deps", lambda: world.deps)
    return module


def waiting(world, **policy) -> str:
    ctx = world.context(policy=ReleasePolicy(**policy))
    world.ledger.record(ctx.release_id, "Validated", "ok", service="support-bot", author="alice@example.com")
    register(world.deps, ctx)
    world.ledger.put_token(ctx.release_id, "approval", TOKEN)
    return ctx.release_id


def event(body: object, *, caller: str | None = BOB, method: str = "POST", content_type: str = "application/json"):
    context: dict = {"http": {"method": method, "path": "/"}}
    if caller is not None:
        context["authorizer"] = {"iam": {"userArn": caller, "accountId": "123456789012"}}
    return {"rawPath": "/", "headers": {"Content-Type": content_type}, "isBase64Encoded": False,
            "body": body if isinstance(body, str) else json.dumps(body), "requestContext": context}


def answer(response: dict) -> tuple[int, dict]:
    return response["statusCode"], json.loads(response["body"])


def test_the_authenticated_caller_decides(app, world):
    release_id = waiting(world)
    status, body = answer(app.handle(event({"release_id": release_id, "decision": "approve", "comment": "ok"})))
    assert status == 200 and body["status"] == "Approved" and body["approval"]["approver"] == BOB
    assert [name for name, _ in world.sfn.sent] == ["send_task_success"]


def test_a_request_without_an_iam_caller_is_refused(app, world):
    # a URL misconfigured to AuthType NONE: nobody authenticated, so nobody decides
    release_id = waiting(world)
    status, body = answer(app.handle(event({"release_id": release_id, "decision": "approve"}, caller=None)))
    assert status == 403 and "AuthType AWS_IAM" in body["message"]
    assert world.sfn.sent == []


@pytest.mark.parametrize(
    ("request_event", "says"),
    [
        (event({"release_id": "r", "decision": "approve"}, method="GET"), "decisions are POSTed"),
        (event({"release_id": "r", "decision": "approve"}, content_type="text/plain"), "expected application/json"),
        (event({"release_id": "r", "decision": "maybe"}), "decision"),
        (event({"release_id": "r\nApprove: https://x", "decision": "approve"}), "release_id"),
        (event({"release_id": "r", "decision": "approve", "approver": "alice@example.com"}), "approver"),
        (event("{not json"), "json"),
        (event({"release_id": "r", "decision": "approve", "comment": "x" * 9000}), "at most 8,192"),
    ],
)
def test_a_bad_request_is_a_400_naming_the_problem(app, world, request_event, says):
    status, body = answer(app.handle(request_event))
    assert status == 400 and says.lower() in body["message"].lower(), body
    assert world.sfn.sent == []


def test_refusals_map_to_their_status(app, world):
    release_id = waiting(world, approvers=["carol@example.com"])
    status, body = answer(app.handle(event({"release_id": release_id, "decision": "approve"})))
    assert status == 403 and body["error"] == "NotAnApprover"
    status, body = answer(app.handle(event({"release_id": release_id, "decision": "reject"})))
    assert status == 200 and body["status"] == "Rejected"
    status, body = answer(app.handle(event({"release_id": release_id, "decision": "reject"})))
    assert status == 409 and body["error"] == "DecisionConflict"
