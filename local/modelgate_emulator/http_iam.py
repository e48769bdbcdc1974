"""IAM for requests that reach the embedded AWS over HTTP (``modelgate local up``).

In process, ``iam`` authorises every call through a botocore hook. A CLI in another process
talks to moto's HTTP server, which has no botocore client to hook: this WSGI middleware sits
in front of that server and does, per request, what the hook does per call:

1. **Who.** The caller is the access key id in the request's Signature Version 4
   ``Authorization`` header (``Credential=AKID/date/region/service/aws4_request``), mapped to a
   named local principal (``ci``, ``approver``, ``operator``: :class:`LocalCredentials`,
   minted by ``modelgate local up`` with ``sts:AssumeRole`` of the principal's role and
   handed to the CLI in the state file). The signature is verified with the principal's secret
   key (the canonical request and string to sign of "Create a signed AWS API request",
   IAM User Guide, https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html,
   computed by botocore's own ``SigV4Auth``), and so is the session token
   (``X-Amz-Security-Token``) and, for S3, the body against ``X-Amz-Content-SHA256``.
   Refused before any authorisation, each in the service's own error shape ("Common Errors",
   https://docs.aws.amazon.com/awsconsolehelpdocs/latest/gsg/common-errors.html; S3: "Error
   responses", https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html):
   an unknown access key (S3 ``InvalidAccessKeyId`` 403; query services ``InvalidClientTokenId``
   403; JSON services ``UnrecognizedClientException``, 400 for the JSON RPC services and 403
   for REST-JSON ones), a wrong signature or token (``SignatureDoesNotMatch`` 403;
   ``InvalidSignatureException``), an unsigned request (``MissingAuthenticationToken``; S3
   ``AccessDenied``: anonymous requests get nothing here, no bucket policy grants them),
   Signature Version 2 (S3 ``InvalidRequest`` 400 "The authorization mechanism you have provided
   is not supported", as in ``s3.signature_v2_refused``; other services ``IncompleteSignature``)
   and presigned (query-string) SigV4, which the CLI never sends.
   Not modelled: the 15-minute clock-skew window (``RequestTimeTooSkewed``), credential
   expiry (the session keys live as long as the server) and the chunk signatures of a
   streaming (``aws-chunked``) upload, whose body is not hashed into the signature.
2. **What.** The request is mapped back to the botocore operation and its parameters with
   botocore's service model (:func:`parse_request`): ``X-Amz-Target`` for the JSON protocol,
   ``Action=`` for the query protocol, HTTP method + ``requestUri`` template (labels, greedy
   labels, required query keys) for REST-JSON / REST-XML; the parameters are read back from
   labels, query string, headers and body by moto's request parsers (``moto.core.parse``,
   which read the same model). A request the mapper cannot place is refused, never passed on.
3. **May they.** The operation and parameters go to :meth:`iam.Enforcer.authorize`, exactly
   what the in-process hook calls; a denial is answered with ``iam_policy.access_denied_error``
   (the service's AccessDenied shape), an operation with no IAM mapping with the same shape
   and a message that says so (fail closed). An allowed request runs as its principal
   (``iam.acting_as``), as an in-process call under ``LocalAWS.acting_as`` does.

Test: tests/unit/local/test_http_iam.py (mapper round trip over botocore-built requests,
refusals), tests/statemachine/test_local_server.py (the CLI against ``local up``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import io
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from modelgate_emulator import iam

LOG = logging.getLogger(__name__)

SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
SIGV2_MESSAGE = "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
_CREDENTIAL = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)"
    r"/aws4_request\s*,\s*SignedHeaders=(?P<headers>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------------------- principals' keys
@dataclasses.dataclass(frozen=True)
class LocalCredentials:
    """The session credentials one named principal's CLI signs with."""

    name: str
    principal: iam.Principal
    access_key_id: str
    secret_access_key: str
    session_token: str

    def for_state_file(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
            "arn": self.principal.arn,
        }


