"""The release ledger: one DynamoDB table, every release and every decision.

Items (pk / sk):
  RELEASE#<id> / RELEASE        the release: status, numbers, reason, history of decisions
  TOKEN#<id>   / <kind>         a Step Functions task token (approval, bake); a partition of
                                 its own, so IAM can grant it (dynamodb:LeadingKeys "TOKEN#*")
                                 only to the functions that store, use or clear tokens, and
                                 listing or showing releases never reads one
  RELEASE#<id> / LINK#<nonce>   an approval link used (once): decision, who, source IP, user
                                 agent (written by modelgate.approval.links.claim_link)
  SERVICE#<svc> / LOCK          the service's release lock: a lease with a generation (lease.py)
  ALARM#<name>  / OWNER         which release a canary alarm belongs to
  CHAIN#<svc>   / SEQ#n, HEAD   the service's hash chain of ended releases (chain.py: what is
                                 chained, and why the release item itself is not)

It outlives Step Functions' 90-day history, so it carries the who / when / why itself.

The release item's fields are typed: ``ReleaseFields`` (``modelgate.release_data``) lists every
field a task may set (``record``, ``receive`` and ``set_fields`` refuse any other name, so a typo
fails the task instead of landing in the table), ``modelgate.release_record.ReleaseRecord`` is
the item as read back (``Ledger.release``).
"""

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ValidationError

from modelgate.errors import DecisionConflict, ReleaseClosed, error_code, validation_problems
from modelgate.lease import Lease, ServiceLocks
from modelgate.release_data import ReleaseFields

if TYPE_CHECKING:
    from modelgate.release_record import ReleaseRecord

# Final states: a release in one of these never changes again.
FINAL_STATUSES = frozenset(
    {"Promoted", "RolledBack", "RollbackFailed", "GateFailed", "Rejected", "ApprovalTimedOut", "Invalid", "Failed",
     "Superseded"}
)


# The status an approval decision records.
_DECIDED = {"approve": "Approved", "reject": "Rejected"}


def _token_pk(release_id: str) -> str:
    """Task tokens live in their own partition (see the module docstring): IAM's
    ``dynamodb:LeadingKeys`` condition key scopes access by partition key only ("Using IAM
    policy conditions for fine-grained access control", DynamoDB Developer Guide)."""
    return f"TOKEN#{release_id}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):  # a contract model (evaluation summary, gate verdict, step...)
        return value.model_dump(mode="json", by_alias=True)
    return str(value)


def to_dynamo(value: Any) -> Any:
    """JSON-able python (or contract models) -> what boto3's resource layer stores (floats become Decimals)."""
    return json.loads(json.dumps(value, default=_json_default), parse_float=Decimal)


