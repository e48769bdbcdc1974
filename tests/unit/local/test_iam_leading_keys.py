"""dynamodb:LeadingKeys: every DynamoDB request carries the partition key values it names, so a
``ForAllValues`` condition on it limits a role to its own partitions ("Using IAM policy conditions
for fine-grained access control", Amazon DynamoDB Developer Guide)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from modelgate_emulator import iam, iam_policy
from modelgate_emulator.iam_policy import AuthzRequest, InvalidCallParameters, evaluate, requests_for_call
from moto import mock_aws

ACCOUNT = "123456789012"
REGION = "us-east-1"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
PRINCIPAL = f"arn:aws:sts::{ACCOUNT}:assumed-role/LedgerRole/fn"
# table ledger: partition key pk, index by_service: partition key service; table locks: partition key id
SCHEMA = {"ledger": "pk", "ledger/index/by_service": "service", "locks": "id"}


def _schema(kind: str, name: str) -> str | None:
    assert kind == "dynamodb:partition-key", kind
    return SCHEMA.get(name.split(":table/", 1)[-1])


def keys(operation: str, params: dict[str, Any]) -> list[tuple[str, str, list[str] | None]]:
    found = requests_for_call("dynamodb", operation, params, region=REGION, account_id=ACCOUNT, lookup=_schema)
    return [(r.action, r.resource, r.context.get("dynamodb:LeadingKeys")) for r in found]


S = {"S": "RELEASE#r1"}


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        ("GetItem", {"TableName": "ledger", "Key": {"pk": S, "sk": {"S": "RELEASE"}}}, ["RELEASE#r1"]),
        ("DeleteItem", {"TableName": "ledger", "Key": {"pk": S, "sk": {"S": "x"}}}, ["RELEASE#r1"]),
        ("UpdateItem", {"TableName": "ledger", "Key": {"pk": S, "sk": {"S": "x"}}}, ["RELEASE#r1"]),
        ("PutItem", {"TableName": "ledger", "Item": {"pk": S, "sk": {"S": "x"}, "n": {"N": "1"}}}, ["RELEASE#r1"]),
        ("PutItem", {"TableName": f"{TABLE}/locks", "Item": {"id": {"N": "7"}}}, ["7"]),
        (
            "Query",
            {
                "TableName": "ledger",
                "KeyConditionExpression": "(#n0 = :v0) AND (begins_with(#n1, :v1))",
                "ExpressionAttributeNames": {"#n0": "pk", "#n1": "sk"},
                "ExpressionAttributeValues": {":v0": {"S": "CHAIN#svc"}, ":v1": {"S": "SEQ#"}},
            },
            ["CHAIN#svc"],
        ),
        (
            "Query",
            {
                "TableName": "ledger",
                "KeyConditionExpression": "sk = :s and pk = :p",
                "ExpressionAttributeValues": {":p": {"S": "MONITOR#svc"}, ":s": {"S": "x"}},
            },
            ["MONITOR#svc"],
        ),
        (
            "Query",
            {
                "TableName": "ledger",
                "IndexName": "by_service",
                "KeyConditionExpression": "service = :s",
                "ExpressionAttributeValues": {":s": {"S": "support-bot"}},
            },
            ["support-bot"],
        ),
        (
            "Query",
            {"TableName": "ledger", "KeyConditions": {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [S]}}},
            ["RELEASE#r1"],
        ),
        ("Scan", {"TableName": "ledger", "FilterExpression": "sk = :sk"}, None),
    ],
)
def test_each_item_operation_carries_the_partition_key_values_it_names(operation, params, expected):
    [(action, _, leading)] = keys(operation, params)
    assert action == f"dynamodb:{operation}"
    assert leading == expected


def test_batch_and_transaction_requests_carry_each_tables_and_each_items_keys():
    batch = keys(
        "BatchWriteItem",
        {
            "RequestItems": {
                "ledger": [
                    {"PutRequest": {"Item": {"pk": S, "sk": {"S": "a"}}}},
                    {"DeleteRequest": {"Key": {"pk": {"S": "TOKEN#t"}, "sk": {"S": "b"}}}},
                    {"PutRequest": {"Item": {"pk": S, "sk": {"S": "c"}}}},
                ],
                "locks": [{"DeleteRequest": {"Key": {"id": {"S": "lock-1"}}}}],
            }
        },
    )
    assert batch == [
        ("dynamodb:BatchWriteItem", f"{TABLE}/ledger", ["RELEASE#r1", "TOKEN#t"]),
        ("dynamodb:BatchWriteItem", f"{TABLE}/locks", ["lock-1"]),
    ]
    assert keys("BatchGetItem", {"RequestItems": {"ledger": {"Keys": [{"pk": S, "sk": {"S": "a"}}]}}}) == [
        ("dynamodb:BatchGetItem", f"{TABLE}/ledger", ["RELEASE#r1"])
    ]
    transaction = keys(
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "ledger", "Item": {"pk": {"S": "CHAIN#svc"}, "sk": {"S": "SEQ#1"}}}},
                {"ConditionCheck": {"TableName": "ledger", "Key": {"pk": S, "sk": {"S": "RELEASE"}}}},
                {"Update": {"TableName": "locks", "Key": {"id": {"S": "lock-1"}}}},
            ]
        },
    )
    assert transaction == [
        ("dynamodb:PutItem", f"{TABLE}/ledger", ["CHAIN#svc"]),
        ("dynamodb:ConditionCheckItem", f"{TABLE}/ledger", ["RELEASE#r1"]),
        ("dynamodb:UpdateItem", f"{TABLE}/locks", ["lock-1"]),
    ]


def test_a_request_naming_no_partition_key_value_is_an_error_naming_the_key():
    with pytest.raises(InvalidCallParameters, match="lacks the partition key 'pk'"):
        keys("PutItem", {"TableName": "ledger", "Item": {"sk": {"S": "x"}}})
    with pytest.raises(InvalidCallParameters, match=r"tests no partition key value \('pk' = :value\)"):
        keys(
            "Query",
            {
                "TableName": "ledger",
                "KeyConditionExpression": "begins_with(pk, :p)",
                "ExpressionAttributeValues": {":p": {"S": "R"}},
            },
        )


def test_without_a_key_schema_the_key_is_left_out():
    # No lookup (or a table the lookup does not know: moto then answers ResourceNotFound).
    [found] = requests_for_call(
        "dynamodb", "GetItem", {"TableName": "ledger", "Key": {"pk": S}}, region=REGION, account_id=ACCOUNT
    )
    assert "dynamodb:LeadingKeys" not in found.context
    assert keys("GetItem", {"TableName": "unknown", "Key": {"pk": S}}) == [
        ("dynamodb:GetItem", f"{TABLE}/unknown", None)
    ]


RELEASES_ONLY = {
    "Effect": "Allow",
    "Action": ["dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:Query"],
    "Resource": f"{TABLE}/ledger",
    "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["RELEASE#*"]}},
}


def _allowed(request: AuthzRequest) -> bool:
    policy = {"Version": "2012-10-17", "Statement": [RELEASES_ONLY]}
    return evaluate(request, principal_arn=PRINCIPAL, identity_policies={"LedgerRole": policy}).allowed


def test_a_for_all_values_condition_allows_only_requests_whose_every_key_matches():
    [own] = requests_for_call(
        "dynamodb", "PutItem", {"TableName": "ledger", "Item": {"pk": S}}, region=REGION, account_id=ACCOUNT,
        lookup=_schema,
    )
    [other] = requests_for_call(
        "dynamodb", "PutItem", {"TableName": "ledger", "Item": {"pk": {"S": "CHAIN#svc"}}}, region=REGION,
        account_id=ACCOUNT, lookup=_schema,
    )
    [mixed] = requests_for_call(
        "dynamodb",
        "BatchWriteItem",
        {"RequestItems": {"ledger": [{"PutRequest": {"Item": {"pk": S}}}, {"PutRequest": {"Item": {"pk": {"S": "X"}}}}]}},
        region=REGION,
        account_id=ACCOUNT,
        lookup=_schema,
    )
    assert _allowed(own)
    assert not _allowed(other)
    assert not _allowed(mixed)  # one foreign partition is enough to refuse the batch


# ------------------------------------------------------------------ through boto3 and moto
@pytest.fixture
def enforced() -> Iterator[Any]:
    """A moto account with the ledger table (and its by_service index), a role limited to the
    RELEASE# partitions, and an enforcer; yields the table as that role sees it."""
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName="ledger",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "service", "created_at")
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by_service",
                    "KeySchema": [
                        {"AttributeName": "service", "KeyType": "HASH"},
                        {"AttributeName": "created_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="LedgerRole", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )["Role"]["Arn"]
        statement = {
            **RELEASES_ONLY,
            "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"],
            "Resource": [f"{TABLE}/ledger", f"{TABLE}/ledger/index/by_service"],
        }
        boto3.client("iam", region_name=REGION).put_role_policy(
            RoleName="LedgerRole",
            PolicyName="ledger",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
        )
        with iam.Enforcer(account_id=ACCOUNT, region=REGION) as enforcer:
            table = boto3.resource("dynamodb", region_name=REGION).Table("ledger")
            iam.bind_client(table.meta.client, iam.role_principal(role, "fn"))
            yield table, enforcer


def _denied(error: pytest.ExceptionInfo[ClientError]) -> str:
    assert error.value.response["Error"]["Code"] == "AccessDeniedException"
    return str(error.value.response["Error"]["Message"])


def test_the_enforcer_sets_leading_keys_from_boto3_resource_calls(enforced):
    table, enforcer = enforced
    table.put_item(Item={"pk": "RELEASE#r1", "sk": "RELEASE", "service": "RELEASE#svc", "created_at": "1"})
    assert table.get_item(Key={"pk": "RELEASE#r1", "sk": "RELEASE"})["Item"]["sk"] == "RELEASE"
    assert table.query(KeyConditionExpression=Key("pk").eq("RELEASE#r1"))["Count"] == 1
    with pytest.raises(ClientError) as put:
        table.put_item(Item={"pk": "CHAIN#svc", "sk": "HEAD"})
    assert "dynamodb:PutItem" in _denied(put)
    with pytest.raises(ClientError) as query:
        table.query(KeyConditionExpression=Key("pk").eq("CHAIN#svc") & Key("sk").begins_with("SEQ#"))
    assert "dynamodb:Query" in _denied(query)
    # a query of the index is judged by the index's partition key value
    assert table.query(IndexName="by_service", KeyConditionExpression=Key("service").eq("RELEASE#svc"))["Count"] == 1
    with pytest.raises(ClientError) as index_query:
        table.query(IndexName="by_service", KeyConditionExpression=Key("service").eq("support-bot"))
    assert f"{TABLE}/ledger/index/by_service" in _denied(index_query)
    leading = [r for r in enforcer.records if r.operation == "dynamodb:PutItem"]
    assert [r.allowed for r in leading] == [True, False]


def test_partition_key_names_come_from_the_table_and_index_schema(enforced):
    from modelgate_emulator import dynamodb

    assert dynamodb.partition_key_name(ACCOUNT, REGION, "ledger") == "pk"
    assert dynamodb.partition_key_name(ACCOUNT, REGION, f"{TABLE}/ledger") == "pk"
    assert dynamodb.partition_key_name(ACCOUNT, REGION, "ledger/index/by_service") == "service"
    assert dynamodb.partition_key_name(ACCOUNT, REGION, "ledger/index/nope") is None
    assert dynamodb.partition_key_name(ACCOUNT, REGION, "nope") is None
    assert iam_policy.LEADING_KEYS == "dynamodb:LeadingKeys"