def mint_credentials(local: Any, names: Iterable[str]) -> dict[str, LocalCredentials]:
    """Session credentials per named principal: ``sts:AssumeRole`` of the role
    ``LocalAWS.principal(name)`` created for it (its trust policy trusts the account), as
    local-admin. moto answers ``GetCallerIdentity`` for these keys with the same assumed-role
    ARN the in-process hook names (``arn:aws:sts::ACCOUNT:assumed-role/ROLE/modelgate-NAME``)."""
    sts = local.client("sts")
    minted: dict[str, LocalCredentials] = {}
    with iam.acting_as(iam.LOCAL_ADMIN):
        for name in names:
            principal = local.principal(name)
            session = principal.arn.rsplit("/", 1)[-1]
            creds = sts.assume_role(RoleArn=principal.role_arn, RoleSessionName=session)["Credentials"]
            minted[name] = LocalCredentials(
                name, principal, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
            )
    return minted


# ---------------------------------------------------------------------------- the service model
@functools.cache
def _service_model(service: str) -> Any:
    from moto.core.utils import get_service_model

    return get_service_model(service)


@functools.cache
def _services_by_signing_name() -> dict[str, tuple[str, ...]]:
    """Signing name (the credential scope's service) -> botocore services the embedded AWS
    authorises (those ``iam_policy`` maps): two can share one (``bedrock``)."""
    from modelgate_emulator import iam_policy

    found: dict[str, list[str]] = {}
    for service in sorted({s for s, _ in iam_policy.MAPPED_OPERATIONS}):
        model = _service_model(service)
        found.setdefault(model.signing_name, []).append(service)
    return {name: tuple(services) for name, services in found.items()}


def protocol_of(service: str) -> str:
    from modelgate_emulator import iam_policy

    return iam_policy._protocol(service)[0]


@dataclasses.dataclass(frozen=True)
class _UriTemplate:
    operation: str
    method: str
    path: re.Pattern[str]
    query: tuple[tuple[str, str | None], ...]  # required query keys (value None: any value)
    headers: tuple[str, ...]  # lower-case headers of required members (x-amz-copy-source)
    literal_chars: int


@functools.cache
def _uri_templates(service: str) -> tuple[_UriTemplate, ...]:
    model = _service_model(service)
    templates = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri = http.get("requestUri", "/")
        path, _, query = uri.partition("?")
        pattern = ""
        literal = 0
        for part in re.split(r"(\{[^}]+\})", path):
            if part.startswith("{") and part.endswith("}"):
                label = part[1:-1]
                greedy = label.endswith("+")
                label = label.rstrip("+")
                pattern += f"(?P<{label}>.+)" if greedy else f"(?P<{label}>[^/]+)"
            else:
                pattern += re.escape(part)
                literal += len(part)
        required: list[tuple[str, str | None]] = []
        for pair in filter(None, query.split("&")):
            key, eq, value = pair.partition("=")
            required.append((key, value if eq else None))
        # Required members bound to the query string or a header tell apart operations that
        # share a URI (PutObject / CopyObject (x-amz-copy-source) / UploadPart (partNumber)).
        headers: list[str] = []
        input_shape = model.operation_model(name).input_shape
        for member in getattr(input_shape, "required_members", None) or ():
            shape = input_shape.members[member]
            location = shape.serialization.get("location")
            if location == "querystring":
                required.append((shape.serialization.get("name", member), None))
            elif location == "header":
                headers.append(str(shape.serialization.get("name", member)).lower())
        templates.append(
            _UriTemplate(name, http.get("method", "POST").upper(), re.compile(f"^{pattern}/?$"), tuple(required),
                         tuple(headers), literal)
        )
    return tuple(templates)


class UnparsedRequest(Exception):
    """The request could not be mapped to an operation of the service's model."""


@dataclasses.dataclass(frozen=True)
class ParsedRequest:
    service: str
    operation: str
    params: dict[str, Any]


