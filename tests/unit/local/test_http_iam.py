"""IAM over HTTP (`modelgate local up`): requests mapped back to their operation and
parameters, signatures checked, callers authorised as their principal, refusals in AWS's shapes.

The requests are botocore's own: serialised and signed by a real client (``serialize_call``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from modelgate_emulator import LocalAWS, http_iam, iam
from werkzeug.test import EnvironBuilder

ROOT = Path(__file__).resolve().parents[3]
KEYS = {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "session_token": "session-token"}
BUCKET = "modelgate-artifacts"
TABLE = "modelgate-ledger"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:modelgate-release-pipeline"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:modelgate-release-pipeline:support-bot-abc"
TOPIC = "arn:aws:sns:us-east-1:123456789012:modelgate-approvals"
FUNCTION = "modelgate-svc-support-bot"
KEY = {"pk": {"S": "RELEASE#support-bot-abc"}, "sk": {"S": "RELEASE"}}

# Every operation the CLI sends (submit, status, approve/reject, rollback, dataset, logs and the
# Control behind them) and those the README's examples lead to, with parameters as they send them.
CORPUS: list[tuple[str, str, dict[str, Any]]] = [
    ("s3", "PutObject", {"Bucket": BUCKET, "Key": "releases/support-bot/abc/prompts/a b+c.txt", "Body": b"hello",
                         "ContentType": "text/plain", "Metadata": {"commit": "abc", "branch": "main"}}),
    ("s3", "GetObject", {"Bucket": BUCKET, "Key": "reports/support-bot/r/evaluation.json", "VersionId": "v1"}),
    ("s3", "HeadObject", {"Bucket": BUCKET, "Key": "datasets/support-bot/dataset.jsonl"}),
    ("s3", "ListObjectsV2", {"Bucket": BUCKET, "Prefix": "releases/support-bot/"}),
    ("s3", "ListObjectVersions", {"Bucket": BUCKET, "Prefix": "releases/"}),
    ("s3", "DeleteObject", {"Bucket": BUCKET, "Key": "reports/x"}),
    ("s3", "CopyObject", {"Bucket": BUCKET, "Key": "reports/copy", "CopySource": f"{BUCKET}/reports/x"}),
    ("dynamodb", "GetItem", {"TableName": TABLE, "Key": KEY, "ConsistentRead": True}),
    ("dynamodb", "PutItem", {"TableName": TABLE, "Item": {**KEY, "status": {"S": "Failed"}},
                             "ConditionExpression": "attribute_not_exists(pk)"}),
    ("dynamodb", "UpdateItem", {"TableName": TABLE, "Key": KEY, "UpdateExpression": "SET #s = :s",
                                "ExpressionAttributeNames": {"#s": "status"},
                                "ExpressionAttributeValues": {":s": {"S": "Approved"}, ":n": {"N": "3"}},
                                "ConditionExpression": "#s = :s", "ReturnValues": "ALL_NEW"}),
    ("dynamodb", "DeleteItem", {"TableName": TABLE, "Key": {"pk": {"S": "TOKEN#r"}, "sk": {"S": "approval"}},
                                "ReturnValues": "ALL_OLD"}),
    ("dynamodb", "Query", {"TableName": TABLE, "IndexName": "by_service", "KeyConditionExpression": "service = :s",
                           "ExpressionAttributeValues": {":s": {"S": "support-bot"}}, "ScanIndexForward": False,
                           "Limit": 50}),
    ("dynamodb", "Scan", {"TableName": TABLE, "Limit": 200}),
    ("stepfunctions", "SendTaskSuccess", {"taskToken": "token/+=", "output": json.dumps({"decision": "approve"})}),
    ("stepfunctions", "SendTaskFailure", {"taskToken": "token", "error": "ApprovalRejected", "cause": "no"}),
    ("stepfunctions", "StopExecution", {"executionArn": EXECUTION, "error": "Superseded", "cause": "newer"}),
    ("stepfunctions", "DescribeExecution", {"executionArn": EXECUTION}),
    ("stepfunctions", "StartExecution", {"stateMachineArn": MACHINE, "name": "support-bot-abc", "input": "{}"}),
    ("stepfunctions", "GetExecutionHistory", {"executionArn": EXECUTION, "maxResults": 100}),
    ("stepfunctions", "ListExecutions", {"stateMachineArn": MACHINE, "statusFilter": "RUNNING"}),
    ("sts", "GetCallerIdentity", {}),
    ("ssm", "GetParameter", {"Name": "/modelgate/modelgate/services/support-bot"}),
    ("ssm", "PutParameter", {"Name": "/modelgate/modelgate/services/support-bot", "Type": "String",
                             "Overwrite": True, "Value": json.dumps({"service": "support-bot"})}),
    ("sns", "Publish", {"TopicArn": TOPIC, "Subject": "Rolled back", "Message": "support-bot: 3 -> 2"}),
    ("lambda", "Invoke", {"FunctionName": FUNCTION, "Qualifier": "live", "Payload": b'{"inputs": {"q": "hi"}}'}),
    ("lambda", "GetAlias", {"FunctionName": FUNCTION, "Name": "live"}),
    ("lambda", "UpdateAlias", {"FunctionName": FUNCTION, "Name": "live", "FunctionVersion": "2",
                               "RoutingConfig": {"AdditionalVersionWeights": {"3": 0.1}}}),
    ("lambda", "GetFunctionConfiguration", {"FunctionName": FUNCTION, "Qualifier": "3"}),
    ("lambda", "ListVersionsByFunction", {"FunctionName": FUNCTION, "MaxItems": 50}),
    ("cloudwatch", "DeleteAlarms", {"AlarmNames": ["modelgate-canary-support-bot-errors"]}),
    ("cloudwatch", "DescribeAlarms", {"AlarmNamePrefix": "modelgate-canary-", "StateValue": "ALARM"}),
    ("cloudwatch", "GetMetricData", {
        "MetricDataQueries": [{"Id": "errors", "MetricStat": {"Metric": {
            "Namespace": "AWS/Lambda", "MetricName": "Errors", "Dimensions": [
                {"Name": "FunctionName", "Value": FUNCTION}, {"Name": "Resource", "Value": f"{FUNCTION}:live"}]},
            "Period": 60, "Stat": "Sum"}}],
        "StartTime": datetime(2026, 11, 30, 5, 0, tzinfo=UTC), "EndTime": datetime(2026, 11, 30, 5, 15, tzinfo=UTC)}),
    ("logs", "FilterLogEvents", {"logGroupName": f"/aws/lambda/{FUNCTION}", "startTime": 1764478800000}),
    ("logs", "GetLogEvents", {"logGroupName": f"/aws/lambda/{FUNCTION}", "logStreamName": "2026/11/30/[$LATEST]ab"}),
]


def _normal(value: Any) -> Any:
    """A parameter as the wire can carry it (blobs as text, timestamps as instants)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


