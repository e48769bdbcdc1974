"""The first release onto a fresh stack: every state, approved by hand, canaried, promoted.

A module of its own: it needs a pristine stack (``pipeline``), and a module-scoped shared
stack (test_release_paths.py's) stays up between that module's tests, whatever order xdist's
worksteal runs them in; a process runs one embedded AWS at a time.
"""

from __future__ import annotations

from conftest import SETUP_BAKE_SECONDS


def statuses(run) -> list[str]:
    return [entry["status"] for entry in run.record["history"]]


def test_first_release_is_approved_canaried_and_promoted(pipeline):
    # Given a fresh stack whose live alias serves the unconfigured template version (and bakes of 300
    # nominal s, as conftest's set-up promotions: the path is tested, not how long each step bakes)
    pipeline.set_policy(min_canary_invocations=3, bake_seconds=SETUP_BAKE_SECONDS,
                        post_promotion_watch_seconds=SETUP_BAKE_SECONDS)
    before, _ = pipeline.live()
    traffic = pipeline.traffic()
    traffic.start()
    try:
        # When v1 is submitted and approved through the approver's path
        run = pipeline.release("v1", decision="approve", comment="first model")
    finally:
        traffic.stop()
    # Then it went through every state to Promoted
    assert run.execution["status"] == "SUCCEEDED"
    assert run.path == ["Validate", "AcquireLock", "PublishCandidate", "PlanEvaluation", "EvaluationMode", "Evaluate",
                        "ReduceEvaluation", "Gate", "Register",
                        "ApprovalMode", "WaitForApproval",
                        "ShiftTraffic", "BakeOrJudge", "Bake", "CheckCanary", "NextStep",  # 10% canary
                        "ShiftTraffic", "BakeOrJudge", "Bake", "CheckCanary", "NextStep",  # final bake, 99.99%
                        "Promote", "Attest", "Promoted"]
    assert run.status == "Promoted"
    for status in ("Received", "Validated", "Locked", "CandidatePublished", "Evaluated", "GatePassed",
                   "PendingManualApproval", "Approved", "Canary", "Baking", "CanaryJudged", "Watching",
                   "Promoted"):
        assert status in statuses(run)
    assert run.record["approval"]["comment"] == "first model"
    assert run.record["approval"]["approver"].startswith("arn:aws:")
    # And the live alias serves the candidate alone, with nothing left behind
    live, weights = pipeline.live()
    assert (before, live, weights) == ("1", run.record["candidate_version"], {})
    assert not [a for a in pipeline.alarms() if "-canary-" in a]
    assert pipeline.control.ledger().lock_holder("support-bot") is None
    # And the canary really served live traffic from the candidate
    assert traffic.stats.get(live, {}).get("ok", 0) >= 3
    # And the report is stored as JSON and HTML, linked from the ledger
    s3 = pipeline.control.client("s3")
    for key in ("report_key", "report_html_key"):
        s3.head_object(Bucket=pipeline.control.bucket, Key=run.record["evaluation"][key])
