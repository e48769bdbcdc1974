"""The ledger's hash chain: records linked by hash, appends that can't share a predecessor,
and verification that names every edit and deletion."""

from __future__ import annotations

import pytest

from modelgate.chain import (
    GENESIS,
    ChainContention,
    ChainRecord,
    Head,
    LedgerChain,
    canonical,
    release_problems,
    snapshot,
    verify_chain,
)
from modelgate.ledger import Ledger

SERVICE = "support-bot"


@pytest.fixture
def chain(ledger_table):
    return LedgerChain(ledger_table)


def ended(ledger: Ledger, release_id: str, status: str = "Promoted") -> dict:
    ledger.record(release_id, "Validated", "ok", service=SERVICE, commit="a" * 40, model_id="local.m:0")
    return ledger.record(release_id, status, f"ended {status}", reason=f"why {release_id}", candidate_version="2")


def append_three(ledger_table, chain) -> list[ChainRecord]:
    ledger = Ledger(ledger_table)
    return [chain.append(SERVICE, "release", r, snapshot(ended(ledger, r))) for r in ("r1", "r2", "r3")]


def check(chain) -> list[str]:
    records, broken, head = chain.read(SERVICE)
    return verify_chain(SERVICE, records, head, broken).problems


def item(ledger_table, seq: int) -> dict:
    return ledger_table.get_item(Key={"pk": f"CHAIN#{SERVICE}", "sk": f"SEQ#{seq:012d}"})["Item"]


# ---------------------------------------------------------------------- canonical form, hashing
def test_canonical_json_is_key_order_and_whitespace_free_and_refuses_nan():
    expected = '{"a":[1.5,"é"],"b":1}'.encode()
    assert canonical({"b": 1, "a": [1.5, "é"]}) == canonical({"a": [1.5, "é"], "b": 1}) == expected
    with pytest.raises(ValueError):
        canonical({"x": float("nan")})


def test_a_record_hash_covers_every_field_but_itself():
    record = ChainRecord(service=SERVICE, seq=1, kind="release", release_id="r1", at="t", prev_hash=GENESIS,
                         body={"status": "Promoted"}).sealed()
    assert record.computed_hash() == record.record_hash
    for change in ({"seq": 2}, {"kind": "monitoring"}, {"release_id": "r2"}, {"at": "u"}, {"prev_hash": "1" * 64},
                   {"body": {"status": "RolledBack"}}, {"service": "other"}):
        assert record.model_copy(update=change).computed_hash() != record.record_hash, change


# ---------------------------------------------------------------------- appending
def test_records_are_linked_from_genesis_and_the_head_names_the_last(ledger_table, chain):
    records = append_three(ledger_table, chain)
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[0].prev_hash == GENESIS
    assert records[1].prev_hash == records[0].record_hash and records[2].prev_hash == records[1].record_hash
    assert chain.head(SERVICE) == Head(3, records[2].record_hash)
    assert check(chain) == []


def test_an_append_is_idempotent_per_release_and_kind(ledger_table, chain):
    first = append_three(ledger_table, chain)[0]
    again = chain.append(SERVICE, "release", "r1", {"status": "anything"})
    assert again == first and chain.head(SERVICE).seq == 3
    other_kind = chain.append(SERVICE, "manual-rollback", "r1", {"status": "RolledBack"})
    assert other_kind.seq == 4


def test_an_unknown_kind_or_an_unhashable_body_writes_nothing(chain):
    with pytest.raises(ValueError, match="not a kind of chain record: 'status'"):
        chain.append(SERVICE, "status", "r1", {})
    with pytest.raises(ValueError):
        chain.append(SERVICE, "release", "r1", {"x": float("inf")})
    assert chain.head(SERVICE) is None


def test_the_chain_items_stay_out_of_the_by_service_index(ledger_table, chain):
    append_three(ledger_table, chain)
    listed = Ledger(ledger_table).list_releases(service=SERVICE)
    assert sorted(r["release_id"] for r in listed) == ["r1", "r2", "r3"]


class RacingChain(LedgerChain):
    """Another release of the service appends between this append's read of the head and
    its write, ``races`` times (what two releases ending at once look like)."""

    def __init__(self, table, rival: LedgerChain, races: int) -> None:
        super().__init__(table)
        object.__setattr__(self, "rival", rival)
        object.__setattr__(self, "races", races)

    def head(self, service):
        head = super().head(service)
        if self.races > 0:
            object.__setattr__(self, "races", self.races - 1)
            self.rival.append(service, "release", f"rival-{self.races}", {"status": "Promoted"})
        return head


