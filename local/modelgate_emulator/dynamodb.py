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
