"""Time to rollback: a failing candidate's first failed request -> live restored, in AWS seconds.

    python bench/time_to_rollback.py [RUNS] [TIME_FACTOR]   # RUNS canaries per alarm kind (default 5)

On the embedded AWS with AWS's metric timing, in nominal (AWS-equivalent) seconds: release
v4 of the sample service (it passes the gate, then fails every real request) as a canary
under steady traffic, RUNS times with each canary alarm kind, side by side:

- ``lambda``: the canary alarm on AWS/Lambda ``Errors`` (ExecutedVersion), 60 s period:
  Lambda metrics are one-minute and published about a minute late;
- ``service``: the alarm on the service's own high-resolution ``Failures`` metric (EMF,
  StorageResolution 1, source: service), 10 s period, extracted from the log group a few
  seconds after the request.

The clock starts at the first request the candidate fails (seen by the caller, nominal
time) and stops when UpdateAlias returns the live alias to the stable version (the
alarm -> EventBridge -> on_alarm -> SendTaskFailure -> Rollback path). Prints p50 / p95 per
kind and their ratio; the last line is one JSON object.

Each time is split at the alarm's transition to ALARM (the moment the embedded CloudWatch
sends its "Alarm State Change" event): ``detect`` (first failure -> ALARM: the metric's
publication delay and the alarm's period boundary, both AWS's documented timing, see
``modelgate_emulator.cloudwatch`` and ``modelgate_emulator.emf``) and ``react`` (ALARM -> live
restored: EventBridge, on_alarm, SendTaskFailure, the Bake state's Catch, Rollback's
UpdateAlias; no modelled delay, only the machine's own time outside the handlers).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from modelgate_emulator import cloudwatch
from modelgate_harness.control import update_policy
from modelgate_harness.demo import quiet_logs
from modelgate_harness.driver import ReleaseDriver, sample_stack
from modelgate_harness.polling import wait_until
from modelgate_harness.traffic import TrafficGenerator

from modelgate.adapters.lambda_alias import alias_state
from modelgate.stats import percentile

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "support-bot"
# Real seconds per nominal second. The clock stands still while handlers run, not while moto
# and the threads between them do: each real millisecond there is 1/TIME_FACTOR nominal ms,
# so a larger factor measures the AWS-side timing with less of the machine's own in it.
TIME_FACTOR = 0.05
RATE_PER_SECOND = 5.0  # nominal requests per second through the live alias
ALARMS = {
    "lambda": {"name": "errors", "metric": "Errors", "statistic": "Sum", "threshold": 1, "period_seconds": 60},
    "service": {"name": "errors", "metric": "Errors", "source": "service", "statistic": "Sum", "threshold": 1,
                "period_seconds": 10},
}


class FirstFailure:
    """A Lambda client for the traffic generator that notes when the candidate first fails."""

    def __init__(self, client: Any, clock: Any) -> None:
        self.client, self.clock = client, clock
        self.candidate: str | None = None
        self.at: float | None = None
        self._lock = threading.Lock()

    def invoke(self, **kwargs: Any) -> Any:
        response = self.client.invoke(**kwargs)
        if response.get("FunctionError") and response.get("ExecutedVersion") == self.candidate:
            with self._lock:
                if self.at is None:
                    self.at = self.clock.now()
        return response


class AlarmTransitions:
    """The nominal moments alarms went to ALARM (wraps the embedded CloudWatch's event sender)."""

    def __init__(self) -> None:
        self.at: list[float] = []
        self._send = cloudwatch.put_alarm_state_change_event

    def install(self) -> None:
        def send(**kwargs: Any) -> Any:
            if kwargs.get("new_state") == "ALARM" and kwargs.get("now") is not None:
                self.at.append(float(kwargs["now"]))
            return self._send(**kwargs)

        cloudwatch.put_alarm_state_change_event = send

    def uninstall(self) -> None:
        cloudwatch.put_alarm_state_change_event = self._send

    def first_after(self, moment: float) -> float | None:
        return min((t for t in self.at if t >= moment), default=None)


def _p(samples: list[float], q: float) -> float | None:
    return round(percentile(samples, q), 1) if samples else None


def main(runs: int, time_factor: float = TIME_FACTOR) -> dict:
    quiet_logs()
    results: dict[str, list[float]] = {kind: [] for kind in ALARMS}
    parts: dict[str, dict[str, list[float]]] = {kind: {"detect": [], "react": []} for kind in ALARMS}
    transitions = AlarmTransitions()
    transitions.install()
    with sample_stack(ROOT / "template.yaml", time_factor=time_factor, seed=5) as (local, control):
        function = local.stack.outputs["SampleServiceFunctionName"]
        lam = control.client("lambda")
        driver = ReleaseDriver(control, timeout=1800)
        watcher = FirstFailure(lam, local.clock)
        traffic = TrafficGenerator(lambda_client=watcher, function_name=function, qualifier="live",
                                   requests=[{"inputs": json.loads(line)} for line in
                                             (EXAMPLES / "traffic.jsonl").read_text().splitlines() if line],
                                   rate_per_second=RATE_PER_SECOND, clock=local.clock)
        traffic.start()
        try:
            update_policy(control, "support-bot", approval="auto", min_canary_invocations=3)
            first = driver.release(EXAMPLES / "v2", commit="1" * 40, decision=None)
            assert first.status == "Promoted", first.record.get("reason")
            live, _ = alias_state(lam, function, "live")
            restored: dict[str, float] = {}

            def on_update(update: Any, phase: str) -> None:
                if phase == "after" and update.accepted and update.function_version == live and not update.weights:
                    restored.setdefault("at", local.clock.now())

            remove = local.aliases.add_hook(on_update)
            n = 0
            for kind, spec in ALARMS.items():
                update_policy(control, "support-bot", approval="auto", bake_seconds=3600, canary_alarms=[spec])
                for _ in range(runs):
                    n += 1
                    watcher.at = None
                    restored.clear()
                    run = driver.submit(EXAMPLES / "v4", commit=f"{n + 1:040x}")
                    watcher.candidate = None
                    ledger, release_id = control.ledger(), run.release_id
                    candidate = wait_until(
                        lambda ledger=ledger, release_id=release_id: (ledger.get(release_id) or {}).get(
                            "candidate_version"), 1800, "the candidate's version")
                    watcher.candidate = str(candidate)
                    driver.finish(run)
                    assert run.status == "RolledBack", run.record.get("reason")
                    if watcher.at is None or "at" not in restored:
                        print(f"{kind}: run {n} saw no failed candidate request or no restore; skipped")
                        continue
                    results[kind].append(restored["at"] - watcher.at)
                    alarmed = transitions.first_after(watcher.at)
                    if alarmed is not None and alarmed <= restored["at"]:
                        parts[kind]["detect"].append(alarmed - watcher.at)
                        parts[kind]["react"].append(restored["at"] - alarmed)
            remove()
        finally:
            traffic.stop()
            transitions.uninstall()
    summary: dict[str, Any] = {"runs_per_kind": runs, "time_factor": time_factor, "rate_per_second": RATE_PER_SECOND}
    for kind, samples in results.items():
        summary[kind] = {"n": len(samples), "p50_s": _p(samples, 50), "p95_s": _p(samples, 95),
                         "detect_p50_s": _p(parts[kind]["detect"], 50), "detect_p95_s": _p(parts[kind]["detect"], 95),
                         "react_p50_s": _p(parts[kind]["react"], 50), "react_p95_s": _p(parts[kind]["react"], 95)}
        print(f"{kind:8} alarm: p50 {summary[kind]['p50_s']} s, p95 {summary[kind]['p95_s']} s "
              f"(first failed candidate request -> live restored, AWS seconds, {len(samples)} canaries); "
              f"detect p50 {summary[kind]['detect_p50_s']} s / p95 {summary[kind]['detect_p95_s']} s, "
              f"react p50 {summary[kind]['react_p50_s']} s / p95 {summary[kind]['react_p95_s']} s")
    if results["lambda"] and results["service"]:
        summary["p50_ratio"] = round(summary["lambda"]["p50_s"] / summary["service"]["p50_s"], 2)
        summary["p95_ratio"] = round(summary["lambda"]["p95_s"] / summary["service"]["p95_s"], 2)
        summary["target_service_p95_s"] = 30
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, float(sys.argv[2]) if len(sys.argv) > 2 else TIME_FACTOR)
