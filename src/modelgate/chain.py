"""The ledger's hash chain: one tamper-evident trail per service.

What is chained, and what is not. A release item (``RELEASE#<id>`` / ``RELEASE``, ledger.py)
is mutable while the release runs: every task rewrites its status, and that in-flight
status is not part of the chain. A release enters the chain once it has *ended*: the
pipeline's Attest step (after Promote, Rollback or RecordOutcome) appends a **record**
holding a snapshot of the ended release (``CHAINED_FIELDS``); a later action on an ended
release (a manual rollback of a promoted one, a monitoring action) appends a record of
its own kind. A record never changes after it is written. Every path that writes a final
status chains the release (``chain_ended``): the Attest steps, the last resort (its
LastResortAttest state runs Attest), a release superseded in flight (whoever cancels it:
pipeline/candidate.py ``cancel_release``) and an upload refused at intake
(pipeline/intake.py). The last two sign no attestation; their record says why
(``unattested``, a chained field). ``modelgate audit`` lists an ended release without a
record (one ended before this version) as "unchained".

Items (in the ledger table, a partition per service):
  CHAIN#<svc> / SEQ#<000000000001>   record n: seq, kind, release_id, at, prev_hash, body
                                      (canonical JSON text), record_hash
  CHAIN#<svc> / HEAD                  the newest record's seq and hash
  CHAIN#<svc> / REC#<kind>#<release>  which seq holds that release's record of that kind

A record's hash is sha256 over the canonical JSON (``canonical``: keys sorted, no
whitespace, UTF-8, no NaN) of everything it holds but the hash itself, ``prev_hash``
included: so editing a record changes its hash, and the next record's ``prev_hash`` no
longer matches; deleting one leaves a gap in ``seq``; deleting the newest leaves the head
pointing past the end; and rewriting the whole tail is caught by the release's signed
attestation, which names its record's hash (attestation.py).

Concurrency: two releases of one service can end at the same moment. Each append reads
the head, then writes its record, its marker and the new head in ONE transaction whose
conditions are: the head still says what was read (``seq = :read``, or absent for the
first record), and the record and marker items do not exist yet. DynamoDB applies all or
none of a TransactWriteItems ("Amazon DynamoDB Transactions: How it works",
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html),
so two appends can never both claim the same predecessor: the loser's transaction is
cancelled (``TransactionCanceledException``) and it appends again after the winner. The
marker makes an append idempotent: a retried Attest finds its record and adds none.
"""

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from modelgate.errors import ModelgateError, error_code
from modelgate.ledger import from_dynamo, now_iso

GENESIS = "0" * 64
# The kinds of record; a new kind (a monitoring action) is added here with its meaning.
KINDS = frozenset({"release", "manual-rollback", "monitoring"})
# What a release record snapshots of the ended release (ledger.py's release item).
CHAINED_FIELDS = (
    "release_id", "service", "status", "reason", "error", "commit", "branch", "author", "model_id", "artifact",
    "candidate_version", "live_version", "evaluation", "gate", "approval", "verdict", "canary_invocations",
    "promoted_at", "created_at", "unattested",
)
APPEND_ATTEMPTS = 10


def chain_ended(table: Any, release: dict[str, Any]) -> "ChainRecord":
    """Append the ended release's record (kind "release", its ``snapshot``) to its service's
    chain; the existing one when it has it already (a retried or a concurrent closer)."""
    service, release_id = release.get("service"), release.get("release_id")
    if not service or not release_id:
        raise ValueError(f"a release record without a service or release_id can't be chained: {release_id!r}")
    return LedgerChain(table).append(str(service), "release", str(release_id), snapshot(release))


class ChainContention(ModelgateError):
    """The chain's head kept moving: the append lost every attempt to a concurrent one."""


def canonical(value: Any) -> bytes:
    """The canonical JSON bytes every hash here is taken over: keys sorted, no whitespace,
    UTF-8 (not ASCII-escaped), NaN and infinities refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(release: dict[str, Any]) -> dict[str, Any]:
    """What a release record chains of the release item (``CHAINED_FIELDS`` it has)."""
    return {name: release[name] for name in CHAINED_FIELDS if release.get(name) is not None}


class ChainRecord(BaseModel):
    """One record of a service's chain, as stored and as hashed."""

    model_config = ConfigDict(frozen=True, defer_build=True)  # built when a release ends or a chain is read

    service: str
    seq: int = Field(ge=1)
    kind: str
    release_id: str
    at: str
    prev_hash: str
    body: dict[str, Any]
    record_hash: str = ""

    def content(self) -> dict[str, Any]:
        """Everything the hash covers (all but the hash itself)."""
        return self.model_dump(exclude={"record_hash"})

    def computed_hash(self) -> str:
        return sha256_hex(canonical(self.content()))

    def sealed(self) -> "ChainRecord":
        return self.model_copy(update={"record_hash": self.computed_hash()})


