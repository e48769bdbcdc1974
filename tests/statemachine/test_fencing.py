"""Fencing on the embedded AWS: a release superseded while its ShiftTraffic task is still
running moves nothing after that, and a burst of uploads for one service leaves every
release final, the alias where it belongs and no alarm behind.

The embedded AWS records every UpdateAlias it answered (``LocalAWS.aliases``) and takes
hooks that hold one in flight: that is how these tests make an alias update slow. The tests
share one stack (``shared_live_v2``): each leaves live on a promoted release, no release
running and the lock free.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from modelgate_emulator.lambda_aliases import AliasUpdate
from modelgate_harness.polling import wait_until

from modelgate.ledger import FINAL_STATUSES
from modelgate.pipeline import outcome

SERVICE = "support-bot"
HOLD_SECONDS = 120  # a guard against a hang only: the test releases the held update itself


class HeldUpdate:
    """Holds the first UpdateAlias that routes weight to a candidate, at ``phase``: "before"
    (it reaches Lambda late) or "after" (applied, answered late)."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.arrived = threading.Event()
        self.go = threading.Event()
        self.update: AliasUpdate | None = None

    def __call__(self, update: AliasUpdate, phase: str) -> None:
        if phase != self.phase or not update.weights or self.arrived.is_set():
            return
        self.update = update
        self.arrived.set()
        assert self.go.wait(HOLD_SECONDS), "the test never let the held alias update go"


def shift_traffic_ended(pipeline, count: int) -> Any:
    return lambda: len(pipeline.local.invocations("ShiftTrafficFunction")) > count


@pytest.mark.parametrize("phase", ["before", "after"])
def test_a_release_superseded_during_a_slow_alias_update_moves_nothing_after(shared_live_promoted_over, phase):
    # Live serves this test's v2 (second), promoted over first: a manual rollback has somewhere to go
    pipeline, first, second = shared_live_promoted_over
    ledger = pipeline.control.ledger()
    live_before = pipeline.live()
    assert live_before == (second.record["candidate_version"], {})
    held = HeldUpdate(phase)
    remove = pipeline.local.aliases.add_hook(held)
    try:
        # Given an older release whose first canary step's alias update is slow
        pipeline.set_policy(approval="auto", bake_seconds=5000, min_canary_invocations=1)
        shifts = len(pipeline.local.invocations("ShiftTrafficFunction"))
        older = pipeline.driver.submit(pipeline.examples / "v2", commit=pipeline.commit_for("v2-older"))
        assert held.arrived.wait(pipeline.driver.timeout), "the older release never shifted traffic"
        older_candidate = ledger.get(older.release_id)["candidate_version"]
        assert held.update is not None and older_candidate in held.update.weights

        # When a newer upload supersedes it while that update is still in flight
        pipeline.set_policy(approval="manual", bake_seconds=900, min_canary_invocations=1)
        newer = pipeline.driver.submit(pipeline.examples / "v2", commit=pipeline.commit_for("v2-newer"))
        wait_until(lambda: ledger.lock_holder(SERVICE) == newer.release_id and
                   (ledger.get(older.release_id) or {}).get("status") == "Superseded",
                   pipeline.driver.timeout, "the newer release to supersede the older one")
        held.go.set()
        wait_until(shift_traffic_ended(pipeline, shifts), pipeline.driver.timeout, "the older ShiftTraffic to end")
    finally:
        held.go.set()
        remove()

    # Then the older task found its lease gone and changed nothing (or undid what it changed)
    ended = pipeline.local.invocations("ShiftTrafficFunction")[shifts]
    assert ended.error_type == "LeaseLost", (ended.error_type, ended.error_message)
    assert pipeline.driver.wait_for_decision_point(newer)  # the newer one evaluated and waits for approval
    assert pipeline.live() == live_before
    history = pipeline.local.aliases.updates(pipeline.function, "live")
    superseded_at = _status_time(ledger.get(older.release_id), "Superseded")
    late = [u for u in history if u.accepted and u.at > superseded_at and _routes_to(u, older_candidate)]
    assert late == []  # nothing routed to the superseded candidate after it was superseded
    accepted = [u for u in history if u.accepted]
    assert (accepted[-1].function_version, accepted[-1].weights) == (live_before[0], {})
    attempt = [u for u in history if u.thread == held.update.thread and _routes_to(u, older_candidate)]
    assert [u.accepted for u in attempt] == ([False] if phase == "before" else [True])

    # And the superseded release is final, its alarms gone; the newer one holds the lease
    record = ledger.get(older.release_id)
    assert record["status"] == "Superseded" and newer.release_id in record["reason"]
    assert not [a for a in pipeline.alarms() if older.release_id in a]
    assert ledger.lock_holder(SERVICE) == newer.release_id
    sfn = pipeline.control.client("stepfunctions")
    assert sfn.describe_execution(executionArn=older.execution_arn)["status"] == "ABORTED"

    # And `modelgate rollback` works: it cancels the newer release and returns live to first's version
    result = outcome.rollback_service(pipeline.control.deps(), SERVICE, "ops", "fencing test")
    assert result["to_version"] == first.record["candidate_version"]
    assert pipeline.live() == (first.record["candidate_version"], {})
    assert ledger.get(newer.release_id)["status"] == "RolledBack"
    assert ledger.lock_holder(SERVICE) is None
    assert [a for a in pipeline.alarms() if "-canary-" in a] == []


