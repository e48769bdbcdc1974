"""`make demo`: four releases of the sample service on the local runtime.

  v1  first release of support-bot       -> approved, canary, promoted (becomes live)
  v2  better prompt                       -> passes the gate, approved, canary, promoted
  v3  worse prompt                        -> fails the gate; live unchanged
  v4  passes the gate, errors in live use -> its canary alarm fires from real errors of
                                             the candidate -> rolled back; live unchanged

Live traffic comes from a traffic generator calling the `live` alias all along, so the
alarm in v4 fires because 10% of real requests reach a candidate that fails them.
Exits non-zero if any release ends otherwise.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "support-bot"


@dataclass
class Scenario:
    name: str
    folder: str
    expect_status: str
    approve: bool
    live_after: str  # "candidate" or "unchanged"


SCENARIOS = [
    Scenario("v1 first release", "v1", "Promoted", True, "candidate"),
    Scenario("v2 better prompt", "v2", "Promoted", True, "candidate"),
    Scenario("v3 worse prompt", "v3", "GateFailed", True, "unchanged"),
    Scenario("v4 breaks live requests", "v4", "RolledBack", True, "unchanged"),
]


def fake_commit(label: str) -> str:
    return hashlib.sha1(f"support-bot {label}".encode()).hexdigest()


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_release(control, scenario: Scenario, *, timeout: float, out=sys.stdout) -> dict:
    from modelgate.control import decide, submit
    from modelgate.local.stepfunctions import history_path, wait_for_execution

    ledger = control.ledger()
    sfn = control.client("stepfunctions")
    submission = submit(control, EXAMPLES / scenario.folder, commit=fake_commit(scenario.folder), branch="main")
    print(f"\n== {scenario.name}: submitted {submission.key}\n   release {submission.release_id}", file=out)
    record = wait_until(
        lambda: (r := ledger.get(submission.release_id)) and r.get("execution_arn") and r,
        timeout, what=f"intake of {submission.release_id}",
    )
    arn = record["execution_arn"]

    def waiting_or_done():
        current = ledger.get(submission.release_id) or {}
        if current.get("status") == "PendingManualApproval" and ledger.get_token(submission.release_id, "approval"):
            return "waiting"
        if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
            return "done"
        return None

    if wait_until(waiting_or_done, timeout, what="approval request or end") == "waiting":
        if scenario.approve:
            decided = decide(control, submission.release_id, "approve", "demo: looks good")
            print(f"   approved by {decided['approval']['approver']}", file=out)
        else:
            decide(control, submission.release_id, "reject", "demo: no")
    execution = wait_for_execution(sfn, arn, timeout=timeout)
    path = history_path(sfn, arn)
    final = ledger.get(submission.release_id) or {}
    print(f"   path: {' -> '.join(path)}", file=out)
    print(f"   execution {execution['status']}; ledger status {final.get('status')}", file=out)
    if final.get("reason"):
        print(f"   why: {final['reason']}", file=out)
    return final


def run_demo(*, time_factor: float = 0.005, template_path: Path = Path("template.yaml"), out=sys.stdout) -> int:
    import boto3

    from modelgate import aws
    from modelgate.control import Control, format_table, put_dataset
    from modelgate.deploy import alias_state
    from modelgate.local import LocalAWS
    from modelgate.local.traffic import TrafficGenerator

    requests = [json.loads(line) for line in (EXAMPLES / "traffic.jsonl").read_text().splitlines() if line.strip()]
    failures = []
    with LocalAWS(template_path, parameters={"ModelProvider": "local", "ApprovalMode": "manual"},
                  time_factor=time_factor) as local:
        control = Control(local.stack_name, local.stack.outputs, aws.client, boto3.resource)
        function = local.stack.outputs["SampleServiceFunctionName"]
        version = put_dataset(control, "support-bot", EXAMPLES / "dataset.jsonl")
        print(f"stack {local.stack_name} on the local runtime (time factor {time_factor}); "
              f"dataset version {version}", file=out)
        traffic = TrafficGenerator(
            lambda_client=control.client("lambda"), function_name=function, qualifier="live",
            requests=[{"inputs": r} for r in requests], rate_per_second=80,
        )
        traffic.start()
        timeout = 120.0
        try:
            for scenario in SCENARIOS:
                before, _ = alias_state(control.client("lambda"), function, "live")
                final = run_release(control, scenario, timeout=timeout, out=out)
                after, weights = alias_state(control.client("lambda"), function, "live")
                expected_live = final.get("candidate_version") if scenario.live_after == "candidate" else before
                print(f"   live alias: version {before} -> {after}"
                      + (f" (weights left: {weights})" if weights else ""), file=out)
                if final.get("status") != scenario.expect_status:
                    failures.append(f"{scenario.name}: ended {final.get('status')}, expected {scenario.expect_status}")
                if after != expected_live or weights:
                    failures.append(f"{scenario.name}: live alias is {after} {weights or ''}, expected {expected_live}")
        finally:
            traffic.stop()
        print("\nlive traffic served during the demo (by executed version):", file=out)
        for v, counts in sorted(traffic.stats.items()):
            print(f"   version {v}: {counts}", file=out)
        print("\nRelease ledger:", file=out)
        print(format_table(list(reversed(control.ledger().list_releases(limit=20)))), file=out)
    if failures:
        print("\nDEMO FAILED:\n  " + "\n  ".join(failures), file=out)
        return 1
    print("\nDemo OK: promoted, promoted, gate failed, rolled back - live alias exactly as expected.", file=out)
    return 0
