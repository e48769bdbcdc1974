"""One release per service (a newer artefact supersedes), and `modelgate rollback`.

Both tests share one stack (``shared_live_v2``): each runs its own releases and leaves live on
a promoted v2, no release running and the lock free."""

from __future__ import annotations

import pytest
from conftest import HANG_GUARD_SECONDS
from modelgate_harness.polling import wait_until
from modelgate_harness.trail import audit_rows, revoke, verify_release

from modelgate.errors import DecisionConflict
from modelgate.pipeline import outcome
from modelgate.pipeline.revocation import RevocationFailed


def test_a_newer_artefact_supersedes_the_release_in_its_canary(shared_live_v2):
    pipeline = shared_live_v2
    live_before, _ = pipeline.live()
    pipeline.set_policy(approval="auto", bake_seconds=5000, min_canary_invocations=1)  # a 10 s bake here
    older = pipeline.driver.submit(pipeline.examples / "v4", commit=pipeline.commit_for("v4-older"))
    ledger = pipeline.control.ledger()
    wait_until(lambda: (ledger.get(older.release_id) or {}).get("status") == "Baking", HANG_GUARD_SECONDS, "the older canary")
    assert pipeline.live()[1]  # the older release holds canary weight

    # When a newer artefact of the same service arrives
    pipeline.set_policy(approval="manual", bake_seconds=900, min_canary_invocations=1)
    newer = pipeline.driver.submit(pipeline.examples / "v4", commit=pipeline.commit_for("v4-newer"))
    assert pipeline.driver.wait_for_decision_point(newer)

    # Then the older one is cancelled cleanly and says why; the newer one proceeds
    record = ledger.get(older.release_id)
    assert record["status"] == "Superseded"
    assert newer.release_id in record["reason"]
    sfn = pipeline.control.client("stepfunctions")
    wait_until(lambda: sfn.describe_execution(executionArn=older.execution_arn)["status"] == "ABORTED",
               HANG_GUARD_SECONDS, "the older execution to stop")
    assert pipeline.live() == (live_before, {})  # its canary traffic went back to live
    assert not [a for a in pipeline.alarms() if older.release_id in a]
    assert ledger.lock_holder("support-bot") == newer.release_id
    # And the superseded release is chained (by the AcquireLock that cancelled it) and verifies on
    # its chain record, which says why it has no attestation
    report = verify_release(pipeline.control, older.release_id)
    assert report.ok, report.lines()
    assert "none, by design: Superseded in flight" in {n: d for n, _, d in report.checks}["attestation"]
    pipeline.driver.decide(newer, "reject", "test over")
    assert pipeline.driver.finish(newer).status == "Rejected"
    # And the service's audit trail lists no ended release as unchained
    rows, problems = audit_rows(pipeline.control, "support-bot", None)
    assert not problems and not [r for r in rows if str(r["chain_status"]).startswith("unchained")], rows


@pytest.fixture
def service_alarm_firing(shared_live_promoted_over):
    """The sample service's own errors alarm in ALARM for the test (back to OK after it: the module shares its stack)."""
    pipeline = shared_live_promoted_over[0]
    cloudwatch = pipeline.control.client("cloudwatch")
    alarm = next(a for a in pipeline.alarms() if "SampleServiceErrorsAlarm" in a)
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="errors everywhere")
    yield
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="test over")


def test_manual_rollback_returns_to_the_last_known_good_version_while_an_alarm_fires(shared_live_promoted_over,
                                                                                     service_alarm_firing):
    # Given live serves v2 (second), promoted over the promoted release first, and the service's alarm fires
    pipeline, first, second = shared_live_promoted_over
    assert pipeline.live()[0] == second.record["candidate_version"]

    # When an operator rolls the service back
    result = outcome.rollback_service(pipeline.control.deps(), "support-bot", "arn:aws:iam::123456789012:user/ops",
                                    "bad answers reported")

    # Then live serves v1's version again, the ledger says who and why, no gate ran
    assert result["to_version"] == first.record["candidate_version"]
    assert pipeline.live() == (first.record["candidate_version"], {})
    record = pipeline.control.ledger().get(second.release_id)
    assert record["status"] == "RolledBack"
    assert "manual rollback by arn:aws:iam::123456789012:user/ops: bad answers reported" in record["reason"]
    # And the stack's signer revokes the promoted release it was (what `modelgate rollback` asks next, as the
    # operator): verify against this stack then fails on that alone, so no downstream stage takes its artefact
    assert revoke(pipeline.control, second.release_id)["revoked"] is True
    problems = {name: detail for name, ok, detail in verify_release(pipeline.control, second.release_id).checks
                if not ok}
    assert list(problems) == ["not revoked"] and "bad answers reported" in problems["not revoked"], problems
    # (the signer refuses to revoke a release the ledger and chain don't say was rolled back)
    with pytest.raises(RevocationFailed, match="NotRevocable: release .* is Promoted, not RolledBack"):
        revoke(pipeline.control, first.release_id)

    # And rolling back again goes to the version live served before first was promoted; first is the
    # module stack's set-up v2, the service's first release, so that is the template's version 1,
    # which serves no model: refused
    assert first.record["live_version"] == "1", first.record
    with pytest.raises(DecisionConflict, match="first release"):
        outcome.rollback_service(pipeline.control.deps(), "support-bot", "ops", "again")
    assert pipeline.live() == (first.record["candidate_version"], {})
