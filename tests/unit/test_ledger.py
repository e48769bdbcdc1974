"""The ledger: history, single-use decisions, tokens kept apart, the service lock."""

from __future__ import annotations

import pytest

from modelgate.errors import DecisionConflict, ServiceLocked
from modelgate.ledger import Ledger


@pytest.fixture
def ledger(ledger_table):
    return Ledger(ledger_table)


def test_record_appends_history_and_keeps_fields(ledger):
    ledger.record("r1", "Received", "uploaded", service="svc", commit="abc1234")
    ledger.record("r1", "Evaluated", "36 cases", evaluation={"accuracy": 0.861})
    record = ledger.get("r1")
    assert record["status"] == "Evaluated"
    assert [h["status"] for h in record["history"]] == ["Received", "Evaluated"]
    assert record["evaluation"] == {"accuracy": 0.861}  # floats survive the Decimal round trip
    assert record["service"] == "svc" and record["created_at"] <= record["updated_at"]


def test_list_by_service_is_newest_first(ledger):
    ledger.record("old", "Received", "x", service="svc")
    ledger.record("new", "Received", "x", service="svc")
    ledger.record("other", "Received", "x", service="else")
    assert [r["pk"] for r in ledger.list_releases(service="svc")] == ["RELEASE#new", "RELEASE#old"]
    assert len(ledger.list_releases()) == 3


def test_a_decision_is_taken_once(ledger):
    ledger.record("r1", "PendingManualApproval", "waiting")
    record = ledger.decide("r1", "approve", "alice", "ok")
    assert record["status"] == "Approved" and record["approval"]["approver"] == "alice"
    with pytest.raises(DecisionConflict, match="status: Approved"):
        ledger.decide("r1", "reject", "bob", "late")


def test_a_decision_on_a_release_not_waiting_is_refused(ledger):
    ledger.record("r1", "Evaluated", "not yet")
    with pytest.raises(DecisionConflict):
        ledger.decide("r1", "approve", "alice", "")


def test_tokens_are_not_part_of_the_release_record_and_are_taken_once(ledger):
    ledger.record("r1", "PendingManualApproval", "waiting")
    ledger.put_token("r1", "approval", "secret-token")
    assert "secret-token" not in str(ledger.get("r1"))
    assert "secret-token" not in str(ledger.list_releases())
    assert ledger.take_token("r1", "approval") == "secret-token"
    assert ledger.take_token("r1", "approval") is None


def test_lock_admits_one_release_per_service(ledger):
    ledger.acquire_lock("svc", "r1", 3600)
    ledger.acquire_lock("svc", "r1", 3600)  # re-entrant for the holder (a retried task)
    with pytest.raises(ServiceLocked, match="locked by release r1"):
        ledger.acquire_lock("svc", "r2", 3600)
    ledger.acquire_lock("other", "r2", 3600)
    assert not ledger.release_lock("svc", "r2")  # only the holder releases
    assert ledger.release_lock("svc", "r1")
    ledger.acquire_lock("svc", "r2", 3600)


def test_an_expired_lease_can_be_taken_over(ledger):
    ledger.acquire_lock("svc", "r1", -10)
    ledger.acquire_lock("svc", "r2", 3600)
    assert ledger.lock_holder("svc") == "r2"


def test_a_final_status_is_never_changed_but_may_gain_detail(ledger):
    from modelgate.errors import ReleaseClosed

    ledger.record("r1", "Superseded", "newer release")
    with pytest.raises(ReleaseClosed, match="already ended Superseded"):
        ledger.record("r1", "Evaluated", "a late task of the stopped execution")
    ledger.record("r1", "Superseded", "more detail", reason="superseded by r2")
    assert ledger.get("r1")["reason"] == "superseded by r2"
    ledger.record("r1", "RolledBack", "operator", reopen=True)
    assert ledger.get("r1")["status"] == "RolledBack"