def from_dynamo(value: Any) -> Any:
    """DynamoDB values → plain JSON-able python (Decimals become int or float)."""
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _conditional_failed(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


# ---------------------------------------------------------------------- the release record
def release_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` checked against ``ReleaseFields`` and made storable; ValueError naming
    each unknown or ill-typed field. A None stays None (``record`` reads it as "not set")."""
    try:
        checked = ReleaseFields.model_validate(fields)
    except ValidationError as exc:
        unknown = sorted(str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden")
        if unknown:
            raise ValueError(
                f"not a field of a release record: {', '.join(unknown)} (known: {', '.join(ReleaseFields.model_fields)})"
            ) from None
        raise ValueError(f"release record fields: {validation_problems(exc, 'fields')}") from None
    values = {name: getattr(checked, name) for name in fields}
    return {name: None if value is None else to_dynamo(value) for name, value in values.items()}


class Ledger(ServiceLocks):
    """Adapter over the ledger table; takes a boto3 DynamoDB *resource* Table.

    A plain class rather than a frozen dataclass: every pipeline handler loads it, and a dataclass
    compiles its generated methods at import (about 4 M instructions, issue #7's cold start)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __repr__(self) -> str:
        return f"Ledger(table={self.table!r})"

    # ------------------------------------------------------------------ releases
    def record(
        self,
        release_id: str,
        status: str,
        detail: str,
        *,
        actor: str = "modelgate",
        reopen: bool = False,
        lease: Lease | None = None,
        **fields: Any,
    ) -> dict:
        """Set the release's status and fields and append one history entry (who/when/why).

        A release in a final status stays there (a task still running when its execution
        was stopped can't overwrite "Superseded"; the same status may be recorded again with
        more detail): anything else raises ReleaseClosed, unless ``reopen`` (a manual
        rollback of a promoted release). The condition is part of the write itself, so it
        holds against concurrent writers. ``lease``: the write also requires that lease to be
        held, in one transaction (TransactWriteItems with a ConditionCheck on the lock item:
        all or nothing, "Amazon DynamoDB Transactions: How it works",
        https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html);
        LeaseLost if it is not. ``fields`` are ``ReleaseFields``: any other name raises
        ValueError before anything is written."""
        fields = release_fields(fields)
        at = now_iso()
        names = {"#status": "status", "#history": "history"}
        values: dict[str, Any] = {
            ":status": status,
            ":at": at,
            ":entry": [{"at": at, "status": status, "detail": detail, "actor": actor}],
            ":empty": [],
        }
        values[":rid"] = release_id
        sets = [
            "release_id = if_not_exists(release_id, :rid)",
            "#status = :status",
            "updated_at = :at",
            "created_at = if_not_exists(created_at, :at)",
            "#history = list_append(if_not_exists(#history, :empty), :entry)",
        ]
        for i, (key, value) in enumerate(sorted(fields.items())):
            if value is None:
                continue
            names[f"#f{i}"] = key
            values[f":f{i}"] = value
            sets.append(f"#f{i} = :f{i}")
        condition: dict[str, Any] = {}
        if not reopen:
            finals = {f":final{i}": name for i, name in enumerate(sorted(FINAL_STATUSES))}
            values.update(finals)
            condition["ConditionExpression"] = (  # the same final status may gain detail
                f"attribute_not_exists(#status) OR #status = :status OR NOT (#status IN ({', '.join(finals)}))"
            )
        update = {
            "Key": {"pk": f"RELEASE#{release_id}", "sk": "RELEASE"},
            "UpdateExpression": "SET " + ", ".join(sets),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            **condition,
        }
        if lease is not None:
            self.record_under_lease(release_id, status, update, lease)
            return self.get(release_id) or {}
        try:
            # ALL_OLD on a failed condition: the refusal carries the record as it was, so naming
            # its final status needs no GetItem (the tasks that record hold UpdateItem only):
            # UpdateItem, ReturnValuesOnConditionCheckFailure, Amazon DynamoDB API Reference,
            # https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html
            response = self.table.update_item(
                **update, ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD"
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                ended = (exc.response.get("Item") or {}).get("status")
                ended = ended.get("S") if isinstance(ended, dict) else ended  # wire format in errors
                raise ReleaseClosed(
                    f"release {release_id} already ended {ended}; not recording {status}"
                ) from exc
            raise
        return from_dynamo(response["Attributes"])

    def receive(self, release_id: str, detail: str, *, status: str = "Received", **fields: Any) -> bool:
        """Create the release's record; False when it already exists (a duplicate event).
        ``status``: an upload refused at intake is created final (Invalid), in one write."""
        fields = release_fields(fields)
        at = now_iso()
        item = {
            "pk": f"RELEASE#{release_id}",
            "sk": "RELEASE",
            "release_id": release_id,
            "status": status,
            "created_at": at,
            "updated_at": at,
            "history": [{"at": at, "status": status, "detail": detail, "actor": "modelgate"}],
            **{k: v for k, v in fields.items() if v is not None},
        }
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def set_fields(self, release_id: str, **fields: Any) -> None:
        """Set fields of the release without a status change or history entry."""
        fields = release_fields(fields)
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":f{i}": v for i, v in enumerate(fields.values())}
        self.table.update_item(
            Key={"pk": f"RELEASE#{release_id}", "sk": "RELEASE"},
            UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def get(self, release_id: str) -> dict | None:
        item = self.table.get_item(Key={"pk": f"RELEASE#{release_id}", "sk": "RELEASE"}).get("Item")
        return from_dynamo(item) if item else None

    def release(self, release_id: str) -> "ReleaseRecord | None":
        """The release's record, typed (``get`` returns the same as a plain dict)."""
        from modelgate.release_record import ReleaseRecord  # the read-back model: see its module

        item = self.get(release_id)
        return ReleaseRecord.model_validate(item) if item is not None else None

    def list_releases(self, service: str | None = None, limit: int = 50) -> list[dict]:
        """Newest first. With a service: the by_service index; without: a scan (small table)."""
        if service:
            response = self.table.query(
                IndexName="by_service",
                KeyConditionExpression="service = :s",
                ExpressionAttributeValues={":s": service},
                ScanIndexForward=False,
                Limit=limit,
            )
            items = response.get("Items", [])
        else:
            items, kwargs = [], {
                "FilterExpression": "sk = :sk",
                "ExpressionAttributeValues": {":sk": "RELEASE"},
            }
            while True:
                page = self.table.scan(**kwargs)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            items.sort(key=lambda i: i.get("created_at", ""), reverse=True)
            items = items[:limit]
        return [from_dynamo(i) for i in items]

    def decide(self, release_id: str, decision: str, approver: str, comment: str) -> dict:
        """Record an approval decision exactly once: only a release waiting for one takes it."""
        status = _DECIDED[decision]
        at = now_iso()
        try:
            response = self.table.update_item(
                Key={"pk": f"RELEASE#{release_id}", "sk": "RELEASE"},
                UpdateExpression=(
                    "SET #status = :status, updated_at = :at, approval = :approval, "
                    "#history = list_append(#history, :entry)"
                ),
                ConditionExpression="#status = :waiting",
                ExpressionAttributeNames={"#status": "status", "#history": "history"},
                ExpressionAttributeValues={
                    ":status": status,
                    ":waiting": "PendingManualApproval",
                    ":at": at,
                    ":approval": {"decision": decision, "approver": approver, "comment": comment, "at": at},
                    ":entry": [{"at": at, "status": status, "detail": comment or decision, "actor": approver}],
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                current = self.get(release_id)
                state = current["status"] if current else "unknown release"
                raise DecisionConflict(
                    f"release {release_id} is not waiting for approval (status: {state})"
                ) from exc
            raise
        return from_dynamo(response["Attributes"])

    def undo_decision(self, release_id: str, decision: str, approver: str, why: str) -> None:
        """Take back a decision that never reached the waiting task (its SendTaskSuccess or
        SendTaskFailure was refused: denied, throttled): the release waits again, and the
        history says what happened. Only this approver's own decision is taken back."""
        status = _DECIDED[decision]
        at = now_iso()
        try:
            self.table.update_item(
                Key={"pk": f"RELEASE#{release_id}", "sk": "RELEASE"},
                UpdateExpression=(
                    "SET #status = :waiting, updated_at = :at, #history = list_append(#history, :entry) "
                    "REMOVE approval"
                ),
                ConditionExpression="#status = :decided AND approval.approver = :approver",
                ExpressionAttributeNames={"#status": "status", "#history": "history"},
                ExpressionAttributeValues={
                    ":waiting": "PendingManualApproval",
                    ":decided": status,
                    ":approver": approver,
                    ":at": at,
                    ":entry": [{
                        "at": at, "status": "PendingManualApproval", "actor": approver,
                        "detail": f"the {decision} did not reach the waiting task ({why}); still waiting",
                    }],
                },
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise

    # ------------------------------------------------------------------ task tokens
    def put_token(self, release_id: str, kind: str, token: str) -> None:
        self.table.put_item(
            Item={"pk": _token_pk(release_id), "sk": kind, "token": token, "at": now_iso()}
        )

    def get_token(self, release_id: str, kind: str) -> str | None:
        item = self.table.get_item(Key={"pk": _token_pk(release_id), "sk": kind}).get("Item")
        return item["token"] if item else None

    def take_token(self, release_id: str, kind: str) -> str | None:
        """Remove and return the token: whoever takes it is the only one to use it."""
        response = self.table.delete_item(
            Key={"pk": _token_pk(release_id), "sk": kind}, ReturnValues="ALL_OLD"
        )
        item = response.get("Attributes")
        return item["token"] if item else None

    # ------------------------------------------------------------------ canary alarms
    def put_alarm_owner(self, alarm_name: str, release_id: str, service: str) -> None:
        self.table.put_item(
            Item={"pk": f"ALARM#{alarm_name}", "sk": "OWNER", "release_id": release_id, "service": service}
        )

    def alarm_owner(self, alarm_name: str) -> dict | None:
        item = self.table.get_item(Key={"pk": f"ALARM#{alarm_name}", "sk": "OWNER"}).get("Item")
        return from_dynamo(item) if item else None

    def delete_alarm_owner(self, alarm_name: str) -> None:
        self.table.delete_item(Key={"pk": f"ALARM#{alarm_name}", "sk": "OWNER"})