@pytest.mark.parametrize(("service", "operation", "params"), CORPUS, ids=[f"{s}:{o}" for s, o, _ in CORPUS])
def test_botocore_requests_map_back_to_their_operation_and_parameters(service, operation, params):
    # Given the request botocore builds and signs for the call
    wire = http_iam.serialize_call(service, operation, params, **KEYS)

    # When the mapper reads it
    parsed = http_iam.parse_request(service, wire.method, wire.raw_url, wire.headers, wire.body)

    # Then it names the same operation and every parameter the caller gave, with its value
    assert parsed.operation == operation
    for name, value in params.items():
        assert name in parsed.params, f"{operation}: {name} not read back from {wire.method} {wire.raw_url}"
        assert _normal(parsed.params[name]) == _normal(value), name
    # and the signature the verifier computes with the secret is botocore's own
    lowered = {k.lower(): v for k, v in wire.headers.items()}
    signed = http_iam.read_signature(lowered["authorization"], {}, lowered["x-amz-date"])
    assert signed is not None and signed.access_key_id == KEYS["access_key_id"]
    assert http_iam.expected_signature(signed, KEYS["secret_access_key"], wire.method, wire.raw_url, wire.headers,
                                       wire.body) == signed.signature
    assert http_iam.expected_signature(signed, "not-the-secret", wire.method, wire.raw_url, wire.headers,
                                       wire.body) != signed.signature


def test_a_binary_body_maps_back_as_the_bytes_sent():
    # Given an S3 upload whose body is not UTF-8 (an artefact's binary file, a hostile manifest)
    body = b"\xff\xfe\x00 not text \x80"
    wire = http_iam.serialize_call("s3", "PutObject", {"Bucket": "artefacts", "Key": "releases/x/y.bin",
                                                         "Body": body}, **KEYS)
    # When the mapper reads it, Then it is the same operation with the same bytes (it used to
    # refuse the request: moto's parser decodes a blob payload as UTF-8), as AWS accepts it
    parsed = http_iam.parse_request("s3", wire.method, wire.raw_url, wire.headers, wire.body)
    assert (parsed.operation, parsed.params["Key"], parsed.params["Body"]) == ("PutObject", "releases/x/y.bin", body)


