"""moto's responses are the same bytes with the cached alias search (serializer.py) as without."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import boto3
import pytest
from modelgate_emulator import serializer
from moto import mock_aws

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": False}, "lambda": {"use_docker": False}}):
        yield


def _bodies(client, calls) -> list[bytes]:
    """The raw HTTP body of each ``(operation, kwargs)`` call's response, request ids blanked."""
    seen: list[bytes] = []
    client.meta.events.register("after-call.*", lambda http_response, **_: seen.append(http_response.content))
    for operation, kwargs in calls:
        getattr(client, operation)(**kwargs)
    return [re.sub(rb"<RequestId>[^<]*</RequestId>", b"<RequestId/>", body) for body in seen]


def _same_with_and_without(client, calls) -> list[bytes]:
    without = _bodies(client, calls)
    with serializer.cached_alias_search():
        cached = _bodies(client, calls)
        again = _bodies(client, calls)  # served from the cache this time
    assert cached == without
    assert again == without
    return without


def test_a_nested_dynamodb_item_reads_back_byte_for_byte(aws):
    # Given an item with every kind of attribute value, nested
    ddb = boto3.resource("dynamodb", region_name=REGION)
    table = ddb.create_table(
        TableName="t", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )
    item = {
        "pk": "r1", "n": Decimal("1.5"), "b": b"\x00\xffbytes", "flag": True, "nothing": None,
        "ss": {"a", "b"}, "ns": {Decimal(1), Decimal(2)}, "bs": {b"x", b"y"},
        "history": [{"status": "Received", "at": Decimal(3), "tags": ["x", {"deep": [b"z", False]}]}] * 5,
        "S": "a member name as an attribute name", "L": {"M": {"N": "not a number"}},
    }
    table.put_item(Item=item)
    client = boto3.client("dynamodb", region_name=REGION)  # wire format, no boto3 type conversion
    # When it is read, queried and scanned with and without the cached search
    bodies = _same_with_and_without(client, [
        ("get_item", {"TableName": "t", "Key": {"pk": {"S": "r1"}}}),
        ("query", {"TableName": "t", "KeyConditionExpression": "pk = :p",
                   "ExpressionAttributeValues": {":p": {"S": "r1"}}}),
        ("scan", {"TableName": "t"}),
        ("describe_table", {"TableName": "t"}),
    ])
    # Then the responses are moto's, and they hold the item
    assert table.get_item(Key={"pk": "r1"})["Item"]["history"][4]["tags"][1]["deep"][0].value == b"z"
    assert json.loads(bodies[0])["Item"]["L"] == {"M": {"M": {"M": {"N": {"S": "not a number"}}}}}


def test_object_responses_of_other_protocols_are_unchanged(aws):
    # Given resources moto serialises from its model objects (JSON, rest-JSON and query protocols)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(
        name="m", roleArn="arn:aws:iam::123456789012:role/r",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName="a", MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        Dimensions=[{"Name": "FunctionName", "Value": "f"}],
    )
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="bucket-b")
    s3.put_object(Bucket="bucket-b", Key="k", Body=b"x")
    # Then each response is the same bytes with and without the cached search
    _same_with_and_without(sfn, [("describe_state_machine", {"stateMachineArn": machine}),
                                 ("list_state_machines", {})])
    _same_with_and_without(cloudwatch, [("describe_alarms", {})])
    _same_with_and_without(s3, [("list_objects_v2", {"Bucket": "bucket-b"}), ("get_bucket_location", {"Bucket": "bucket-b"})])


def test_an_object_with_its_own_aliases_is_searched_every_time():
    # Given two objects of one class whose aliases differ per instance (an instance-level Meta)
    from moto.core.serialize import JSONSerializer, XFormedAttributePicker
    from moto.core.utils import get_service_model

    class Meta:
        def __init__(self, alias: str) -> None:
            self.serialization_aliases = {"name": alias}

    class Described:
        def __init__(self, alias: str) -> None:
            self.Meta = Meta(alias)
            self.first, self.second = "from first", "from second"

    operation = get_service_model("stepfunctions").operation_model("DescribeStateMachine")
    name_shape = operation.output_shape.members["name"]

    def pick(obj: Described) -> str:
        serializer_ = JSONSerializer(operation_model=operation, value_picker=XFormedAttributePicker())
        return serializer_.get_value(obj, "name", name_shape)

    # When each is searched with the cache on
    with serializer.cached_alias_search():
        picked = [pick(Described("first")), pick(Described("second"))]
    # Then each found its own alias's attribute, not the first one's cached keys
    assert picked == ["from first", "from second"]


def test_one_member_name_under_two_shapes_is_searched_per_shape():
    # Given a member name that moto looks up by its shape's name when the shape is a list
    from moto.core.serialize import JSONSerializer, XFormedAttributePicker
    from moto.core.utils import get_service_model

    model = get_service_model("stepfunctions")
    string_shape = model.operation_model("DescribeStateMachine").output_shape.members["name"]
    list_shape = model.operation_model("ListStateMachines").output_shape.members["stateMachines"]
    obj = {"name": "by member name", "StateMachineList": "by shape name"}

    def pick(shape) -> str:
        serializer_ = JSONSerializer(operation_model=model.operation_model("DescribeStateMachine"),
                                     value_picker=XFormedAttributePicker())
        return serializer_.get_value(obj, "name", shape)

    expected = [pick(string_shape), pick(list_shape)]
    # When both are searched with the cache on, each twice
    with serializer.cached_alias_search():
        picked = [pick(string_shape), pick(list_shape), pick(string_shape), pick(list_shape)]
    # Then each shape found what moto finds for it
    assert expected == ["by member name", "by shape name"]
    assert picked == expected * 2
