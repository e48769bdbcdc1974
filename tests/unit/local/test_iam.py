"""IAM on the embedded AWS: the CLI principals' policies, and a missing grant failing as on AWS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from modelgate_emulator import LocalAWS, iam

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"


def _denied(exc: pytest.ExceptionInfo[ClientError], action: str) -> None:
    error = exc.value.response["Error"]
    assert error["Code"] in ("AccessDenied", "AccessDeniedException", "AuthorizationError"), error
    assert action in error["Message"], error["Message"]


@pytest.fixture(scope="module")
def local():
    with LocalAWS(TEMPLATE, stack_name="iam-principals", parameters={"ModelProvider": "local"}) as running:
        yield running


def test_ci_uploads_releases_and_nothing_else(local):
    bucket = local.stack.outputs["ArtifactBucketName"]
    s3 = local.client("s3", principal="ci")
    s3.put_object(Bucket=bucket, Key="releases/svc/abc/prompt.txt", Body=b"hi")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="reports/svc/x/evaluation.html", Body=b"forged")
    _denied(exc, "s3:PutObject")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="datasets/svc/dataset.jsonl", Body=b"{}")
    _denied(exc, "s3:PutObject")


def test_ci_cannot_approve(local):
    with pytest.raises(ClientError) as exc:
        local.client("stepfunctions", principal="ci").send_task_success(taskToken="t" * 10, output="{}")
    _denied(exc, "states:SendTaskSuccess")
    table = local.stack.outputs["LedgerTableName"]
    with pytest.raises(ClientError) as exc:
        local.client("dynamodb", principal="ci").get_item(
            TableName=table, Key={"pk": {"S": "RELEASE#r"}, "sk": {"S": "RELEASE"}}
        )
    _denied(exc, "dynamodb:GetItem")


def _decision_request(release_id: str, decision: str = "approve") -> tuple[bytes, dict[str, str]]:
    return json.dumps({"release_id": release_id, "decision": decision}).encode(), {"Content-Type": "application/json"}


def test_approver_holds_nothing_that_decides_and_cannot_submit_or_roll_back(local):
    # Four eyes can't be skipped: the task token call and the ledger's writes are the decision
    # function's alone (an approver calling them directly is refused as AWS refuses it)
    with pytest.raises(ClientError) as exc:
        local.client("stepfunctions", principal="approver").send_task_success(taskToken="t" * 10, output="{}")
    _denied(exc, "states:SendTaskSuccess")
    with pytest.raises(ClientError) as exc:
        local.client("stepfunctions", principal="approver").send_task_failure(taskToken="t" * 10, error="x")
    _denied(exc, "states:SendTaskFailure")
    table = local.stack.outputs["LedgerTableName"]
    ledger = local.client("dynamodb", principal="approver")
    release = {"pk": {"S": "RELEASE#r"}, "sk": {"S": "RELEASE"}}
    with pytest.raises(ClientError) as exc:
        ledger.update_item(TableName=table, Key=release, UpdateExpression="SET #s = :s",
                           ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "Approved"}})
    _denied(exc, "dynamodb:UpdateItem")
    for key in (release, {"pk": {"S": "TOKEN#r"}, "sk": {"S": "approval"}}):
        with pytest.raises(ClientError) as exc:
            ledger.get_item(TableName=table, Key=key)
        _denied(exc, "dynamodb:GetItem")
    bucket = local.stack.outputs["ArtifactBucketName"]
    with pytest.raises(ClientError) as exc:
        local.client("s3", principal="approver").put_object(Bucket=bucket, Key="releases/svc/abc/x", Body=b"")
    _denied(exc, "s3:PutObject")
    function = local.stack.outputs["SampleServiceFunctionName"]
    with pytest.raises(ClientError) as exc:
        local.client("lambda", principal="approver").update_alias(FunctionName=function, Name="live", FunctionVersion="1")
    _denied(exc, "lambda:UpdateAlias")


def test_approver_decides_only_through_the_iam_decision_url(local):
    url = local.stack.outputs["ApprovalDecisionUrl"]
    body, headers = _decision_request("support-bot-none")
    # The approver's signed request reaches the function, which answers as the caller AWS authenticated
    status, answer = local.call_function_url(url, body, headers, caller=local.principal("approver"))
    assert status == 409 and json.loads(answer)["error"] == "DecisionConflict", answer
    # CI's is refused by the URL itself (its policy has no lambda:InvokeFunctionUrl)
    status, answer = local.call_function_url(url, body, headers, caller=local.principal("ci"))
    assert status == 403 and json.loads(answer) == {"Message": "Forbidden"}
    # Invoking the function directly (to hand it a forged caller) is refused: InvokeFunction is
    # granted only with lambda:InvokedViaFunctionUrl
    forged = {"requestContext": {"http": {"method": "POST"}, "authorizer": {"iam": {"userArn": "arn:aws:iam::1:user/x"}}},
              "headers": headers, "body": body.decode()}
    with pytest.raises(ClientError) as exc:
        local.client("lambda", principal="approver").invoke(
            FunctionName=local.function_name("ApprovalDecisionFunction"), Payload=json.dumps(forged).encode())
    _denied(exc, "lambda:InvokeFunction")
    # and a forged authorizer in a URL request is replaced by the caller AWS authenticated: with a
    # release naming alice as its approver, a request claiming to be alice's session is the approver's
    local.client("dynamodb").put_item(TableName=local.stack.outputs["LedgerTableName"], Item={
        "pk": {"S": "RELEASE#iam-forged"}, "sk": {"S": "RELEASE"}, "status": {"S": "PendingManualApproval"},
        "approvers": {"L": [{"S": "alice@example.com"}]}, "history": {"L": []}})
    claim = {"iam": {"userArn": "arn:aws:sts::123456789012:assumed-role/Approvers/alice@example.com"}}
    event = {"rawPath": "/", "headers": headers, "body": _decision_request("iam-forged")[0].decode(),
             "requestContext": {"http": {"method": "POST"}, "authorizer": claim}}
    with local.acting_as("approver"):
        response = local.invoke_function_url("ApprovalDecisionFunction", event)
    answer = json.loads(response["body"])
    assert response["statusCode"] == 403 and answer["error"] == "NotAnApprover", answer
    assert "modelgate-approver is not among the approvers" in answer["message"]


def test_operator_reads_registrations_and_cannot_submit_or_approve(local):
    prefix = local.stack.outputs["ServicesPrefix"]
    parameter = local.client("ssm", principal="operator").get_parameter(Name=prefix + "support-bot")
    assert parameter["Parameter"]["Name"].endswith("support-bot")
    bucket = local.stack.outputs["ArtifactBucketName"]
    with pytest.raises(ClientError) as exc:
        local.client("s3", principal="operator").put_object(Bucket=bucket, Key="releases/svc/abc/x", Body=b"")
    _denied(exc, "s3:PutObject")
    with pytest.raises(ClientError) as exc:
        local.client("stepfunctions", principal="operator").send_task_failure(taskToken="t" * 10, error="x")
    _denied(exc, "states:SendTaskFailure")


def test_acting_as_covers_threads_and_unknown_principals_are_refused(local):
    bucket = local.stack.outputs["ArtifactBucketName"]
    with local.acting_as("approver"):
        assert iam.current().label.endswith("local-approver")
        with pytest.raises(ClientError) as exc:
            local.client("s3").put_object(Bucket=bucket, Key="releases/svc/abc/y", Body=b"")
        _denied(exc, "s3:PutObject")
    assert iam.current() is iam.LOCAL_ADMIN
    with pytest.raises(ValueError, match="unknown principal 'root'"):
        local.principal("root")


def test_every_decision_is_recorded_with_the_principal(local):
    # Given the decisions recorded so far (xdist may run this module's other tests on another worker)
    seen = len(local.enforcer.records)
    # When CI and the approver each call the task-token API and the decision URL
    for principal in ("ci", "approver"):
        with pytest.raises(ClientError):
            local.client("stepfunctions", principal=principal).send_task_success(taskToken="t" * 10, output="{}")
        local.call_function_url(local.stack.outputs["ApprovalDecisionUrl"], *_decision_request("support-bot-none"),
                                caller=local.principal(principal))
    # Then each decision is recorded with the principal's session ARN, denials as denials
    records = local.enforcer.records[seen:]
    token_calls = [r for r in records if r.action == "states:SendTaskSuccess"]
    assert len(token_calls) == 2 and not any(r.allowed for r in token_calls)
    assert all(r.principal.startswith("arn:aws:sts::") for r in token_calls)
    asked = {r.principal.rsplit("/", 1)[-1]: r.allowed for r in records
             if r.action == "lambda:InvokeFunctionUrl" and r.principal.startswith("arn:aws:sts::")}
    assert {name.removeprefix("modelgate-"): allowed for name, allowed in asked.items()} == {
        "ci": False, "approver": True}, asked


def test_the_approval_url_is_public_through_its_resource_policy(local):
    host = "abc.lambda-url.us-east-1.on.aws"
    event = {
        "version": "2.0", "routeKey": "$default", "rawPath": "/decide", "rawQueryString": "t=forged",
        "headers": {"host": host, "user-agent": "pytest", "x-forwarded-proto": "https"},
        "queryStringParameters": {"t": "forged"},
        "requestContext": {
            "accountId": "anonymous", "apiId": "abc", "domainName": host, "domainPrefix": "abc",
            "http": {"method": "GET", "path": "/decide", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.10",
                     "userAgent": "pytest"},
            "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
        "isBase64Encoded": False,
    }
    response = local.invoke_function_url("ApprovalCallbackFunction", event)
    assert response.get("body") != '{"Message": "Forbidden"}'  # the handler answered, not the URL
    decisions = [r for r in local.enforcer.records if r.action == "lambda:InvokeFunctionUrl"]
    assert decisions and decisions[-1].allowed and decisions[-1].principal == "*"


def test_caller_identity_names_the_acting_principal(local):
    identity = local.client("sts", principal="approver").get_caller_identity()
    assert identity["Arn"].startswith("arn:aws:sts::") and "-local-approver/" in identity["Arn"]
