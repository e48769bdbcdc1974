"""moto's DynamoDB serves one request at a time under the local runtime (see dynamodb.py)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from modelgate_emulator.dynamodb import serialised_requests
from moto import mock_aws


@pytest.fixture
def table(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        ddb = boto3.resource("dynamodb", region_name="us-east-1")
        yield ddb.create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        )


@contextlib.contextmanager
def _slow_backend(monkeypatch) -> Iterator[dict[str, int]]:
    """moto's backend, slowed inside every GetItem/PutItem, counting requests in it at once."""
    from moto.dynamodb.models import DynamoDBBackend

    seen = {"now": 0, "max": 0}
    guard = threading.Lock()

    def slowed(original):
        def method(self, *args, **kwargs):
            with guard:
                seen["now"] += 1
                seen["max"] = max(seen["max"], seen["now"])
            try:
                time.sleep(0.02)  # a check-then-write window wide enough for any interleaving
                return original(self, *args, **kwargs)
            finally:
                with guard:
                    seen["now"] -= 1
        return method

    monkeypatch.setattr(DynamoDBBackend, "get_item", slowed(DynamoDBBackend.get_item))
    monkeypatch.setattr(DynamoDBBackend, "put_item", slowed(DynamoDBBackend.put_item))
    yield seen


def _concurrently(fn, n: int = 8) -> None:
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _race(table) -> list[int]:
    """Concurrent conditional creates of one item; the ones that succeeded."""
    wins: list[int] = []

    def create(n: int) -> None:
        try:
            table.put_item(Item={"pk": "LOCK", "sk": "LOCK", "holder": n}, ConditionExpression="attribute_not_exists(pk)")
            wins.append(n)
        except table.meta.client.exceptions.ConditionalCheckFailedException:
            pass
        table.get_item(Key={"pk": "LOCK", "sk": "LOCK"})

    _concurrently(create)
    return wins


def test_requests_are_served_one_at_a_time(table, monkeypatch):
    # Given moto's backend slowed down inside each request
    with _slow_backend(monkeypatch) as seen, serialised_requests():
        # When eight threads race conditional creates and reads of one item
        wins = _race(table)
    # Then no two requests were inside DynamoDB at once, and exactly one create won
    assert seen["max"] == 1
    assert len(wins) == 1
    assert table.get_item(Key={"pk": "LOCK", "sk": "LOCK"})["Item"]["holder"] == wins[0]


def test_without_the_shim_requests_interleave(table, monkeypatch):
    # The shim is needed: plain moto lets requests run inside the backend at the same time.
    with _slow_backend(monkeypatch) as seen:
        _race(table)
    assert seen["max"] > 1
