"""Monitoring live on the embedded AWS: the scheduled re-evaluation (EventBridge Scheduler on the
runtime's clock) finds live unchanged, then catches a provider-side change under the same model
id as a paired regression and rolls back per the service's policy; `modelgate status SERVICE`
tells it as a timeline.

One stack for the module (two full releases: v1, then v2 promoted over it)."""

from __future__ import annotations

import json

import pytest
from conftest import (
    EXAMPLES,
    HANG_GUARD_SECONDS,
    JUMP_WHEN_IDLE,
    ROOT,
    ROUTING_SEED,
    SERVICE,
    SETUP_BAKE_SECONDS,
    TIME_FACTOR,
    commit_for,
)
from modelgate_emulator.bedrock import degraded
from modelgate_harness import cli
from modelgate_harness.control import update_policy
from modelgate_harness.driver import ReleaseDriver, sample_stack
from modelgate_harness.polling import wait_until
from modelgate_harness.traffic import TrafficGenerator

from modelgate.adapters.lambda_alias import alias_state
from modelgate.monitor.journal import Journal

MODEL = "local.retrieval-small-v1:0"  # what v1 and v2 pin
SCHEDULE = "rate(1 hour)"  # nominal: 7.2 s at the suite's time factor


@pytest.fixture(scope="module")
def monitored():
    """support-bot with v2 promoted over v1, re-evaluated every nominal hour, rolling back on a regression."""
    with sample_stack(ROOT / "template.yaml", time_factor=TIME_FACTOR, seed=ROUTING_SEED, jump_when_idle=JUMP_WHEN_IDLE,
                      ReevaluationSchedule=SCHEDULE) as (local, control):
        # (set-up bakes, as conftest's set-up promotions: 300 nominal s per step, not 900; the
        # schedule's re-evaluations of live during them are not what the test waits for)
        update_policy(control, SERVICE, approval="auto", min_canary_invocations=3,
                      bake_seconds=SETUP_BAKE_SECONDS, post_promotion_watch_seconds=SETUP_BAKE_SECONDS,
                      monitoring={"on_reevaluation_regression": ["alert", "rollback"]})
        function = local.stack.outputs["SampleServiceFunctionName"]
        requests = [{"inputs": json.loads(line)} for line in (EXAMPLES / "traffic.jsonl").read_text().splitlines() if line]
        traffic = TrafficGenerator(lambda_client=control.client("lambda"), function_name=function, qualifier="live",
                                   requests=requests, rate_per_second=0.3, clock=local.clock)
        driver = ReleaseDriver(control, timeout=HANG_GUARD_SECONDS)
        traffic.start()
        try:
            runs = [driver.release(EXAMPLES / v, commit=commit_for(f"monitoring {v}"), decision=None) for v in ("v1", "v2")]
        finally:
            traffic.stop()
        assert [r.status for r in runs] == ["Promoted", "Promoted"], [r.record.get("reason") for r in runs]
        yield local, control, function, runs


def reevaluations(control, version: str) -> list[dict]:
    with control.acting("operator"):
        events = Journal(control.ledger().table).events(SERVICE, kind="reevaluation", limit=200)
    return [e for e in events if e["details"].get("live_version") == version and e["details"]["verdict"] != "skipped"]


def test_the_schedule_reevaluates_live_then_a_provider_change_is_caught_and_rolled_back(monitored, capsys,
                                                                                        monkeypatch):
    local, control, function, (v1, v2) = monitored
    monkeypatch.setattr(cli, "_control", lambda args: cli.with_principal(control, args))  # the CLI on this stack
    lam = control.client("lambda")
    assert alias_state(lam, function, "live") == (v2.record["candidate_version"], {})
    # Given the schedule re-evaluated live v2 against the evaluation that promoted it: nothing changed
    [unchanged, *_] = wait_until(lambda: reevaluations(control, v2.record["candidate_version"]), HANG_GUARD_SECONDS,
                                 "a scheduled re-evaluation of live v2")
    assert unchanged["details"]["verdict"] == "no_regression", unchanged["summary"]
    assert unchanged["details"]["promoted_by"] == v2.release_id
    # When the provider changes what the same model id answers (nothing in the release changes)
    local.foundation_models.change_answers(MODEL, degraded(0.5))
    try:
        # Then the next scheduled re-evaluation finds a paired regression, alerts and rolls live back to v1
        regression = wait_until(
            lambda: next((e for e in reevaluations(control, v2.record["candidate_version"])
                          if e["details"]["verdict"] == "regression"), None),
            HANG_GUARD_SECONDS, "the re-evaluation that catches the provider-side change")
        test = regression["details"]["paired_test"]
        assert test["b"] > test["c"] and test["p_value"] < 0.05, regression["summary"]
        wait_until(lambda: alias_state(lam, function, "live") == (v1.record["candidate_version"], {}),
                   HANG_GUARD_SECONDS, "live back on v1")
        # (the action's journal entry is written once the rollback has finished: ledger, chain, mail)
        def rollback_journaled() -> list | None:
            with control.acting("operator"):
                actions = Journal(control.ledger().table).events(SERVICE, kind="action", limit=20)
            return actions if any(a["details"]["action"] == "rollback" for a in actions) else None

        actions = wait_until(rollback_journaled, HANG_GUARD_SECONDS, "the rollback action's journal entry")
        record = control.ledger().get(v2.release_id)
        assert record["status"] == "RolledBack" and record["history"][-1]["actor"].startswith("modelgate-monitor")
        done = {(a["details"]["action"], a["details"]["status"]) for a in actions}
        assert {("alert", "done"), ("rollback", "done")} <= done, [a["summary"] for a in actions]
        # and the stack's signer revoked the rolled-back release (no downstream stage takes it any more)
        rolled = next(a for a in actions if a["details"]["action"] == "rollback")
        assert rolled["details"]["revocation"] == "revoked", rolled["summary"]
        # And the report of the re-evaluation is in the bucket, as HTML
        html = control.client("s3").get_object(Bucket=control.bucket, Key=regression["details"]["report_html_key"])
        assert b"regression" in html["Body"].read()
    finally:
        local.foundation_models.revert_answers(MODEL)
    # And `modelgate status SERVICE` tells it in order: the releases, the re-evaluations, the actions
    assert cli.main(["status", SERVICE, "--limit", "200"]) == 0
    timeline = capsys.readouterr().out
    promoted_at = timeline.index("Promoted")
    assert promoted_at < timeline.index("no_regression") < timeline.index("regression  ") < timeline.index("rollback")
    assert "RolledBack" in timeline
