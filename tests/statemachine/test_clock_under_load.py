"""The runtime's clock under load: two busy processes beside a release must change nothing.

Real work (handlers, live requests) costs no nominal time on the runtime's clock, and
alarms are evaluated exactly at their period boundaries, so a canary alarm ends a default
900 s bake the same way on a loaded 2-core machine as on an idle one (this path used to
fail when the machine was busy: the scaled bake ran out before the alarm was evaluated).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture
def busy_machine(with_live_v2) -> Iterator[None]:
    """Two processes spinning on a CPU each while the test's release runs (killed after).
    They start once ``with_live_v2`` has set the stage: spinning through the stack's build
    and v2's promotion only slowed the rest of the suite (the other xdist worker)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def test_a_canary_alarm_ends_the_default_bake_on_a_busy_machine(with_live_v2, busy_machine):
    pipeline = with_live_v2
    # The default bake (900 s) and the default alarm (one candidate error in a minute)
    pipeline.set_policy(approval="manual", min_canary_invocations=3)
    live_before, _ = pipeline.live()
    traffic = pipeline.traffic()
    traffic.start()
    try:
        run = pipeline.release("v4")  # its prompt fails every live request
    finally:
        traffic.stop()
    # The alarm ended the bake: no timeout, no judge
    assert run.status == "RolledBack", run.record.get("reason")
    assert run.execution.get("error") == "CanaryAlarm"
    assert "Bake" in run.path and "CheckCanary" not in run.path
    assert "-canary-" in run.record["reason"] and "in ALARM" in run.record["reason"]
    assert traffic.stats[run.record["candidate_version"]]["error"] >= 1
    assert pipeline.live() == (live_before, {})
