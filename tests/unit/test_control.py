"""`Control`: what the CLI, the demo and the tests drive a stack through."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from modelgate_harness.control import Control


class Resources:
    """A stand-in for ``boto3.resource``: counts what is built."""

    def __init__(self) -> None:
        self.built: list[tuple[str, str]] = []

    def __call__(self, service: str) -> Any:
        resources = self

        class Resource:
            def Table(self, name: str) -> object:  # noqa: N802 - boto3's name
                resources.built.append((service, name))
                return object()

        return Resource()


def test_the_ledger_table_is_built_once_per_thread_and_never_shared_between_threads() -> None:
    # Given a Control of a stack
    resources = Resources()
    control = Control("stack", {"LedgerTableName": "ledger"}, lambda name: None, resources)
    # When the ledger is read again and again on one thread (a watcher's polls)
    tables = {id(control.ledger().table) for _ in range(5)}
    # Then one Table resource serves them all
    assert len(tables) == 1 and resources.built == [("dynamodb", "ledger")]
    # And another thread gets its own (boto3's resources are not thread-safe)
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(control.ledger().table))
    thread.start()
    thread.join()
    assert id(other[0]) not in tables and len(resources.built) == 2
    # And a copy for another principal (`--as`) builds its own, and compares by its fields only
    copy = dataclasses.replace(control, principal="approver")
    assert copy.ledger().table is not control.ledger().table and len(resources.built) == 3
    assert dataclasses.replace(copy, principal=None) == control
