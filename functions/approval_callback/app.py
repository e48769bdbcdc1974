"""ApprovalCallback: the Lambda Function URL behind the approve / reject links in the mail.

GET  /decide?t=<signed link>  verifies the link and shows a confirmation page. It decides
                              nothing (mail scanners open every link they see).
POST /decide                  t + comment from that page: verifies the link again (also
                              against keys read just now: a revoked key fails at once),
                              checks its approver is named by the policy and four eyes,
                              uses the link up and decides as the link's approver.

The URL has no AWS auth (AuthType NONE): the link's signature is the authorisation. This
module only maps HTTP to modelgate.approval.links and its outcomes to pages; it logs the
release id and the link's nonce, never the link itself (nor, of course, a task token).
Dependencies come from ``build_deps()``, which tests replace.

Routing is done here, not by Powertools' ``LambdaFunctionUrlResolver``: two routes don't
need a router, and ``aws_lambda_powertools.event_handler`` imports every resolver it has
(AppSync and asyncio, Bedrock agents, OpenAPI, the data classes) when any one is imported,
which was most of this function's cold start beyond boto3 (issue #7). The event and the
result are a Function URL's (payload format 2.0: ``requestContext.http.method``, ``rawPath``,
``queryStringParameters``, lower-case ``headers``, ``body`` with ``isBase64Encoded``; the
result ``statusCode``, ``headers``, ``body``, ``isBase64Encoded``, ``cookies``), as the AWS
Lambda Developer Guide's "Invoking Lambda function URLs", section "Request and response
payloads" (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html) gives them.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import partial
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from modelgate.adapters import clients
from modelgate.approval import keys as signing_keys
from modelgate.approval import links
from modelgate.approval import page as pages
from modelgate.approval.identity import FourEyesViolation
from modelgate.errors import TASK_GONE_CODES, ConfigurationError, DecisionConflict, error_code
from modelgate.observability import logger
from modelgate.pipeline import approval
from modelgate.pipeline.deps import Deps, default_deps
from modelgate.settings import ApprovalCallbackSettings

REPORT_URL_SECONDS = 900
_FORM_TYPE = "application/x-www-form-urlencoded"


# The records below are NamedTuples, not frozen dataclasses: a dataclass compiles its generated
# methods at import, about 4 M instructions each of this function's cold start (issue #7).
class CallbackDeps(NamedTuple):
    pipeline: Deps[ApprovalCallbackSettings]
    keys: links.KeySource
    clock: Callable[[], float] = time.time
    fresh_keys: Callable[[], list[bytes]] | None = None  # read now, no cache (decisions)


def build_deps() -> CallbackDeps:
    """Real AWS (clients cached per cold start by modelgate.adapters.clients); tests monkeypatch this."""
    deps = default_deps(ApprovalCallbackSettings)
    secret, secretsmanager = deps.settings.signing_secret_arn, clients.client("secretsmanager")
    return CallbackDeps(
        pipeline=deps,
        keys=lambda refresh: signing_keys.load_signing_keys(secretsmanager, secret, refresh=refresh),
        fresh_keys=lambda: signing_keys.load_signing_keys(secretsmanager, secret, fresh=True),
    )


class Request(NamedTuple):
    """What the routes read of a Function URL request (payload format 2.0)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names in lower case
    body: str
    source_ip: str
    user_agent: str

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Request:
        http = (event.get("requestContext") or {}).get("http") or {}
        body = event.get("body") or ""
        if body and event.get("isBase64Encoded"):
            body = base64.b64decode(body.encode()).decode()
        return cls(
            method=str(http.get("method") or "").upper(),
            path=str(event.get("rawPath") or http.get("path") or ""),
            query=event.get("queryStringParameters") or {},
            headers={str(k).lower(): v for k, v in (event.get("headers") or {}).items()},
            body=body,
            source_ip=str(http.get("sourceIp") or ""),
            user_agent=str(http.get("userAgent") or ""),
        )


class Response(NamedTuple):
    status_code: int
    body: str
    headers: Mapping[str, str] = MappingProxyType({})

    def as_function_url_result(self) -> dict[str, Any]:
        return {
            "statusCode": self.status_code,
            "headers": dict(self.headers),
            "body": self.body,
            "isBase64Encoded": False,
            "cookies": [],
        }


def _html(status: int, body: str) -> Response:
    return Response(status, body, {"Content-Type": pages.CONTENT_TYPE, **pages.PAGE_HEADERS})


def _now_iso(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), timezone.utc).isoformat(timespec="milliseconds")


def _report(deps: Deps, record: dict) -> tuple[str | None, str | None]:
    """A short-lived https link to the HTML report (signed locally: no AWS call), or its s3:// location."""
    ev = record.get("evaluation") or {}
    key = ev.get("report_html_key") or ev.get("report_key")
    if not key:
        return None, None
    location = f"s3://{deps.settings.artifact_bucket}/{key}"
    try:
        url = deps.s3.generate_presigned_url(
            "get_object", Params={"Bucket": deps.settings.artifact_bucket, "Key": key}, ExpiresIn=REPORT_URL_SECONDS
        )
    except Exception:  # a report link is a convenience; the page must still render
        logger.warning("report link not signed", extra={"release_id": record.get("release_id")})
        return None, location
    return url, location