def _rest_operation(
    service: str, method: str, raw_path: str, query: Mapping[str, list[str]], headers: Mapping[str, str]
) -> tuple[str, dict[str, str]]:
    """The operation whose method + requestUri template matches and whose required query keys
    and headers are present, most specific first (more of those, then more literal characters
    in the URI), and its URI labels, decoded. Two equally specific matches: refused (ambiguous)."""
    best: tuple[tuple[int, int], str, dict[str, str]] | None = None
    tied: list[str] = []
    for template in _uri_templates(service):
        if template.method != method:
            continue
        match = template.path.match(raw_path)
        if match is None:
            continue
        if any(key not in query or (value is not None and value not in query[key]) for key, value in template.query):
            continue
        if any(header not in headers for header in template.headers):
            continue
        rank = (len(template.query) + len(template.headers), template.literal_chars)
        if best is None or rank > best[0]:
            best = (rank, template.operation, {k: unquote(v) for k, v in match.groupdict().items()})
            tied = []
        elif rank == best[0]:
            tied.append(template.operation)
    if best is None:
        raise UnparsedRequest(f"no {service} operation matches {method} {raw_path}")
    if tied:
        raise UnparsedRequest(f"{method} {raw_path} matches more than one {service} operation: "
                              f"{', '.join([best[1], *tied])}")
    return best[1], best[2]


def parse_request(
    service: str, method: str, raw_url: str, headers: Mapping[str, str], body: bytes
) -> ParsedRequest:
    """(operation, parameters) of one HTTP request to ``service``, from botocore's model.

    ``raw_url``: the path and query string as sent (still percent-encoded). Raises
    :class:`UnparsedRequest` when no operation of the model matches or the parameters can't be
    read back."""
    from moto.core.parse import PROTOCOL_PARSERS
    from werkzeug.datastructures import Headers, MultiDict

    model = _service_model(service)
    protocol = protocol_of(service)
    split = urlsplit(raw_url)
    raw_path = split.path or "/"
    query = parse_qs(split.query, keep_blank_values=True)
    lowered = {k.lower(): v for k, v in headers.items()}
    url_params: dict[str, str] = {}
    values = MultiDict([(k, v) for k, vs in query.items() for v in vs])
    if protocol == "json":
        target = lowered.get("x-amz-target", "")
        prefix, _, operation = target.rpartition(".")
        if prefix != model.metadata.get("targetPrefix") or operation not in model.operation_names:
            raise UnparsedRequest(f"{service}: X-Amz-Target {target!r} names no operation of the service")
    elif protocol == "query":
        if method == "POST" and lowered.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            values = MultiDict([(k, v) for k, vs in {**query, **form}.items() for v in vs])
        operation = values.get("Action", "")
        if operation not in model.operation_names:
            raise UnparsedRequest(f"{service}: Action {operation!r} names no operation of the service")
    elif protocol in ("rest-json", "rest-xml"):
        operation, url_params = _rest_operation(service, method, raw_path, query, lowered)
    else:
        raise UnparsedRequest(f"{service}: the {protocol} protocol is not parsed by the local runtime")
    operation_model = model.operation_model(operation)
    parser = PROTOCOL_PARSERS[protocol](operation_model)
    # A blob payload (S3 PutObject's Body, Lambda Invoke's Payload) is the body's bytes as sent:
    # moto's parser decodes it as UTF-8, which refused a binary upload that AWS accepts.
    shape = operation_model.input_shape
    blob = shape.serialization.get("payload") if shape is not None else None
    if blob is not None and shape.members[blob].type_name != "blob":
        blob = None
    try:
        params = parser.parse(
            {
                "method": method,
                "values": values,
                "headers": Headers(list(headers.items())),
                "body": b"" if blob else body,
                "url_path": unquote(raw_path),
                "url_params": url_params,
            }
        )
    except Exception as exc:  # any parser failure: refuse the request, naming why
        raise UnparsedRequest(f"{service} {operation}: the parameters can't be read back ({exc})") from exc
    params = dict(params or {})
    if blob and body:
        params[blob] = body
    return ParsedRequest(service, operation, params)