def test_requests_no_operation_matches_are_refused_by_the_mapper():
    with pytest.raises(http_iam.UnparsedRequest, match="NoSuchOperation"):
        http_iam.parse_request("dynamodb", "POST", "/", {"X-Amz-Target": "DynamoDB_20120810.NoSuchOperation"}, b"{}")
    with pytest.raises(http_iam.UnparsedRequest, match="no lambda operation matches PATCH"):
        http_iam.parse_request("lambda", "PATCH", "/2015-03-31/functions/f/invocations", {}, b"")
    with pytest.raises(http_iam.UnparsedRequest, match="Action 'Nope'"):
        http_iam.parse_request("sts", "POST", "/", {"Content-Type": "application/x-www-form-urlencoded"},
                               b"Action=Nope&Version=2011-06-15")


def test_signature_version_2_and_presigned_requests_are_not_read_as_signed():
    with pytest.raises(ValueError, match="Signature Version 2"):
        http_iam.read_signature("AWS AKIDEXAMPLE:c2lnbmF0dXJl", {}, "")
    with pytest.raises(ValueError, match="presigned"):
        http_iam.read_signature("", {"X-Amz-Signature": ["ab"], "X-Amz-Credential": ["x"]}, "")
    assert http_iam.read_signature("", {}, "") is None


# ---------------------------------------------------------------------------- the middleware
class RecordingApp:
    """What stands behind the authoriser: records who each request reached it as."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bytes]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        self.seen.append((iam.current().arn, environ["PATH_INFO"], environ["wsgi.input"].read()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"answered"])


@pytest.fixture(scope="module")
def stack():
    with LocalAWS(ROOT / "template.yaml", stack_name="http-iam", parameters={"ModelProvider": "local"}) as local:
        credentials = http_iam.mint_credentials(local, ("ci", "approver", "operator"))
        yield local, credentials


@pytest.fixture
def served(stack):
    local, credentials = stack
    app = RecordingApp()
    return local, credentials, app, http_iam.HttpAuthorizer(app, credentials=credentials,
                                                            enforcer=lambda: local.enforcer)


def _keys(credentials: http_iam.LocalCredentials) -> dict[str, str]:
    return {"access_key_id": credentials.access_key_id, "secret_access_key": credentials.secret_access_key,
            "session_token": credentials.session_token}


def _environ(wire: http_iam.WireRequest, *, body: bytes | None = None) -> dict[str, Any]:
    path, _, query = wire.raw_url.partition("?")
    return EnvironBuilder(method=wire.method, path=path, query_string=query, headers=wire.headers,
                          data=wire.body if body is None else body).get_environ()


def _send(authorizer: http_iam.HttpAuthorizer, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(authorizer(environ, start_response))
    return answer["status"], answer["headers"], body


def _error(headers: dict[str, str], body: bytes) -> tuple[str, str]:
    """(code, message) of an error response, JSON or XML."""
    if "json" in headers.get("Content-Type", ""):
        data = json.loads(body)
        code = headers.get("x-amzn-ErrorType", data.get("__type", "")).split("#")[-1]
        return code, data.get("message", data.get("Message", ""))
    text = body.decode()
    return re.search(r"<Code>(.*?)</Code>", text).group(1), re.search(r"<Message>(.*?)</Message>", text).group(1)


def test_an_allowed_request_reaches_the_server_as_its_principal(served):
    local, credentials, app, authorizer = served
    bucket = local.stack.outputs["ArtifactBucketName"]
    wire = http_iam.serialize_call("s3", "PutObject", {"Bucket": bucket, "Key": "releases/svc/abc/p.txt",
                                                       "Body": b"prompt"}, **_keys(credentials["ci"]))
    status, _, body = _send(authorizer, _environ(wire))
    assert (status, body) == (200, b"answered")
    assert app.seen == [(credentials["ci"].principal.arn, f"/{bucket}/releases/svc/abc/p.txt", b"prompt")]


def test_a_denied_request_gets_the_services_access_denied_naming_the_action(served):
    local, credentials, app, authorizer = served
    wire = http_iam.serialize_call("stepfunctions", "SendTaskSuccess", {"taskToken": "t" * 10, "output": "{}"},
                                   **_keys(credentials["ci"]))
    status, headers, body = _send(authorizer, _environ(wire))
    code, message = _error(headers, body)
    assert (status, code) == (400, "AccessDeniedException")
    assert message.startswith(f"User: {credentials['ci'].principal.arn} is not authorized to perform: "
                              "states:SendTaskSuccess on resource: *")
    bucket = local.stack.outputs["ArtifactBucketName"]
    wire = http_iam.serialize_call("s3", "PutObject", {"Bucket": bucket, "Key": "reports/forged", "Body": b"x"},
                                   **_keys(credentials["ci"]))
    status, headers, body = _send(authorizer, _environ(wire))
    assert (status, _error(headers, body)[0]) == (403, "AccessDenied")
    assert "s3:PutObject" in _error(headers, body)[1]
    assert app.seen == []


def test_unknown_keys_forged_signatures_and_unsigned_requests_are_refused(served):
    local, credentials, app, authorizer = served
    stranger = {**KEYS, "access_key_id": "AKIAIOSFODNN7EXAMPLE"}
    expected = {"dynamodb": (400, "UnrecognizedClientException"), "s3": (403, "InvalidAccessKeyId"),
                "sts": (403, "InvalidClientTokenId"), "lambda": (403, "UnrecognizedClientException")}
    calls = {"dynamodb": ("ListTables", {}), "s3": ("ListBuckets", {}), "sts": ("GetCallerIdentity", {}),
             "lambda": ("GetAlias", {"FunctionName": FUNCTION, "Name": "live"})}
    for service, (operation, params) in calls.items():
        status, headers, body = _send(authorizer, _environ(http_iam.serialize_call(service, operation, params,
                                                                                   **stranger)))
        assert (status, _error(headers, body)[0]) == expected[service], service

    # a body changed after signing
    approver = _keys(credentials["approver"])
    table = local.stack.outputs["LedgerTableName"]
    wire = http_iam.serialize_call("dynamodb", "GetItem", {"TableName": table, "Key": KEY}, **approver)
    status, headers, body = _send(authorizer, _environ(wire, body=wire.body.replace(b"RELEASE#", b"TOKEN#")))
    assert (status, _error(headers, body)[0]) == (400, "InvalidSignatureException")
    # the approver's access key with another session token
    wire = http_iam.serialize_call("dynamodb", "GetItem", {"TableName": table, "Key": KEY},
                                   **{**approver, "session_token": "stolen"})
    assert _error(*_send(authorizer, _environ(wire))[1:])[0] == "UnrecognizedClientException"

    # unsigned, and signed with Signature Version 2
    unsigned = EnvironBuilder(method="POST", path="/", headers={"X-Amz-Target": "DynamoDB_20120810.ListTables",
                                                                "Content-Type": "application/x-amz-json-1.0"},
                              data=b"{}").get_environ()
    status, headers, body = _send(authorizer, unsigned)
    assert (status, _error(headers, body)[0]) == (400, "MissingAuthenticationTokenException")
    sigv2 = EnvironBuilder(method="GET", path=f"/{local.stack.outputs['ArtifactBucketName']}/x",
                           headers={"Authorization": f"AWS {credentials['ci'].access_key_id}:c2ln"}).get_environ()
    status, headers, body = _send(authorizer, sigv2)
    assert (status, _error(headers, body)[0]) == (400, "InvalidRequest")
    assert "AWS4-HMAC-SHA256" in _error(headers, body)[1]
    assert app.seen == []


def _signed_environ(credentials: http_iam.LocalCredentials, service: str, method: str, path: str,
                    headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """A request botocore's signer signs but no client would build (to reach the mapper)."""
    request = AWSRequest(method=method, url=f"http://127.0.0.1:4566{path}", headers=headers, data=body)
    SigV4Auth(Credentials(credentials.access_key_id, credentials.secret_access_key, credentials.session_token),
              service, "us-east-1").add_auth(request)
    signed = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    return EnvironBuilder(method=method, path=path, headers={**signed, "Host": "127.0.0.1:4566"},
                          data=body).get_environ()