# ---------------------------------------------------------------------- routes
def confirm(request: Request) -> Response:
    token = request.query.get("t") or ""
    if not token:
        raise links.ApprovalFormInvalid("the link has no signed token (?t=...): copy the whole link from the mail")
    deps = build_deps()
    claims, record = links.open_link(token, keys=deps.keys, ledger=deps.pipeline.ledger, now=deps.clock())
    logger.append_keys(release_id=claims.release_id, nonce=claims.nonce)
    logger.info("approval link opened", extra={"decision": claims.decision})
    report_url, report_location = _report(deps.pipeline, record)
    return _html(
        200,
        pages.confirmation_page(
            claims, token, record, report_url=report_url, report_location=report_location,
            four_eyes=bool(record.get("four_eyes")),
        ),
    )


def decide(request: Request) -> Response:
    content_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type != _FORM_TYPE:
        raise links.ApprovalFormInvalid(f"expected a form post ({_FORM_TYPE}), got {content_type or 'no content type'}")
    fields = parse_qs(request.body, keep_blank_values=True, max_num_fields=10)
    repeated = sorted(k for k, v in fields.items() if len(v) > 1)
    if repeated:
        raise links.ApprovalFormInvalid(f"field(s) sent more than once: {', '.join(repeated)}")
    form = links.parse_form({k: v[0] for k, v in fields.items()})
    deps = build_deps()
    claims, record = links.decide_by_link(
        form,
        source_ip=request.source_ip,
        user_agent=request.user_agent,
        keys=deps.keys,
        ledger=deps.pipeline.ledger,
        decide=partial(approval.decide, deps.pipeline),
        now=deps.clock(),
        at=_now_iso(deps.clock),
        fresh_keys=deps.fresh_keys,
    )
    logger.append_keys(release_id=claims.release_id, nonce=claims.nonce)
    logger.info("approval decided by link", extra={"decision": claims.decision})
    return _html(200, pages.result_page(claims, record))


# ---------------------------------------------------------------------- refusals
_REFUSALS: dict[type[Exception], tuple[int, str, str | None]] = {
    links.ApprovalFormInvalid: (400, "Bad request", "Nothing was decided. Go back and fill in the form again."),
    links.LinkInvalid: (403, "This link is not valid", "Nothing was decided. Use the links from the latest Modelgate mail, unaltered."),
    FourEyesViolation: (403, "Four eyes required", "Nothing was decided: another approver must approve (anyone may reject)."),
    links.NotAnApprover: (403, "Not an approver", "Nothing was decided. Ask an approver the policy names, or use `modelgate approve`."),
    links.ReleaseNotFound: (404, "Unknown release", "Nothing was decided."),
    DecisionConflict: (409, "Not waiting for a decision", "Nothing was changed: `modelgate status <release>` shows the history."),
    links.LinkExpired: (410, "This link has expired", "Nothing was decided. An approver can still decide with `modelgate approve|reject`."),
}


def refused(error: Exception) -> Response:
    status, title, hint = next(v for k, v in _REFUSALS.items() if isinstance(error, k))
    logger.info("approval request refused", extra={"status": status, "error": type(error).__name__})
    return _html(status, pages.refusal_page(title, str(error), hint=hint))


def aws_error(error: ClientError) -> Response:
    code = error_code(error)
    if code in TASK_GONE_CODES:
        logger.info("approval arrived after the task ended", extra={"error": code})
        return _html(409, pages.refusal_page(
            "Too late", "The release stopped waiting for approval before this decision reached it.",
            hint="`modelgate status <release>` shows what happened.",
        ))
    return unexpected(error)


def unexpected(error: Exception) -> Response:
    logger.exception("approval callback failed", extra={"error": type(error).__name__})
    status = 500 if not isinstance(error, ConfigurationError) else 503
    return _html(status, pages.refusal_page(
        "Something went wrong", "The decision could not be completed.",
        hint="Check `modelgate status <release>` before trying again.",
    ))


def not_found() -> Response:
    return _html(404, pages.refusal_page("Not found", f"Approval links go to {links.DECIDE_PATH}."))


# ---------------------------------------------------------------------- routing
ROUTES: dict[tuple[str, str], Callable[[Request], Response]] = {
    ("GET", links.DECIDE_PATH): confirm,
    ("POST", links.DECIDE_PATH): decide,
}


def _on_error(error: Exception) -> Response:
    """The page for an error a route raised: refusals by type, then AWS errors, then anything else."""
    if isinstance(error, tuple(_REFUSALS)):
        return refused(error)
    if isinstance(error, ClientError):
        return aws_error(error)
    return unexpected(error)


def handle(request: Request) -> Response:
    route = ROUTES.get((request.method, request.path))
    if route is None:  # another path, or another method on /decide
        return not_found()
    try:
        return route(request)
    except Exception as error:  # noqa: BLE001  (every error becomes a page; unexpected() logs its traceback)
        return _on_error(error)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle(Request.from_event(event)).as_function_url_result()