# ---------------------------------------------------------------------------- error shapes
class Refused(Exception):
    """A request refused before (or instead of) authorisation, in the service's error shape."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.body = body


# code -> (S3 (rest-xml), query, json, rest-json) status codes and codes per protocol family
_AUTH_ERRORS: dict[str, dict[str, tuple[int, str]]] = {
    "unknown-key": {
        "rest-xml": (403, "InvalidAccessKeyId"),
        "query": (403, "InvalidClientTokenId"),
        "json": (400, "UnrecognizedClientException"),
        "rest-json": (403, "UnrecognizedClientException"),
    },
    "bad-signature": {
        "rest-xml": (403, "SignatureDoesNotMatch"),
        "query": (403, "SignatureDoesNotMatch"),
        "json": (400, "InvalidSignatureException"),
        "rest-json": (403, "InvalidSignatureException"),
    },
    "unsigned": {
        "rest-xml": (403, "AccessDenied"),
        "query": (403, "MissingAuthenticationToken"),
        "json": (400, "MissingAuthenticationTokenException"),
        "rest-json": (403, "MissingAuthenticationTokenException"),
    },
    "malformed": {
        "rest-xml": (400, "InvalidRequest"),
        "query": (400, "IncompleteSignature"),
        "json": (400, "IncompleteSignatureException"),
        "rest-json": (403, "IncompleteSignatureException"),
    },
}


def error_response(protocol: str, status: int, code: str, message: str, *, service: str = "") -> Refused:
    """An error as a service of ``protocol`` answers it (what botocore parses into ClientError)."""
    request_id = str(uuid.uuid4())
    if protocol == "rest-xml":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id[:16].upper()}</RequestId></Error>"
        )
        return Refused(status, {"Content-Type": "application/xml", "x-amz-request-id": request_id[:16].upper()},
                       body.encode(), message)
    if protocol in ("json", "rest-json"):
        headers = {"Content-Type": "application/json" if protocol == "rest-json" else "application/x-amz-json-1.0",
                   "x-amzn-RequestId": request_id, "x-amzn-ErrorType": code}
        payload = {"__type": code, "message": message} if protocol == "json" else {"message": message}
        return Refused(status, headers, json.dumps(payload).encode(), message)
    namespace = f"https://{service or 'local'}.amazonaws.com/doc/"
    body = (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return Refused(status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body.encode(), message)


def _auth_error(kind: str, protocol: str, message: str, service: str) -> Refused:
    family = protocol if protocol in ("rest-xml", "json", "rest-json") else "query"
    status, code = _AUTH_ERRORS[kind][family]
    if kind == "malformed" and family == "rest-xml":
        message = SIGV2_MESSAGE
    return error_response(family, status, code, message, service=service)


# ---------------------------------------------------------------------------- who is calling
@dataclasses.dataclass(frozen=True)
class _Signed:
    access_key_id: str
    region: str
    signing_name: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str


def _signature_v2(authorization: str, query: Mapping[str, list[str]]) -> bool:
    return authorization.startswith("AWS ") or "AWSAccessKeyId" in query or query.get("SignatureVersion") == ["2"]


def read_signature(authorization: str, query: Mapping[str, list[str]], amz_date: str) -> _Signed | None:
    """The SigV4 credential of the request; None for an unsigned one. Raises ValueError (with
    the reason) for SigV2, presigned URLs and a malformed header."""
    if _signature_v2(authorization, query):
        raise ValueError("Signature Version 2 is not accepted: sign requests with AWS4-HMAC-SHA256")
    if "X-Amz-Signature" in query or "X-Amz-Credential" in query:
        raise ValueError("presigned (query-string) requests are not accepted by the local runtime: sign the headers")
    if not authorization:
        return None
    match = _CREDENTIAL.match(authorization)
    if match is None:
        raise ValueError(f"the Authorization header is not a well-formed {SIGV4_ALGORITHM} signature")
    if not re.fullmatch(r"\d{8}T\d{6}Z", amz_date or "") or amz_date[:8] != match["date"]:
        raise ValueError("X-Amz-Date is missing or does not match the credential scope's date")
    return _Signed(match["key"], match["region"], match["service"], tuple(match["headers"].split(";")),
                   match["signature"], amz_date)


def expected_signature(
    signed: _Signed, secret_key: str, method: str, raw_url: str, headers: Mapping[str, str], body: bytes
) -> str:
    """The SigV4 signature of the request with ``secret_key``, by botocore's signer: the
    headers the client signed (and only those), its timestamp, its credential scope."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    lowered = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in signed.signed_headers if h not in lowered]
    if missing:
        raise ValueError(f"signed headers missing from the request: {', '.join(missing)}")
    # only what the client signed: botocore's signer takes the payload hash from a signed
    # X-Amz-Content-SHA256 (S3) and hashes the body otherwise
    chosen = {h: lowered[h] for h in signed.signed_headers}
    host = lowered.get("host", "localhost")
    request = AWSRequest(method=method, url=f"http://{host}{raw_url}", headers=chosen, data=body)
    request.context["timestamp"] = signed.timestamp
    signer_class = S3SigV4Auth if signed.signing_name == "s3" else SigV4Auth
    signer = signer_class(Credentials(signed.access_key_id, secret_key), signed.signing_name, signed.region)
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))


