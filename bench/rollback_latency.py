"""Rollback latency: from a canary alarm's state change to the live alias restored.

Control-plane time on the local runtime: the alarm goes to ALARM (the state change emits
"CloudWatch Alarm State Change" as AWS does) -> EventBridge rule -> on_alarm Lambda ->
SendTaskFailure on the bake's task token -> the state machine's Rollback task -> one
UpdateAlias. No polling anywhere on that path. Measured RUNS times (default 20) on one
stack, each on a fresh canary; prints p50 / p95 and, last, one JSON object.

    python bench/rollback_latency.py [RUNS]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from modelgate_harness.control import update_policy
from modelgate_harness.demo import quiet_logs
from modelgate_harness.driver import ReleaseDriver, sample_stack, wait_until
from modelgate_harness.traffic import TrafficGenerator

from modelgate.adapters.lambda_alias import alias_state

ROOT = Path(__file__).resolve().parents[1]

EXAMPLES = ROOT / "examples" / "support-bot"
TIME_FACTOR = 0.01


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def main(runs: int) -> dict:
    quiet_logs()
    samples: list[float] = []
    with sample_stack(ROOT / "template.yaml", time_factor=TIME_FACTOR) as (local, control):
        function = local.stack.outputs["SampleServiceFunctionName"]
        lam, cloudwatch, ledger = control.client("lambda"), control.client("cloudwatch"), control.ledger()
        driver = ReleaseDriver(control)
        # a live version first, then canaries that bake for a long time (1 h nominal)
        update_policy(control, "support-bot", approval="auto", min_canary_invocations=1, bake_seconds=60)
        traffic = TrafficGenerator(lambda_client=lam, function_name=function, qualifier="live",
                                   requests=[{"inputs": {"question": "How do I reset my password?"}}],
                                   rate_per_second=50)
        traffic.start()
        first = driver.release(EXAMPLES / "v2", commit="1" * 40, decision=None)
        traffic.stop()
        assert first.status == "Promoted", first.record.get("reason")
        live, _ = alias_state(lam, function, "live")
        update_policy(control, "support-bot", approval="auto", bake_seconds=3600)
        for i in range(runs):
            run = driver.submit(EXAMPLES / "v2", commit=f"{i + 2:040x}")
            wait_until(lambda: (ledger.get(run.release_id) or {}).get("status") == "Baking", 60, "the bake")
            alarm = ledger.get(run.release_id)["canary_alarms"][0]
            started = time.perf_counter()
            cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="benchmark: errors")
            while alias_state(lam, function, "live") != (live, {}):
                time.sleep(0.0005)
            samples.append((time.perf_counter() - started) * 1000)
            driver.finish(run)
            assert run.status == "RolledBack", run.record.get("reason")
    result = {
        "runs": len(samples),
        "p50_ms": round(percentile(samples, 50), 1),
        "p95_ms": round(percentile(samples, 95), 1),
        "max_ms": round(max(samples), 1),
        "mean_ms": round(statistics.mean(samples), 1),
        "target_p95_ms": 1000,
    }
    print(f"rollback latency over {len(samples)} canaries (alarm state change -> live alias restored):")
    print(f"  p50 {result['p50_ms']} ms   p95 {result['p95_ms']} ms   max {result['max_ms']} ms")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
