"""The ledger: history, single-use decisions, tokens kept apart, the service lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelgate.canary_judge import CanaryVerdict
from modelgate.contract import Approval, Criterion, EvaluationSummary, GateVerdict, PlannedStep
from modelgate.errors import DecisionConflict, ServiceLocked
from modelgate.ledger import Ledger
from modelgate.release_record import ReleaseRecord
from modelgate.manifest import ArtifactRef

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture
def ledger(ledger_table):
    return Ledger(ledger_table)


def evaluation_summary() -> EvaluationSummary:
    """The evaluation summary of the sample events (a release waiting for approval)."""
    event = json.loads((EVENTS / "request_approval" / "waiting.json").read_text())
    return EvaluationSummary.model_validate(event["release"]["evaluation"])


def test_record_appends_history_and_keeps_fields(ledger):
    ledger.record("r1", "Received", "uploaded", service="svc", commit="abc1234")
    ledger.record("r1", "Evaluated", "36 cases", canary_invocations=3, reason="a float: 0.861")
    record = ledger.get("r1")
    assert record["status"] == "Evaluated"
    assert [h["status"] for h in record["history"]] == ["Received", "Evaluated"]
    assert record["canary_invocations"] == 3 and record["reason"] == "a float: 0.861"
    assert record["service"] == "svc" and record["created_at"] <= record["updated_at"]


@pytest.mark.parametrize("write", ["record", "receive", "set_fields"])
def test_an_unknown_field_is_refused_by_name_and_nothing_is_written(ledger, write):
    # Given a task that misspells a field of the release record
    calls = {
        "record": lambda: ledger.record("r1", "Evaluated", "36 cases", evalution={"n_cases": 36}),
        "receive": lambda: ledger.receive("r1", "uploaded", service="svc", evalution={"n_cases": 36}),
        "set_fields": lambda: ledger.set_fields("r1", evalution={"n_cases": 36}),
    }
    # When it writes / Then it fails naming the field, and the ledger holds nothing
    with pytest.raises(ValueError, match="not a field of a release record: evalution"):
        calls[write]()
    assert ledger.get("r1") is None


def test_a_field_of_the_wrong_shape_is_refused(ledger):
    with pytest.raises(ValueError, match="step"):
        ledger.record("r1", "Canary", "step 1", step={"index": 0, "weight": 2.0})
    with pytest.raises(ValueError, match="candidate_version"):
        ledger.set_fields("r1", candidate_version=3)


def test_contract_models_round_trip_through_the_ledger(ledger):
    # Given a release recorded with contract models as its fields
    artifact = ArtifactRef(bucket="b", key="releases/svc/abc1234/model-config.json", version_id="v1")
    summary = evaluation_summary()
    gate = GateVerdict(
        criteria=[
            Criterion(name="accuracy_drop", verdict="pass", observed=0.012, threshold=0.05,
                      message="ok", interval=(-0.01, 0.034), p_value=0.41, unit="pts"),
        ]
    )
    step = PlannedStep(index=0, weight=0.1, bake_seconds=900, is_final=False)
    verdict = CanaryVerdict(verdict="pass", action="proceed", message="no worse")
    approval = Approval(decision="approve", approver="policy:auto")
    ledger.receive("r1", "uploaded", service="svc", commit="abc1234", artifact=artifact)
    ledger.record("r1", "GatePassed", "gate passed", evaluation=summary, gate=gate)
    ledger.record("r1", "Approved", "auto", approval=approval)
    ledger.record("r1", "Canary", "step 1", step=step, canary_alarms=["a1"], verdict=verdict.model_dump(mode="json"))
    # When it is read back, typed / Then every model is what was written
    record = ledger.release("r1")
    assert isinstance(record, ReleaseRecord)
    assert record.artifact == artifact and record.evaluation == summary and record.gate == gate
    assert record.step == step and record.verdict == verdict and record.canary_alarms == ["a1"]
    assert record.approval is not None and record.approval.model_dump() == approval.model_dump()
    assert [h.status for h in record.history] == ["Received", "GatePassed", "Approved", "Canary"]
    # And the plain view is the same data
    assert ledger.get("r1")["gate"]["criteria"][0]["interval"] == [-0.01, 0.034]
    assert ledger.release("nope") is None


def test_a_rejection_reads_back_as_a_decision(ledger):
    ledger.record("r1", "PendingManualApproval", "waiting", four_eyes=True)
    ledger.decide("r1", "reject", "alice", "not yet")
    record = ledger.release("r1")
    assert record.status == "Rejected" and record.four_eyes is True
    assert record.approval.decision == "reject" and record.approval.approver == "alice"


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