# ---------------------------------------------------------------------------- the middleware
class HttpAuthorizer:
    """WSGI middleware: authenticate, map and authorise each request, then pass it on.

    ``credentials``: the named principals' keys (:func:`mint_credentials`). ``enforcer``: the
    running LocalAWS's (returns the enforcer to use; None means enforcement is off and every
    request is refused, never let through unchecked).
    """

    def __init__(self, app: Callable[..., Any], *, credentials: Mapping[str, LocalCredentials],
                 enforcer: Callable[[], iam.Enforcer | None], function_urls: FunctionUrls | None = None) -> None:
        self.app = app
        self._by_key = {c.access_key_id: c for c in credentials.values()}
        self._enforcer = enforcer
        self._function_urls = function_urls

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        body = _read_body(environ)
        try:
            principal = self.authorize(environ, body)
        except Refused as refused:
            LOG.warning("local runtime refused %s %s: %s", environ.get("REQUEST_METHOD"), _raw_url(environ), refused)
            start_response(f"{refused.status} {_REASONS.get(refused.status, 'Error')}",
                           [*refused.headers.items(), ("Content-Length", str(len(refused.body)))])
            return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else refused.body]
        host = _headers_lower(environ).get("host", "")
        if self._function_urls is not None and is_function_url_host(host):
            # The signature was checked above; whether this principal may call the URL is the
            # URL's own check (lambda:InvokeFunctionUrl, its auth type), made by the runtime.
            url = f"https://{host}{_raw_url(environ)}"
            status, out = self._function_urls(principal, url, str(environ.get("REQUEST_METHOD", "GET")).upper(),
                                              body, _headers(environ))
            start_response(f"{status} {_REASONS.get(status, 'Answer')}",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
            return [out]
        with iam.acting_as(principal):
            # The moto app answers in this thread (its response is read before the block ends).
            result = self.app(environ, start_response)
            try:
                return list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

    def authorize(self, environ: Mapping[str, Any], body: bytes) -> iam.Principal:
        """The principal of an allowed request; raises :class:`Refused` otherwise."""
        headers = _headers(environ)
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        raw_url = _raw_url(environ)
        query = parse_qs(urlsplit(raw_url).query, keep_blank_values=True)
        lowered = {k.lower(): v for k, v in headers.items()}
        authorization = lowered.get("authorization", "")
        scope_service = _scope_service(authorization)
        services = _services_by_signing_name().get(scope_service or "", ())
        protocol = protocol_of(services[0]) if services else _protocol_without_scope(lowered, query)
        service_label = services[0] if services else (scope_service or "")
        try:
            signed = read_signature(authorization, query, lowered.get("x-amz-date", ""))
        except ValueError as exc:
            raise _auth_error("malformed", protocol, str(exc), service_label) from exc
        if signed is None:
            raise _auth_error("unsigned", protocol, "Request is missing Authentication Token: the local runtime "
                              "accepts requests signed (SigV4) by a local principal's keys only", service_label)
        credentials = self._by_key.get(signed.access_key_id)
        if credentials is None:
            message = ("The AWS Access Key Id you provided does not exist in our records."
                       if protocol == "rest-xml" else "The security token included in the request is invalid.")
            raise _auth_error("unknown-key", protocol, message, service_label)
        try:
            expected = expected_signature(signed, credentials.secret_access_key, method, raw_url, headers, body)
        except ValueError as exc:
            raise _auth_error("malformed", protocol, str(exc), service_label) from exc
        if not hmac.compare_digest(expected, signed.signature):
            raise _auth_error("bad-signature", protocol, "The request signature we calculated does not match the "
                              "signature you provided. Check your AWS Secret Access Key and signing method.",
                              service_label)
        token = lowered.get("x-amz-security-token", "")
        if "x-amz-security-token" not in signed.signed_headers or not hmac.compare_digest(
            token, credentials.session_token
        ):
            raise _auth_error("unknown-key", protocol, "The security token included in the request is invalid.",
                              service_label)
        content_sha = lowered.get("x-amz-content-sha256", "")
        if _HEX_SHA256.match(content_sha) and hashlib.sha256(body).hexdigest() != content_sha:
            raise error_response(protocol if protocol == "rest-xml" else "query", 400, "XAmzContentSHA256Mismatch",
                                 "The provided 'x-amz-content-sha256' header does not match what was computed.",
                                 service=service_label)
        if self._function_urls is not None and is_function_url_host(lowered.get("host", "")):
            if scope_service != "lambda":
                raise _auth_error("malformed", "rest-json", f"a Function URL request is signed for service 'lambda', "
                                  f"not {scope_service!r}", "lambda")
            return credentials.principal
        if not services:
            raise self._refuse_unmapped(credentials.principal, protocol, f"{scope_service}:*", "*",
                                        f"the local runtime does not authorise the {scope_service!r} service")
        parsed, problems = None, []
        for service in services:
            try:
                parsed = parse_request(service, method, raw_url, headers, body)
                break
            except UnparsedRequest as exc:
                problems.append(str(exc))
        if parsed is None:
            raise self._refuse_unmapped(credentials.principal, protocol, f"{scope_service}:*", raw_url,
                                        "; ".join(problems), service=service_label)
        return self._decide(credentials.principal, parsed, signed.region)

    def _decide(self, principal: iam.Principal, parsed: ParsedRequest, region: str) -> iam.Principal:
        from modelgate_emulator import iam_policy

        enforcer = self._enforcer()
        protocol = protocol_of(parsed.service)
        if enforcer is None:
            raise self._refuse_unmapped(principal, protocol, f"{parsed.service}:{parsed.operation}", "*",
                                        "IAM enforcement is off in this local runtime", service=parsed.service)
        if parsed.service == "iam" and not parsed.operation.startswith(("Get", "List", "Simulate", "Generate")):
            enforcer.invalidate()
        try:
            denied = enforcer.authorize(principal, parsed.service, parsed.operation, parsed.params, region)
        except iam_policy.IamPolicyError as exc:
            raise self._refuse_unmapped(principal, protocol, f"{parsed.service}:{parsed.operation}", "*", str(exc),
                                        service=parsed.service) from exc
        if denied is None:
            return principal
        request, decision = denied
        status, headers, body = iam_policy.access_denied_error(parsed.service, request, principal.arn, decision)
        raise Refused(int(status), dict(headers), body, iam_policy.access_denied_message(request, principal.arn, decision))

    @staticmethod
    def _refuse_unmapped(principal: iam.Principal, protocol: str, action: str, resource: str, why: str,
                         *, service: str = "") -> Refused:
        """Fail closed: the service's AccessDenied shape, saying why nothing could be authorised."""
        message = (f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource} "
                   f"because the local runtime cannot authorise this request ({why})")
        family = protocol if protocol in ("rest-xml", "json", "rest-json") else "query"
        code = {"rest-xml": "AccessDenied", "query": "AccessDenied"}.get(family, "AccessDeniedException")
        status = 400 if family == "json" else 403
        return error_response(family, status, code, message, service=service)


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 502: "Bad Gateway"}

