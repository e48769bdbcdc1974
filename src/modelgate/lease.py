"""The service's release lock: a lease with a fencing token (the ledger's SERVICE#<svc> / LOCK item).

The lock is a lease: its item names the holder and a generation (the fencing token),
which goes up each time the lease changes hands. A release keeps (holder, generation)
in its context; every alias or alarm change it makes is fenced by ``holds_lease``, a
conditional write that fails once anyone else took the lease (superseded, cancelled by
hand, or taken over after it expired), so a task still running after its execution was
stopped changes nothing. Single-item conditional writes are atomic in DynamoDB ("Condition
expressions", Amazon DynamoDB Developer Guide:
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from modelgate.errors import LeaseLost, ReleaseClosed, ServiceLocked, error_code


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _conditional_failed(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


class Lease(NamedTuple):
    """A service's lease as one holder took it: the holder and the generation (fencing token)."""

    service: str
    owner: str
    generation: int | None  # None: a context from before generations; the holder alone is checked

    def key(self) -> dict[str, str]:
        return {"pk": f"SERVICE#{self.service}", "sk": "LOCK"}

    def condition(self) -> dict[str, Any]:
        """The condition that this lease is still held (on the lock item)."""
        values: dict[str, Any] = {":lease_owner": self.owner}
        expression = "release_id = :lease_owner"
        if self.generation is not None:
            values[":lease_generation"] = self.generation
            expression += " AND generation = :lease_generation"
        return {"ConditionExpression": expression, "ExpressionAttributeValues": values}


