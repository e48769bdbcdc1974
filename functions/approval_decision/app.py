"""ApprovalDecision: `modelgate approve|reject` through IAM, behind a Function URL with
``AuthType: AWS_IAM``.

Why a function: the task token and the ledger's decision writes must be in the hands of code
that checks who decides. If approvers held ``states:SendTaskSuccess`` and the ledger's writes
themselves (as their policy did), an approver could skip every check and approve their own
release. Now only this function and the approval links' function hold them; approvers hold
``lambda:InvokeFunctionUrl`` on this URL (and ``lambda:InvokeFunction`` only when invoked
through the URL, ``lambda:InvokedViaFunctionUrl``), so they can ask, not decide.

Who decides is the identity AWS authenticated: with ``AWS_IAM`` every request to the URL is
SigV4-signed and Lambda puts the caller in ``requestContext.authorizer.iam`` (``userArn``,
``accountId``, ``callerId``...) before the handler runs ("Invoking Lambda function URLs",
section "Request payload"; "Control access to Lambda function URLs", Lambda Developer Guide:
https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html,
https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html). The body names only the release,
the decision and a comment; a request without that context (a URL misconfigured to NONE) is
refused, never trusted.

POST (any path), ``Content-Type: application/json``::

    {"release_id": "...", "decision": "approve" | "reject", "comment": "..."}

Answers JSON: 200 ``{"release_id", "status", "approval"}``; 400 a bad request; 403 not
authenticated, not a named approver, or four eyes; 409 the release does not wait for a decision.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelgate.approval.identity import FourEyesViolation
from modelgate.approval.links import NotAnApprover
from modelgate.errors import TASK_GONE_CODES, DecisionConflict, error_code
from modelgate.observability import logger
from modelgate.pipeline import approval
from modelgate.pipeline.deps import Deps, default_deps
from modelgate.text import one_line

MAX_BODY_BYTES = 8192


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    release_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$")
    decision: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=2000)


class BadRequest(Exception):
    pass


class NotAuthenticated(Exception):
    pass


def build_deps() -> Deps:
    """Real AWS; tests monkeypatch this."""
    return default_deps()


def caller_arn(event: Mapping[str, Any]) -> str:
    """The caller AWS authenticated (``requestContext.authorizer.iam.userArn``)."""
    iam = ((event.get("requestContext") or {}).get("authorizer") or {}).get("iam") or {}
    arn = iam.get("userArn")
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        raise NotAuthenticated(
            "the request carries no IAM caller: the decision URL must use AuthType AWS_IAM and be called with a "
            "SigV4-signed request (`modelgate approve|reject`)"
        )
    return arn


def parse_request(event: Mapping[str, Any]) -> DecisionRequest:
    method = str(((event.get("requestContext") or {}).get("http") or {}).get("method") or "").upper()
    if method != "POST":
        raise BadRequest(f"decisions are POSTed, not {one_line(method, 10) or 'sent without a method'}")
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise BadRequest(f"expected application/json, got {one_line(content_type, 60) or 'no content type'}")
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode()
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"the request body is {len(raw):,} bytes; at most {MAX_BODY_BYTES:,} are accepted")
    try:
        return DecisionRequest.model_validate_json(raw)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg'].lower()}" for e in exc.errors()]
        raise BadRequest(one_line("; ".join(problems), 500)) from exc


def _answer(status: int, body: Mapping[str, Any]) -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def _refused(status: int, error: Exception) -> dict:
    logger.info("decision refused", extra={"status": status, "error": type(error).__name__})
    return _answer(status, {"error": type(error).__name__, "message": str(error)})


def handle(event: Mapping[str, Any]) -> dict:
    try:
        caller = caller_arn(event)
        request = parse_request(event)
    except NotAuthenticated as exc:
        return _refused(403, exc)
    except BadRequest as exc:
        return _refused(400, exc)
    logger.append_keys(release_id=request.release_id)
    try:
        record = approval.decide_as_caller(build_deps(), request.release_id, request.decision, caller, request.comment)
    except (FourEyesViolation, NotAnApprover) as exc:
        return _refused(403, exc)
    except DecisionConflict as exc:
        return _refused(409, exc)
    except ClientError as exc:
        if error_code(exc) in TASK_GONE_CODES:
            return _refused(409, exc)
        raise
    logger.info("decided through IAM", extra={"decision": request.decision, "caller": caller})
    return _answer(200, {
        "release_id": request.release_id,
        "status": record.get("status"),
        "approval": record.get("approval") or {},
    })


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle(event)