# (principal, url, method, body, headers) -> (status, body): a request to one of the stack's
# Function URLs (``<url-id>.lambda-url.<region>.on.aws``, "Invoking Lambda function URLs", Lambda
# Developer Guide), answered by the runtime as that principal (LocalAWS.call_function_url).
FunctionUrls = Callable[[iam.Principal, str, str, bytes, Mapping[str, str]], tuple[int, bytes]]
_FUNCTION_URL_HOST = re.compile(r"^[a-z0-9]+\.lambda-url\.[a-z0-9-]+\.on\.aws(:\d+)?$")


def is_function_url_host(host: str) -> bool:
    return bool(_FUNCTION_URL_HOST.match(host.lower()))


def _headers_lower(environ: Mapping[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in _headers(environ).items()}


def _protocol_without_scope(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> str:
    """The error shape for a request with no SigV4 scope to name its service (unsigned, SigV2):
    JSON if it names an ``X-Amz-Target``, query if an ``Action``, else S3's REST-XML (the REST
    service that ever took SigV2)."""
    if headers.get("x-amz-target"):
        return "json"
    if "Action" in query or headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return "query"
    return "rest-xml"


def _scope_service(authorization: str) -> str | None:
    match = re.search(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request", authorization)
    return match.group(1) if match else None


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").title(): str(value) for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").title()] = str(environ[key])
    return headers


def _raw_url(environ: Mapping[str, Any]) -> str:
    """Path and query as the client sent them: the path from REQUEST_URI / RAW_URI (werkzeug
    keeps them percent-encoded; PATH_INFO is decoded), the query from QUERY_STRING (raw)."""
    from urllib.parse import quote

    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    path = urlsplit(str(raw)).path if raw else quote(str(environ.get("PATH_INFO", "/")), safe="/~")
    query = str(environ.get("QUERY_STRING", ""))
    return (path or "/") + ("?" + query if query else "")


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the body once and put it back for the app behind."""
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH")
    if stream is None:
        return b""
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated") or environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input_terminated"] = True
    return body


# ---------------------------------------------------------------------------- reference requests
@dataclasses.dataclass(frozen=True)
class WireRequest:
    """One request as botocore puts it on the wire (what :func:`parse_request` reads back)."""

    method: str
    raw_url: str  # path and query, percent-encoded as sent
    headers: dict[str, str]
    body: bytes


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__("captured")
        self.request = request


def serialize_call(
    service: str, operation: str, params: Mapping[str, Any], *, access_key_id: str, secret_access_key: str,
    session_token: str | None = None, region: str = "us-east-1", endpoint_url: str = "http://127.0.0.1:4566",
) -> WireRequest:
    """The signed HTTP request botocore builds for one call (serialised and signed by botocore
    itself, never sent): the reference the mapper and the signature check are tested against."""
    import boto3
    from botocore import xform_name

    client = boto3.client(service, region_name=region, endpoint_url=endpoint_url, aws_access_key_id=access_key_id,
                          aws_secret_access_key=secret_access_key, aws_session_token=session_token)

    def capture(request: Any = None, **_: Any) -> None:
        raise _Captured(request)

    client.meta.events.register_first("before-send", capture)
    try:
        getattr(client, xform_name(operation))(**params)
    except _Captured as captured:
        request = captured.request
    else:
        raise AssertionError(f"{service} {operation}: botocore sent nothing")
    split = urlsplit(request.url)
    body = request.body
    if body is None:
        data = b""
    elif isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body.read()
    headers = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()}
    headers.setdefault("Host", split.netloc)
    return WireRequest(request.method, split.path + (f"?{split.query}" if split.query else ""), headers, data)
