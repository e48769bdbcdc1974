"""One artefact from staging to production (issue #12): production accepts exactly what
staging promoted, proven by staging's signed attestation, and the trail verifies.

Two stacks of template.yaml on the embedded AWS, one after the other (modelgate_harness.stages
says why): staging promotes v1 (one full release), then production, whose sample service
requires staging (the stack's RequiresStage parameter) and trusts staging's public key, takes that artefact (one full release) and
refuses two others at Validate. Module-scoped: two full releases in all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modelgate_harness.driver import EXAMPLES
from modelgate_harness.stages import (
    PROD_PARAMETERS,
    PROD_STACK,
    Promoted,
    commit_for,
    edit_release_record,
    finish,
    one_byte_different,
    promote_in_staging,
    stage_stack,
    submit_with,
    trust_staging,
)
from modelgate_harness.trail import audit_rows, audit_text, verify_release

ROOT = Path(__file__).resolve().parents[2]
TIME_FACTOR = 0.002  # as in conftest.py
SEED = 20261130


@pytest.fixture(scope="module")
def staged() -> Promoted:
    """Staging promoted v1 and handed over its attestation and its public key."""
    return promote_in_staging(ROOT / "template.yaml", time_factor=TIME_FACTOR, seed=SEED)


@pytest.fixture(scope="module")
def production(staged):
    with stage_stack(ROOT / "template.yaml", "prod", PROD_STACK, time_factor=TIME_FACTOR, seed=SEED,
                     parameters=PROD_PARAMETERS) as (local, control, driver):
        trust_staging(control, staged.public_pem)
        yield local, control, driver


@pytest.fixture(scope="module")
def accepted(staged, production):
    _, control, driver = production
    return finish(driver, submit_with(control, EXAMPLES / "v1", staged.commit, staged.envelope))


def test_staging_promoted_v1_and_its_release_verifies(staged):
    assert staged.verified


def test_production_accepts_the_artefact_staging_promoted_and_says_so(staged, accepted):
    assert accepted.status == "Promoted", accepted.record.get("reason")
    assert accepted.path[-3:] == ["Promote", "Attest", "Promoted"]
    validated = next(h["detail"] for h in accepted.record["history"] if h["status"] == "Validated")
    assert f"promoted in staging as release {staged.release_id}" in validated


def test_production_refuses_an_artefact_that_skipped_staging(production, accepted):
    _, control, driver = production
    # (the stack's RequiresStage parameter requires staging: the service's policy does not)
    with control.acting("operator"):
        registration = control.client("ssm").get_parameter(Name=control.outputs["ServicesPrefix"] + "support-bot")
    assert json.loads(registration["Parameter"]["Value"])["policy"].get("requires_stage") is None
    run = finish(driver, submit_with(control, EXAMPLES / "v2", commit_for("v2"), None))
    assert run.status == "Invalid"
    assert run.path == ["Validate", "RecordOutcome", "AttestEnd", "ReleaseFailed"]
    assert "accepts only artefacts promoted in staging first" in run.record["reason"]
    assert "attestations/staging.intoto.json does not exist" in run.record["reason"]


def test_production_refuses_an_artefact_one_byte_different(staged, production, accepted, tmp_path):
    _, control, driver = production
    changed = one_byte_different(EXAMPLES / "v1", tmp_path / "v1")
    run = finish(driver, submit_with(control, changed, commit_for("v1-changed"), staged.envelope))
    assert run.status == "Invalid"
    assert "this artefact is not the one staging promoted" in run.record["reason"]
    assert "prompts/system.txt: sha256" in run.record["reason"]


def test_the_production_trail_verifies_until_a_record_is_edited(production, accepted):
    _, control, _ = production
    # Given production's promoted release: chained, attested with production's own key
    report = verify_release(control, accepted.release_id)
    assert report.ok, report.lines()
    # and the audit export lists it, chain intact
    rows, problems = audit_rows(control, "support-bot")
    assert problems == []
    exported = json.loads(audit_text(rows, problems, "support-bot", "json"))
    assert exported["chain_intact"] is True
    assert (accepted.release_id, "Promoted", "ok") in [(r["release_id"], r["status"], r["chain_status"])
                                                      for r in exported["records"]]
    assert audit_text(rows, problems, "support-bot", "csv").splitlines()[0].startswith("seq,at,kind,release_id")
    # When someone with table access rewrites the release's ledger record
    edit_release_record(control, accepted.release_id, reason="approved by the CEO")
    # Then verify names the edit
    report = verify_release(control, accepted.release_id)
    assert not report.ok
    failed = [(name, detail) for name, ok, detail in report.checks if not ok]
    assert failed == [("release chained", f"field 'reason' of release {accepted.release_id} was changed after it "
                                          'was chained (record 1): null -> "approved by the CEO"')]