# One seed in `make test`; the repeats (issue #10: "a 20-upload burst (repeated)") in `make test-slow`.
@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)])
def test_a_burst_of_uploads_for_one_service_leaves_every_release_final(shared_live_v2, seed):
    pipeline = shared_live_v2
    rng = random.Random(seed)
    ledger = pipeline.control.ledger()
    # (the last release's final bake as short as its canary: live traffic runs through the whole burst, and
    # every nominal second of a bake costs CPU; the supersedes land in canaries, not in that final bake)
    pipeline.set_policy(approval="auto", bake_seconds=300, post_promotion_watch_seconds=300, min_canary_invocations=1)

    def jitter(update: AliasUpdate, phase: str) -> None:
        # Alias updates that take a little while, at random (seeded): supersedes land mid-update.
        if update.weights is not None and rng.random() < 0.5:
            time.sleep(rng.uniform(0.0, 0.05))

    remove = pipeline.local.aliases.add_hook(jitter)
    traffic = pipeline.traffic(rate=1.0)
    traffic.start()
    runs = []
    try:
        # When 20 uploads of the service arrive in a burst (some while a canary runs)
        for i in range(20):
            commit = pipeline.commit_for(f"burst-{seed}-{i}")
            runs.append(pipeline.driver.submit(pipeline.examples / "v2", commit=commit))
            pipeline.local.sleep(rng.choice([0, 0, 1, 5, 30]))
        finished = [pipeline.driver.finish(run) for run in runs]
    finally:
        traffic.stop()
        remove()

    # Then every release ended in a final status, the last one promoted
    outcomes = {run.release_id: (run.record["status"], run.record.get("reason")) for run in finished}
    assert {r: o for r, o in outcomes.items() if o[0] not in FINAL_STATUSES} == {}
    assert {r: o for r, o in outcomes.items() if o[0] == "Failed"} == {}  # superseded, never failed
    assert outcomes[runs[-1].release_id][0] == "Promoted", outcomes[runs[-1].release_id]
    # And the alias serves the last release alone; no alarm or lock is left
    last_candidate = finished[-1].record["candidate_version"]
    assert pipeline.live() == (last_candidate, {})
    assert [a for a in pipeline.alarms() if "-canary-" in a] == []
    assert ledger.lock_holder(SERVICE) is None
    # And no UpdateAlias routed to a release's candidate after that release ended, but a promotion's
    history = pipeline.local.aliases.updates(pipeline.function, "live")
    for run in finished[:-1]:
        record = ledger.get(run.release_id)
        candidate = record.get("candidate_version")
        if not candidate or record["status"] == "Promoted":
            continue
        ended_at = _status_time(record, record["status"])
        late = [u for u in history if u.accepted and u.at > ended_at and _routes_to(u, candidate)]
        assert late == [], (run.release_id, record["status"], late)


def _routes_to(update: AliasUpdate, version: str) -> bool:
    return update.function_version == version or version in (update.weights or {})


def _status_time(record: dict, status: str) -> float:
    from datetime import datetime

    at = next(h["at"] for h in record["history"] if h["status"] == status)
    return datetime.fromisoformat(at).timestamp()
