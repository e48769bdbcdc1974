"""State transitions per release, counted from execution histories as Step Functions bills them.

    python bench/transitions.py                      # every path, on the local runtime
    python bench/transitions.py HISTORY.json [...]   # histories from AWS (GetExecutionHistory)

The last line printed is one JSON object.

Billing semantics (Standard workflows, AWS Step Functions pricing page): "Step Functions
counts a state transition each time a step of your workflow is executed ... including
retries", and "each retry will be charged as an additional state transition". In an
execution history a step executed is one ``*StateEntered`` event (Task, Choice, Pass,
Wait, Map, Parallel, Succeed, Fail; states inside Map iterations and Parallel branches
each enter too), and a retry is a task scheduled again within the same state entry (a
second ``TaskScheduled`` / ``LambdaFunctionScheduled`` / ``ActivityScheduled`` after a
failure, with no new ``StateEntered``). So:

    transitions = StateEntered events + re-schedulings within one state entry

What is *not* a transition: how long a state waits. A callback task
(``.waitForTaskToken``) is entered once however long it bakes; only a polling loop
(Wait -> check -> Choice -> Wait ...) would add transitions per poll, which is why the
bake must be a callback. The count is exact for comparing paths; AWS's meter is the
authority for the bill itself.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

_SCHEDULED = frozenset({"TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"})


def _attribute(events: Iterable[Mapping[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    """(state entries per state name, retries per state name).

    Each event belongs to the state entry its ``previousEventId`` chain leads back to
    (concurrent Map/Parallel branches interleave in the history); an event without a
    known predecessor belongs to the latest entry, in event order.
    """
    entered: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    owner: dict[int, int] = {}  # event id -> id of its StateEntered event
    names: dict[int, str] = {}  # StateEntered event id -> state name
    scheduled: Counter[int] = Counter()  # StateEntered event id -> times scheduled
    latest: int | None = None
    for event in sorted(events, key=lambda e: int(e.get("id", 0))):
        event_id = int(event.get("id", 0))
        kind = str(event.get("type", ""))
        if kind.endswith("StateEntered"):
            details = event.get("stateEnteredEventDetails") or {}
            names[event_id] = str(details.get("name", kind))
            entered[names[event_id]] += 1
            owner[event_id] = latest = event_id
            continue
        previous = event.get("previousEventId")
        entry = owner.get(int(previous)) if previous is not None else None
        entry = entry if entry is not None else latest
        if entry is None:
            continue  # ExecutionStarted and the like: before any state
        owner[event_id] = entry
        if kind in _SCHEDULED:
            scheduled[entry] += 1
            if scheduled[entry] > 1:
                retries[names[entry]] += 1
    return entered, retries


def count_transitions(history_events: Iterable[Mapping[str, Any]]) -> int:
    """Billed state transitions of one execution: states entered plus retries."""
    entered, retries = _attribute(history_events)
    return sum(entered.values()) + sum(retries.values())


def transitions_by_state(history_events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The same count per state name (entries + retries), to see where transitions go."""
    entered, retries = _attribute(history_events)
    return dict(entered + retries)


def run_paths() -> dict[str, Any]:
    """Every path of the release pipeline on the local runtime, with its transitions."""
    from pathlib import Path

    from modelgate_emulator.stepfunctions import execution_history
    from modelgate_harness.control import update_policy
    from modelgate_harness.demo import quiet_logs
    from modelgate_harness.driver import EXAMPLES, ReleaseDriver, sample_stack
    from modelgate_harness.traffic import TrafficGenerator

    quiet_logs()
    root = Path(__file__).resolve().parents[1]
    results: dict[str, Any] = {}
    with sample_stack(root / "template.yaml", time_factor=0.002) as (local, control):
        # Real seconds a step may take. The bench counts transitions, not time; its longest path bakes 18,000
        # nominal s under traffic, and the runtime's clock stands still while requests run, so on a loaded machine
        # that path outlasts 120 real s (it printed no result at load ~15), and 900 real s when the bench got a
        # tenth of a core (pinned beside five `yes` and a test run): a generous limit, not a measurement.
        driver = ReleaseDriver(control, timeout=3600)
        sfn = control.client("stepfunctions")
        traffic = TrafficGenerator(
            lambda_client=control.client("lambda"), function_name=control.outputs["SampleServiceFunctionName"],
            qualifier="live", requests=[{"inputs": {"question": "How do I reset my password?"}}],
            rate_per_second=0.3, clock=local.clock,  # per nominal second: a busy machine changes nothing
        )
        traffic.start()

        def release(name: str, folder: str, commit: int, decision: str | None = "approve", **policy: Any) -> None:
            if policy:
                update_policy(control, "support-bot", **policy)
            run = driver.release(EXAMPLES / folder, commit=f"{commit:040x}", decision=decision)
            events = execution_history(sfn, run.execution_arn)
            # Why it ended so, from the ledger: an outcome that changes with machine load must say why.
            results[name] = {"status": run.status, "transitions": count_transitions(events),
                             "states": len(run.path), "reason": run.record.get("reason")}
            print(f"{name:34} {run.status:18} {results[name]['transitions']:3} transitions"
                  + (f"  ({results[name]['reason']})" if run.status != "Promoted" else ""))

        try:
            release("promoted (manual approval)", "v1", 1, min_canary_invocations=3)
            release("promoted, bake 10x longer", "v2", 2, bake_seconds=9000, post_promotion_watch_seconds=9000)
            update_policy(control, "support-bot", bake_seconds=900, post_promotion_watch_seconds=900)
            release("gate failed", "v3", 3)
            release("rejected", "v2", 4, decision="reject")
            release("approval timed out", "v2", 5, decision=None, approval_timeout_seconds=60)
            release("rolled back by alarm", "v4", 6, approval_timeout_seconds=86400)
            release("promoted, Linear10PercentEvery1Minute", "v2", 7, rollout="Linear10PercentEvery1Minute")
        finally:
            traffic.stop()
    base, longer = results["promoted (manual approval)"], results["promoted, bake 10x longer"]
    results["bake_polling_transitions"] = longer["transitions"] - base["transitions"]
    return results


def main(argv: list[str] | None = None) -> int:
    """With history files: count them. Without: run every path on the local runtime."""
    paths = sys.argv[1:] if argv is None else argv
    result: dict[str, Any] = {}
    if not paths:
        result = run_paths()
        print(f"a 10x longer bake adds {result['bake_polling_transitions']} transitions (no polling)")
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        events = data["events"] if isinstance(data, dict) else data  # GetExecutionHistory or a list
        result[path] = {"transitions": count_transitions(events), "by_state": transitions_by_state(events)}
        print(f"{path}: {result[path]['transitions']} transitions")
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
