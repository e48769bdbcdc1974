"""The runtime's clock under load: two busy processes beside a release must change nothing.

Real work (handlers, live requests) costs no nominal time on the runtime's clock, and
alarms are evaluated exactly at their period boundaries, so a canary alarm ends a default
900 s bake the same way on a loaded 2-core machine as on an idle one (this path used to
fail when the machine was busy: the scaled bake ran out before the alarm was evaluated).
The busy processes spin from the approval on (the traffic shift, the bake, its alarm and the
rollback): spinning through the evaluation before it only slowed the rest of the suite.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def busy_machine() -> Iterator[None]:
    """Two processes spinning on a CPU each (killed after). The test starts them once the stage
    is set: spinning through the stack's build, v2's promotion and the release's evaluation
    only slowed the rest of the suite (the other xdist worker)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def test_a_canary_alarm_ends_the_default_bake_on_a_busy_machine(with_live_v2):
    pipeline = with_live_v2
    # The default bake (900 s) and the default alarm (one candidate error in a minute)
    pipeline.set_policy(approval="manual", min_canary_invocations=3)
    live_before, _ = pipeline.live()
    traffic = pipeline.traffic()
    traffic.start()
    try:
        # Given v4 (its prompt fails every live request) evaluated and waiting for approval
        run = pipeline.driver.submit(pipeline.examples / "v4", commit=pipeline.commit_for("v4"))
        assert pipeline.driver.wait_for_decision_point(run)
        # When the release is approved and canaried with two busy processes beside it
        with busy_machine():
            pipeline.driver.decide(run, "approve")
            run = pipeline.driver.finish(run)
    finally:
        traffic.stop()
    # The alarm ended the bake: no timeout, no judge
    assert run.status == "RolledBack", run.record.get("reason")
    assert run.execution.get("error") == "CanaryAlarm"
    assert "Bake" in run.path and "CheckCanary" not in run.path
    assert "-canary-" in run.record["reason"] and "in ALARM" in run.record["reason"]
    assert traffic.stats[run.record["candidate_version"]]["error"] >= 1
    assert pipeline.live() == (live_before, {})
