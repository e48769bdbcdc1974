"""DynamoDB as AWS runs it: one request at a time per table item, atomically.

moto 5.2.1 takes no lock in its DynamoDB backend: a conditional write's check and its
write are separate Python steps, and a Query iterates a table's items while another
thread may be inserting one. Under concurrent Lambda invocations in one process (the
local runtime runs handlers in threads) that shows as a conditional write that is not
atomic against a concurrent writer (a late status overwriting a final one) and as
``RuntimeError: dictionary changed size during iteration`` inside a read.

AWS documents the behaviour this restores: a single-item write with a condition
expression is atomic ("DynamoDB ... condition expression ... the write succeeds only if
the condition evaluates to true", and item-level operations are atomic: Developer Guide,
"Condition expressions" and "Working with items"); reads see a consistent item. Here
every DynamoDB request is served under one lock, which is stronger than AWS (AWS
serialises per item, not per account) but observably the same for correct code: no
test can depend on two requests interleaving inside DynamoDB.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

_LOCK = threading.RLock()


@contextlib.contextmanager
def serialised_requests() -> Iterator[None]:
    """While active, moto serves one DynamoDB request at a time (see the module docstring)."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with _LOCK:
            return original(self)

    with mock.patch.object(DynamoHandler, "call_action", call_action):
        yield


# ---------------------------------------------------------------------------- IAM: key schema
def partition_key_name(account_id: str, region: str, table_ref: str) -> str | None:
    """The partition (HASH) key attribute of a table, or of ``<table>/index/<index>``, as moto
    holds its key schema; ``table_ref`` may be a table name or ARN. None for a table or index
    that does not exist (the call itself then fails with ResourceNotFoundException).

    IAM needs it to set ``dynamodb:LeadingKeys`` (``iam_policy``: "Using IAM policy conditions
    for fine-grained access control", Amazon DynamoDB Developer Guide)."""
    from moto.dynamodb.models import dynamodb_backends

    if table_ref.startswith("arn:"):
        parts = table_ref.split(":", 5)
        if len(parts) < 6 or not parts[5].startswith("table/"):
            return None
        region, account_id, table_ref = parts[3] or region, parts[4] or account_id, parts[5][len("table/") :]
    table_name, _, index_name = table_ref.partition("/index/")
    try:
        table = dynamodb_backends[account_id][region].tables.get(table_name)
    except KeyError:
        return None
    if table is None:
        return None
    if not index_name:
        return str(table.hash_key_attr) or None
    index = next((i for i in table.all_indexes() if i.name == index_name), None)
    if index is None:
        return None
    return next((str(k["AttributeName"]) for k in index.schema if k.get("KeyType") == "HASH"), None)