def test_two_appends_racing_for_one_predecessor_both_land_in_order(ledger_table, chain):
    # Given a record in the chain, and an append whose read of the head a rival overtakes
    chain.append(SERVICE, "release", "r0", {"status": "Promoted"})
    racing = RacingChain(ledger_table, chain, races=1)
    # When it appends
    mine = racing.append(SERVICE, "release", "mine", {"status": "RolledBack"})
    # Then its first write was refused (the head moved) and it followed the rival's record
    records, broken, head = chain.read(SERVICE)
    assert [r.release_id for r in records] == ["r0", "rival-0", "mine"]
    assert mine.seq == 3 and mine.prev_hash == records[1].record_hash
    assert verify_chain(SERVICE, records, head, broken).intact


def test_an_append_that_always_loses_says_so(ledger_table, chain):
    racing = RacingChain(ledger_table, chain, races=100)
    with pytest.raises(ChainContention, match="kept moving"):
        racing.append(SERVICE, "release", "mine", {"status": "Promoted"})


# ---------------------------------------------------------------------- tampering
@pytest.mark.parametrize("field,value", [
    ("body", '{"status":"Promoted","reason":"forged"}'),
    ("release_id", "r9"),
    ("kind", "monitoring"),
    ("at", "2020-01-01T00:00:00+00:00"),
])
def test_an_edited_record_breaks_the_chain_at_that_record(ledger_table, chain, field, value):
    append_three(ledger_table, chain)
    ledger_table.update_item(Key={"pk": f"CHAIN#{SERVICE}", "sk": f"SEQ#{2:012d}"},
                             UpdateExpression="SET #f = :v", ExpressionAttributeNames={"#f": field},
                             ExpressionAttributeValues={":v": value})
    assert check(chain) == ["record 2: its content does not hash to its record_hash (edited)"]


def test_an_edited_record_with_its_hash_recomputed_breaks_the_link_to_the_next(ledger_table, chain):
    records = append_three(ledger_table, chain)
    forged = records[1].model_copy(update={"body": {"status": "Promoted", "reason": "forged"}}).sealed()
    ledger_table.update_item(Key={"pk": f"CHAIN#{SERVICE}", "sk": f"SEQ#{2:012d}"},
                             UpdateExpression="SET body = :b, record_hash = :h",
                             ExpressionAttributeValues={":b": canonical(forged.body).decode(),
                                                        ":h": forged.record_hash})
    assert check(chain) == ["record 3: its prev_hash is not the hash of record 2"]


def test_a_deleted_record_leaves_a_gap(ledger_table, chain):
    append_three(ledger_table, chain)
    ledger_table.delete_item(Key={"pk": f"CHAIN#{SERVICE}", "sk": f"SEQ#{2:012d}"})
    assert check(chain) == ["record 3: record(s) 2..2 are missing (deleted)"]


def test_deleting_the_newest_record_leaves_the_head_pointing_past_the_end(ledger_table, chain):
    append_three(ledger_table, chain)
    ledger_table.delete_item(Key={"pk": f"CHAIN#{SERVICE}", "sk": f"SEQ#{3:012d}"})
    assert check(chain) == ["the head names record 3 but the last record is 2 (records at the end were deleted)"]


def test_deleting_the_head_is_seen(ledger_table, chain):
    append_three(ledger_table, chain)
    ledger_table.delete_item(Key={"pk": f"CHAIN#{SERVICE}", "sk": "HEAD"})
    assert check(chain) == ["the chain has records but no head (the head item was deleted)"]


def test_an_item_that_is_not_a_record_is_named(ledger_table, chain):
    append_three(ledger_table, chain)
    ledger_table.update_item(Key={"pk": f"CHAIN#{SERVICE}", "sk": f"SEQ#{1:012d}"}, UpdateExpression="REMOVE body")
    problems = check(chain)
    assert problems[0].startswith(f"chain item CHAIN#{SERVICE} / SEQ#000000000001 is not a chain record")


# ---------------------------------------------------------------------- the release item against its record
def test_a_release_edited_after_it_was_chained_is_named_field_by_field(ledger_table, chain):
    ledger = Ledger(ledger_table)
    record = chain.append(SERVICE, "release", "r1", snapshot(ended(ledger, "r1", "RolledBack")))
    assert release_problems(ledger.get("r1"), record) == []
    # When someone rewrites the outcome in the table
    ledger_table.update_item(Key={"pk": "RELEASE#r1", "sk": "RELEASE"}, UpdateExpression="SET #s = :s",
                             ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": "Promoted"})
    problems = release_problems(ledger.get("r1"), record)
    assert problems == ["field 'status' of release r1 was changed after it was chained (record 1): "
                        '"RolledBack" -> "Promoted"']
    # and a deleted release is named too
    ledger_table.delete_item(Key={"pk": "RELEASE#r1", "sk": "RELEASE"})
    assert release_problems(ledger.get("r1"), record) == [
        "release r1 is chained (record 1) but its ledger record was deleted"
    ]


def test_the_in_flight_history_is_not_chained(ledger_table):
    record = ended(Ledger(ledger_table), "r1")
    chained = snapshot(record)
    assert "history" not in chained and "updated_at" not in chained
    assert chained["status"] == "Promoted" and chained["reason"] == "why r1" and chained["candidate_version"] == "2"