def _pk(service: str) -> str:
    return f"CHAIN#{service}"


def _seq_key(seq: int) -> str:
    return f"SEQ#{seq:012d}"


def _marker_key(kind: str, release_id: str) -> str:
    return f"REC#{kind}#{release_id}"


def _item(record: ChainRecord) -> dict[str, Any]:
    # No attribute named "service" or "created_at": those key the by_service index, which
    # lists release items only.
    return {
        "pk": _pk(record.service), "sk": _seq_key(record.seq), "chain_service": record.service, "seq": record.seq,
        "kind": record.kind, "release_id": record.release_id, "at": record.at, "prev_hash": record.prev_hash,
        "body": canonical(record.body).decode(), "record_hash": record.record_hash,
    }


def record_from_item(item: dict[str, Any]) -> ChainRecord:
    """A stored record read back; ValueError naming the item if it is not one."""
    try:
        return ChainRecord(
            service=str(item["chain_service"]), seq=int(item["seq"]), kind=str(item["kind"]),
            release_id=str(item["release_id"]), at=str(item["at"]), prev_hash=str(item["prev_hash"]),
            body=json.loads(str(item["body"])), record_hash=str(item["record_hash"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"chain item {item.get('pk')} / {item.get('sk')} is not a chain record: {exc}") from None


@dataclass(frozen=True)
class Head:
    seq: int
    record_hash: str


@dataclass(frozen=True)
class LedgerChain:
    """Adapter over the chain items of the ledger table (a boto3 DynamoDB resource Table)."""

    table: Any
    now: Callable[[], str] = now_iso

    def head(self, service: str) -> Head | None:
        item = self.table.get_item(Key={"pk": _pk(service), "sk": "HEAD"}, ConsistentRead=True).get("Item")
        return Head(int(item["seq"]), str(item["record_hash"])) if item else None

    def recorded(self, service: str, kind: str, release_id: str) -> ChainRecord | None:
        """The record of that kind for that release, if the chain has one."""
        marker = self.table.get_item(
            Key={"pk": _pk(service), "sk": _marker_key(kind, release_id)}, ConsistentRead=True
        ).get("Item")
        if not marker:
            return None
        item = self.table.get_item(Key={"pk": _pk(service), "sk": _seq_key(int(marker["seq"]))}, ConsistentRead=True)
        return record_from_item(item["Item"]) if "Item" in item else None

    def append(self, service: str, kind: str, release_id: str, body: dict[str, Any]) -> ChainRecord:
        """Append one record after the head (see the module docstring); the existing one when
        this release already has a record of this kind. ChainContention after
        ``APPEND_ATTEMPTS`` lost races."""
        if kind not in KINDS:
            raise ValueError(f"not a kind of chain record: {kind!r} (known: {', '.join(sorted(KINDS))})")
        canonical(body)  # refuses what can't be hashed before anything is written
        for _ in range(APPEND_ATTEMPTS):
            existing = self.recorded(service, kind, release_id)
            if existing is not None:
                return existing
            head = self.head(service)
            record = ChainRecord(
                service=service, seq=head.seq + 1 if head else 1, kind=kind, release_id=release_id, at=self.now(),
                prev_hash=head.record_hash if head else GENESIS, body=body,
            ).sealed()
            if self._write(record, head):
                return record
        raise ChainContention(
            f"the chain of {service} kept moving: {APPEND_ATTEMPTS} appends lost to concurrent ones"
        )

    def _write(self, record: ChainRecord, head: Head | None) -> bool:
        table, pk = self.table.name, _pk(record.service)
        head_put: dict[str, Any] = {
            "TableName": table,
            "Item": {"pk": pk, "sk": "HEAD", "seq": record.seq, "record_hash": record.record_hash,
                     "release_id": record.release_id},
        }
        if head is None:
            head_put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            head_put["ConditionExpression"] = "seq = :read"
            head_put["ExpressionAttributeValues"] = {":read": head.seq}
        new = "attribute_not_exists(pk)"
        items = [
            {"Put": {"TableName": table, "Item": _item(record), "ConditionExpression": new}},
            {"Put": {"TableName": table, "ConditionExpression": new, "Item": {
                "pk": pk, "sk": _marker_key(record.kind, record.release_id), "seq": record.seq}}},
            {"Put": head_put},
        ]
        try:
            self.table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                return False  # someone appended meanwhile (or recorded this very release): read again
            raise
        return True

    def read(self, service: str) -> tuple[list[ChainRecord], list[str], Head | None]:
        """(records in seq order, unreadable items, head): what :func:`verify_chain` takes."""
        records, broken = self._read(service)
        return records, broken, self.head(service)

    def _read(self, service: str) -> tuple[list[ChainRecord], list[str]]:
        records: list[ChainRecord] = []
        broken: list[str] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :seq)",
            "ExpressionAttributeValues": {":pk": _pk(service), ":seq": "SEQ#"},
            "ConsistentRead": True,
        }
        while True:
            page = self.table.query(**kwargs)
            for item in page.get("Items", []):
                try:
                    records.append(record_from_item(from_dynamo(item)))
                except ValueError as exc:
                    broken.append(str(exc))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(records, key=lambda r: r.seq), broken


