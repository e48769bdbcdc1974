"""IAM on the embedded AWS: the CLI principals' policies, and a missing grant failing as on AWS."""

from __future__ import annotations

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


def test_approver_answers_tasks_but_cannot_submit_or_roll_back(local):
    # Authorised: what fails is the (made-up) token, not IAM.
    with pytest.raises(ClientError) as exc:
        local.client("stepfunctions", principal="approver").send_task_success(taskToken="t" * 10, output="{}")
    assert "AccessDenied" not in exc.value.response["Error"]["Code"]
    bucket = local.stack.outputs["ArtifactBucketName"]
    with pytest.raises(ClientError) as exc:
        local.client("s3", principal="approver").put_object(Bucket=bucket, Key="releases/svc/abc/x", Body=b"")
    _denied(exc, "s3:PutObject")
    function = local.stack.outputs["SampleServiceFunctionName"]
    with pytest.raises(ClientError) as exc:
        local.client("lambda", principal="approver").update_alias(FunctionName=function, Name="live", FunctionVersion="1")
    _denied(exc, "lambda:UpdateAlias")


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
    records = [r for r in local.enforcer.records if r.action == "states:SendTaskSuccess"]
    assert {r.allowed for r in records} == {True, False}
    assert all(r.principal.startswith("arn:aws:sts::") for r in records)


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
