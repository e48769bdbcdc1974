"""The final bake keeps the live alias weighted (99.99%), so its alarms really watch the candidate.

AWS documents the ``ExecutedVersion`` metric dimension for weighted aliases only, and the
embedded AWS publishes it for nothing else: a final bake on an unweighted alias would watch
nothing here, as it might on AWS. Only Promote makes the alias unweighted. The tests share one
stack (``shared_live_v2``): each leaves live on one promoted version and no alarm behind.
"""

from __future__ import annotations

import inspect
import json
import threading

from conftest import HANG_GUARD_SECONDS, SETUP_BAKE_SECONDS
from modelgate_harness.polling import wait_until
from modelgate_harness.traffic import TrafficGenerator
from moto.awslambda.models import LambdaBackend

ERRORS_ALARM = [{"name": "errors", "metric": "Errors", "statistic": "Sum", "threshold": 1}]


class AliasHistory:
    """Every UpdateAlias of the live alias, as Lambda stored it: (version, additional weights)."""

    def __init__(self, monkeypatch, function: str) -> None:
        self.changes: list[tuple[str, dict[str, float]]] = []
        self._lock = threading.Lock()
        original = LambdaBackend.update_alias
        signature = inspect.signature(original)

        def recording(backend, *args, **kwargs):
            alias = original(backend, *args, **kwargs)
            bound = signature.bind(backend, *args, **kwargs).arguments
            if bound["function_name"].split(":")[-1] == function and bound["name"] == "live":
                routing = bound.get("routing_config") or {}
                weights = (routing.get("AdditionalVersionWeights") if isinstance(routing, dict) else None) or {}
                with self._lock:
                    self.changes.append((str(bound["function_version"]), {k: float(v) for k, v in weights.items()}))
            return alias

        monkeypatch.setattr(LambdaBackend, "update_alias", recording)


def traffic(pipeline, *, customer_tier: str | None) -> TrafficGenerator:
    """Live callers on the alias; with ``customer_tier`` every request carries the variable v4's prompt needs."""
    requests = []
    for line in (pipeline.examples / "traffic.jsonl").read_text().splitlines():
        if line.strip():
            inputs = json.loads(line)
            if customer_tier is not None:
                inputs["customer_tier"] = customer_tier
            requests.append({"inputs": inputs})
    return TrafficGenerator(
        lambda_client=pipeline.control.client("lambda"), function_name=pipeline.function, qualifier="live",
        requests=requests, rate_per_second=0.3, clock=pipeline.local.clock,
    )


def in_final_bake(ledger, release_id: str) -> bool:
    record = ledger.get(release_id) or {}
    return record.get("status") == "Baking" and any(h["status"] == "Watching" for h in record.get("history", []))


def test_a_candidate_failing_in_the_final_bake_is_rolled_back_by_its_alarm(shared_live_v2, monkeypatch):
    # Given v2 live, and v4 (its prompt needs customer_tier) released with an alarm on the
    # first candidate error and a final bake long enough that only that alarm can end it
    # (the canary step bakes 300 nominal s, as conftest's set-up promotions: enough for the judge)
    pipeline = shared_live_v2
    pipeline.set_policy(
        approval="auto", min_canary_invocations=3, bake_seconds=SETUP_BAKE_SECONDS, post_promotion_watch_seconds=100_000,
        canary_alarms=ERRORS_ALARM,
    )
    live_before, _ = pipeline.live()
    history = AliasHistory(monkeypatch, pipeline.function)
    ledger = pipeline.control.ledger()
    # and callers who send customer_tier while the 10% canary bakes: v4 is healthy there
    healthy = traffic(pipeline, customer_tier="silver")
    failing = traffic(pipeline, customer_tier=None)
    healthy.start()
    try:
        run = pipeline.driver.submit(pipeline.examples / "v4", commit=pipeline.commit_for("v4-final-bake"))
        wait_until(lambda: in_final_bake(ledger, run.release_id), HANG_GUARD_SECONDS, "the final bake")
        candidate = ledger.get(run.release_id)["candidate_version"]
        # When the candidate starts failing in the final bake (callers stop sending the tier)
        healthy.stop()
        failing.start()
        run = pipeline.driver.finish(run)
    finally:
        healthy.stop()
        failing.stop()
    # Then the canary step passed the judge and the final bake was ended by the alarm
    assert healthy.stats.get(candidate, {}).get("error", 0) == 0
    assert failing.stats[candidate]["error"] >= 1
    assert run.status == "RolledBack" and run.execution.get("error") == "CanaryAlarm", run.record.get("reason")
    assert run.path.count("ShiftTraffic") == 2 and run.path.count("CheckCanary") == 1
    assert "Promote" not in run.path and run.path[-3:] == ["Rollback", "AttestEnd", "ReleaseFailed"]
    assert "-canary-" in run.record["reason"] and "in ALARM" in run.record["reason"]
    # And the alias went 10%, then 99.99% (still weighted) in the final bake, then back to stable alone
    assert history.changes == [
        (live_before, {candidate: 0.1}),
        (live_before, {candidate: 0.9999}),
        (live_before, {}),
    ]
    assert pipeline.live() == (live_before, {})
    assert not [a for a in pipeline.alarms() if "-canary-" in a]


def test_a_healthy_release_bakes_weighted_and_only_promote_makes_the_alias_unweighted(shared_live_v2, monkeypatch):
    # Given live on one version (a promoted v2) and live traffic
    pipeline = shared_live_v2
    # (bakes of 300 nominal s, as conftest's set-up promotions: the alias's steps are tested, not how long
    # each bakes; every nominal second of a bake under live traffic costs CPU)
    pipeline.set_policy(approval="auto", min_canary_invocations=3, canary_alarms=ERRORS_ALARM,
                        bake_seconds=SETUP_BAKE_SECONDS, post_promotion_watch_seconds=SETUP_BAKE_SECONDS)
    before, _ = pipeline.live()
    history = AliasHistory(monkeypatch, pipeline.function)
    callers = pipeline.traffic()
    callers.start()
    try:
        # When v2 is released again (a commit of its own: it passes the gate against live v2)
        run = pipeline.driver.release(pipeline.examples / "v2", commit=pipeline.commit_for("v2-final-bake-healthy"),
                                      decision=None)
    finally:
        callers.stop()
    # Then it is promoted after its final bake
    assert run.status == "Promoted", run.record.get("reason")
    candidate = run.record["candidate_version"]
    # And the alias history shows the weighted final bake, then the unweighted promotion
    assert history.changes == [
        (before, {candidate: 0.1}),
        (before, {candidate: 0.9999}),
        (candidate, {}),
    ]
    assert pipeline.live() == (candidate, {})
    # And the ledger says what the alias routed in the final bake: 99.99%, never 100%
    [watching] = [h for h in run.record["history"] if h["status"] == "Watching"]
    assert "final bake: 99.99% of" in watching["detail"] and f"0.01% still on version {before}" in watching["detail"]
    assert "100%" not in watching["detail"]
    promoted = next(h for h in run.record["history"] if h["status"] == "Promoted")
    assert "unweighted" in promoted["detail"]
