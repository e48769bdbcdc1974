"""The monitoring journal: what the scheduled checks found and what was done about it, kept in
the release ledger's table next to the releases.

Items: ``MONITOR#<service>`` / ``<at>#<kind>#<id>``, one per event, never changed:

- ``reevaluation``: a scheduled (or requested) re-evaluation of live and its verdict;
- ``lifecycle``: a model lifecycle check of the service's pinned Bedrock model;
- ``action``: an action a monitoring policy took (alert, re-evaluate, roll back) and its result;
- ``drift``: a drift check's verdict (written by the drift check; ``modelgate status`` shows it);
- ``baseline``: a promoted release's drift baseline built (or why not), asked for by Promote.

A partition of its own, so IAM grants it by ``dynamodb:LeadingKeys`` (``MONITOR#*``) to the
functions that write it, and a service's timeline is one Query (newest first).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from boto3.dynamodb.conditions import Key

from modelgate.ledger import from_dynamo, now_iso, to_dynamo

Kind = Literal["reevaluation", "lifecycle", "action", "drift", "baseline"]
KINDS: tuple[str, ...] = ("reevaluation", "lifecycle", "action", "drift", "baseline")


def monitor_pk(service: str) -> str:
    return f"MONITOR#{service}"


class Journal:
    """Adapter over the ledger table (a boto3 DynamoDB resource Table). A plain class, like
    modelgate.ledger.Ledger: a dataclass compiles its generated methods at import (issue #7)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __repr__(self) -> str:
        return f"Journal(table={self.table!r})"

    def append(self, service: str, kind: Kind, summary: str, **details: Any) -> dict:
        """One event; ``details`` are JSON-able (floats are stored as numbers)."""
        if kind not in KINDS:
            raise ValueError(f"monitoring journal kind {kind!r} is not one of {', '.join(KINDS)}")
        at = now_iso()
        event_id = uuid.uuid4().hex[:12]
        item = {
            "pk": monitor_pk(service),
            "sk": f"{at}#{kind}#{event_id}",
            "service_name": service,  # not "service": the by_service index is for releases only
            "kind": kind,
            "at": at,
            "event_id": event_id,
            "summary": summary,
            "details": to_dynamo(details),
        }
        self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        return from_dynamo(item)

    def events(self, service: str, *, kind: Kind | None = None, limit: int = 50) -> list[dict]:
        """The service's newest events first (of one ``kind`` if given)."""
        items: list[dict] = []
        query: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(monitor_pk(service)), "ScanIndexForward": False}
        while len(items) < limit:
            page = self.table.query(**query)
            items += [from_dynamo(i) for i in page.get("Items", []) if kind is None or i.get("kind") == kind]
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items[:limit]