def test_what_the_mapper_cannot_place_or_iam_cannot_map_is_refused_not_passed(served):
    _, credentials, app, authorizer = served
    operator = credentials["operator"]
    environ = _signed_environ(operator, "dynamodb", "POST", "/", {
        "X-Amz-Target": "DynamoDB_20120810.NoSuchOperation", "Content-Type": "application/x-amz-json-1.0"}, b"{}")
    status, headers, body = _send(authorizer, environ)
    code, message = _error(headers, body)
    assert (status, code) == (400, "AccessDeniedException")
    assert "cannot authorise this request" in message and "NoSuchOperation" in message

    # an operation botocore knows but the IAM mapping does not: refused, saying so
    wire = http_iam.serialize_call("dynamodb", "DescribeLimits", {}, **_keys(operator))
    status, headers, body = _send(authorizer, _environ(wire))
    code, message = _error(headers, body)
    assert (status, code) == (400, "AccessDeniedException")
    assert "no IAM mapping for dynamodb DescribeLimits" in message
    # a service the local runtime does not authorise at all
    environ = _signed_environ(operator, "ec2", "POST", "/", {"Content-Type": "application/x-www-form-urlencoded"},
                              b"Action=DescribeInstances&Version=2016-11-15")
    status, headers, body = _send(authorizer, environ)
    assert status == 403 and "does not authorise the 'ec2' service" in _error(headers, body)[1]
    assert app.seen == []