class ServiceLocks:
    """The lock item's operations (a mixin of ``Ledger``: ``self.table`` is the ledger table)."""

    table: Any

    def acquire_lock(self, service: str, release_id: str, lease_seconds: int) -> int:
        """Take the service's lease for ``release_id``; its generation (the fencing token).

        Free, or expired (and held by another): taken, generation + 1. Already ours (a
        retried task): renewed, same generation. Held by another: ServiceLocked. Cleanups
        the item still owes (``cleanup``) stay owed: the new holder finishes them."""
        now = int(time.time())
        key = {"pk": f"SERVICE#{service}", "sk": "LOCK"}
        try:
            response = self.table.update_item(
                Key=key,
                UpdateExpression=(
                    "SET release_id = :me, acquired_at = :at, lease_expires = :expires, "
                    "generation = if_not_exists(generation, :zero) + :one"
                ),
                ConditionExpression=(
                    "attribute_not_exists(release_id) OR (lease_expires < :now AND release_id <> :me)"
                ),
                ExpressionAttributeValues={
                    ":me": release_id, ":at": _now_iso(), ":expires": now + lease_seconds, ":now": now,
                    ":zero": 0, ":one": 1,
                },
                ReturnValues="ALL_NEW",
            )
            return int(response["Attributes"]["generation"])
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        try:
            response = self.table.update_item(
                Key=key,
                UpdateExpression="SET lease_expires = :expires",
                ConditionExpression="release_id = :me",
                ExpressionAttributeValues={":me": release_id, ":expires": now + lease_seconds},
                ReturnValues="ALL_NEW",
            )
            return int(response["Attributes"].get("generation", 0))
        except ClientError as exc:
            if _conditional_failed(exc):
                holder = self.lock_holder(service)
                raise ServiceLocked(
                    f"service {service} is locked by release {holder or 'unknown'}; "
                    "one release per service at a time"
                ) from exc
            raise

    def take_over_lock(self, service: str, holder: str, owner: str, lease_seconds: int) -> int:
        """Take the lease from ``holder`` (whose release is being cancelled) for ``owner``, in
        one conditional write; its new generation. ``holder`` joins the set of cleanups the
        item owes (``cleanup``, with any a previous owner did not finish) until
        ``cleanup_done``: whoever holds the lease next finishes them if this owner dies or
        loses the lease first. ServiceLocked if ``holder`` no longer holds it."""
        now = int(time.time())
        try:
            response = self.table.update_item(
                Key={"pk": f"SERVICE#{service}", "sk": "LOCK"},
                UpdateExpression=(
                    "SET release_id = :me, acquired_at = :at, lease_expires = :expires, "
                    "generation = if_not_exists(generation, :zero) + :one ADD cleanup :owed"
                ),
                ConditionExpression="release_id = :holder",
                ExpressionAttributeValues={
                    ":me": owner, ":holder": holder, ":owed": {holder}, ":at": _now_iso(),
                    ":expires": now + lease_seconds, ":zero": 0, ":one": 1,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                raise ServiceLocked(
                    f"service {service}'s lease moved from {holder} to {self.lock_holder(service) or 'nobody'} "
                    "while it was being taken over"
                ) from exc
            raise
        return int(response["Attributes"]["generation"])

    def lease(self, service: str) -> dict | None:
        """The service's lock item (holder ``release_id``, ``generation``, the set of releases
        whose cancel is still owed, ``cleanup``), if any."""
        item = self.table.get_item(Key={"pk": f"SERVICE#{service}", "sk": "LOCK"}, ConsistentRead=True).get("Item")
        if not item:
            return None
        return {k: int(v) if isinstance(v, Decimal) else v for k, v in item.items()}

    def owed_cleanups(self, service: str) -> list[str]:
        """The releases whose cancel the lease still owes, oldest id first."""
        return sorted((self.lease(service) or {}).get("cleanup") or [])

    def cleanup_done(self, service: str, owner: str, cancelled: str) -> None:
        """The lease's owner finished cancelling ``cancelled``: that is no longer owed."""
        try:
            self.table.update_item(
                Key={"pk": f"SERVICE#{service}", "sk": "LOCK"},
                UpdateExpression="DELETE cleanup :done",
                ConditionExpression="release_id = :me",
                ExpressionAttributeValues={":me": owner, ":done": {cancelled}},
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    def holds_lease(self, lease: Lease) -> bool:
        """Whether ``lease`` is still held: a conditional write on the lock item (it stamps
        ``fenced_at``), atomic against a concurrent take-over."""
        check = lease.condition()
        try:
            self.table.update_item(
                Key=lease.key(),
                UpdateExpression="SET fenced_at = :at",
                ConditionExpression=check["ConditionExpression"],
                ExpressionAttributeValues={**check["ExpressionAttributeValues"], ":at": _now_iso()},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def lock_holder(self, service: str) -> str | None:
        item = self.table.get_item(Key={"pk": f"SERVICE#{service}", "sk": "LOCK"}, ConsistentRead=True).get("Item")
        return item.get("release_id") if item else None

    def release_lock(self, service: str, release_id: str) -> bool:
        """Release the lock if this release holds it; True if it did. While cleanups are owed
        the item stays (without a holder), so the next holder still finds them."""
        key = {"pk": f"SERVICE#{service}", "sk": "LOCK"}
        try:
            self.table.delete_item(
                Key=key,
                ConditionExpression="release_id = :me AND attribute_not_exists(cleanup)",
                ExpressionAttributeValues={":me": release_id},
            )
            return True
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
        try:
            self.table.update_item(
                Key=key,
                UpdateExpression="REMOVE release_id, lease_expires",
                ConditionExpression="release_id = :me",
                ExpressionAttributeValues={":me": release_id},
            )
            return True
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise

    def record_under_lease(self, release_id: str, status: str, update: dict[str, Any], lease: Lease) -> None:
        """One release-record update (``Ledger.record``'s) in one transaction with the
        condition that ``lease`` is held: LeaseLost if it is not, ReleaseClosed if the update's
        own condition fails. (The resource's client serialises DynamoDB types itself: plain
        values here.)"""
        check = lease.condition()
        table = self.table.name
        items = [
            {
                "ConditionCheck": {
                    "TableName": table,
                    "Key": lease.key(),
                    "ConditionExpression": check["ConditionExpression"],
                    "ExpressionAttributeValues": check["ExpressionAttributeValues"],
                }
            },
            {
                "Update": {
                    "TableName": table,
                    "Key": update["Key"],
                    "UpdateExpression": update["UpdateExpression"],
                    "ExpressionAttributeNames": update["ExpressionAttributeNames"],
                    "ExpressionAttributeValues": update["ExpressionAttributeValues"],
                    **{k: v for k, v in update.items() if k == "ConditionExpression"},
                }
            },
        ]
        try:
            self.table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise LeaseLost(
                    f"release {release_id} does not hold the lease of {lease.service} "
                    f"(held by {self.lock_holder(lease.service) or 'nobody'}): not recording {status}"
                ) from exc
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                current = self.table.get_item(Key=update["Key"]).get("Item") or {}
                raise ReleaseClosed(
                    f"release {release_id} already ended {current.get('status')}; not recording {status}"
                ) from exc
            raise