# ---------------------------------------------------------------------- verification (pure)
@dataclass(frozen=True)
class ChainCheck:
    """What :func:`verify_chain` found: ``problems`` empty means intact."""

    service: str
    records: list[ChainRecord]
    problems: list[str]

    @property
    def intact(self) -> bool:
        return not self.problems

    def broken_at(self) -> dict[int, str]:
        """seq -> the first problem naming that record (for a per-record status)."""
        out: dict[int, str] = {}
        for problem in self.problems:
            if problem.startswith("record "):
                seq = int(problem.split()[1].rstrip(":"))
                out.setdefault(seq, problem)
        return out


def verify_chain(
    service: str, records: Iterable[ChainRecord], head: Head | None, broken: Iterable[str] = ()
) -> ChainCheck:
    """Check a service's chain from its first record to its head: every record's hash is
    its content's, each follows the one before it (``prev_hash``, no seq missing), and the
    head names the last one. Every problem is named, by record."""
    ordered = sorted(records, key=lambda r: r.seq)
    problems = list(broken)
    previous: ChainRecord | None = None
    for record in ordered:
        if record.service != service:
            problems.append(f"record {record.seq}: belongs to service {record.service!r}, not {service!r}")
        if record.computed_hash() != record.record_hash:
            problems.append(f"record {record.seq}: its content does not hash to its record_hash (edited)")
        expected_seq = previous.seq + 1 if previous else 1
        if record.seq != expected_seq:
            problems.append(
                f"record {record.seq}: record(s) {expected_seq}..{record.seq - 1} are missing (deleted)"
            )
        expected_prev = previous.record_hash if previous else GENESIS
        if record.seq == expected_seq and record.prev_hash != expected_prev:
            problems.append(f"record {record.seq}: its prev_hash is not the hash of record {record.seq - 1}")
        previous = record
    if head is None and ordered:
        problems.append("the chain has records but no head (the head item was deleted)")
    if head is not None:
        last = ordered[-1] if ordered else None
        if last is None or head.seq != last.seq:
            problems.append(
                f"the head names record {head.seq} but the last record is {last.seq if last else 'none'} "
                "(records at the end were deleted)"
            )
        elif head.record_hash != last.record_hash:
            problems.append(f"the head's hash is not record {last.seq}'s (the record or the head was edited)")
    return ChainCheck(service, ordered, problems)


def release_problems(release: dict[str, Any] | None, chained: ChainRecord) -> list[str]:
    """How the release item differs from what its newest chain record holds (an edit made
    after it was chained), field by field."""
    if release is None:
        return [f"release {chained.release_id} is chained (record {chained.seq}) but its ledger record was deleted"]
    now = snapshot(release)
    problems = []
    for name in sorted(set(now) | set(chained.body)):
        if canonical(now.get(name)) != canonical(chained.body.get(name)):
            problems.append(
                f"field {name!r} of release {chained.release_id} was changed after it was chained "
                f"(record {chained.seq}): {_short(chained.body.get(name))} -> {_short(now.get(name))}"
            )
    return problems


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
