"""`make demo`: four releases of the sample service on the local runtime.

  v1  first release of support-bot       -> approved, canary, promoted (becomes live)
  v2  better prompt                       -> passes the gate, approved, canary, promoted
  v3  worse prompt                        -> fails the gate; live unchanged
  v4  passes the gate, errors in live use -> its canary alarm fires from real errors of
                                             the candidate -> rolled back; live unchanged
  v5  passes the gate, fails 1 live request
      in 21 (a 50% canary for 30 minutes) -> too few errors for the alarm; the judge finds
                                             the candidate's error rate significantly worse
                                             than stable's -> rolled back; live unchanged

Live traffic comes from a traffic generator calling the `live` alias all along, so the
alarm in v4 fires because 10% of real requests reach a candidate that fails them.
Exits non-zero if any release ends otherwise.

The story does not depend on how fast the machine is: traffic is paced on the runtime's
nominal clock (request i at start + i / rate, see ``TrafficGenerator``), one request every
3 nominal seconds, so v5's failing request (1 of the 21 in traffic.jsonl) recurs every 63 s:
never twice in one 60 s alarm period, so its errors alarm (2 errors in a minute) cannot fire
whichever way the alias routes. Its 30-minute 50% step puts about 27 of them in the judge's
window; the judge needs 5 on the candidate (Fisher's exact test, p <= 0.05, with stable's
~280 calls error-free), and routing at random by weight misses that with probability
P(Binomial(27, 0.5) <= 4) ~ 0.0002, on any machine and at any load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from modelgate_harness.driver import EXAMPLES


@dataclass
class Scenario:
    name: str
    folder: str
    expect_status: str
    approve: bool
    live_after: str  # "candidate" or "unchanged"
    expect_error: str | None = None  # what ended it, when it failed
    policy: dict | None = None  # the operator's policy change before it (update_policy)


# Weighted aliases route at random per request, as on AWS; the demo seeds the draws so that
# every run tells the same story.
DEMO_SEED = 5

SCENARIOS = [
    Scenario("v1 first release", "v1", "Promoted", True, "candidate"),
    Scenario("v2 better prompt", "v2", "Promoted", True, "candidate"),
    Scenario("v3 worse prompt", "v3", "GateFailed", True, "unchanged", "GateFailed"),
    Scenario("v4 breaks live requests", "v4", "RolledBack", True, "unchanged", "CanaryAlarm"),
    Scenario("v5 breaks a few live requests", "v5", "RolledBack", True, "unchanged", "CanaryRegression",
             policy={"canary_weight": 0.5, "bake_seconds": 1800}),
]
HANG_GUARD_SECONDS = 3600
# Live requests per nominal second (one every 3 s): v5's failing request recurs every 63 s,
# once per 60 s alarm period at most (see the module docstring).
TRAFFIC_PER_NOMINAL_SECOND = 1 / 3


def fake_commit(label: str) -> str:
    return hashlib.sha1(f"support-bot {label}".encode()).hexdigest()


def run_release(driver, scenario: Scenario, *, out=sys.stdout) -> dict:
    if scenario.policy:
        from modelgate_harness.control import update_policy

        update_policy(driver.control, "support-bot", **scenario.policy)
    run = driver.submit(EXAMPLES / scenario.folder, commit=fake_commit(scenario.folder))
    print(f"\n== {scenario.name}\n   release {run.release_id}", file=out)
    if scenario.policy:
        print(f"   policy changed by the operator first: {json.dumps(scenario.policy)}", file=out)
    if driver.wait_for_decision_point(run):
        decision = "approve" if scenario.approve else "reject"
        decided = driver.decide(run, decision, f"demo: {decision}")
        print(f"   {decided['status'].lower()} by {decided['approval']['approver']}", file=out)
    driver.finish(run)
    print(f"   path: {' -> '.join(run.path)}", file=out)
    print(f"   execution {run.execution['status']}; ledger status {run.status}", file=out)
    if run.record.get("reason"):
        print(f"   why: {run.record['reason']}", file=out)
    evaluation = run.record.get("evaluation") or {}
    report = evaluation.get("report_html_key") or evaluation.get("report_key")
    if report:
        print(f"   evaluation report: s3://{driver.control.bucket}/{report}", file=out)
    for criterion in (run.record.get("gate") or {}).get("criteria", []):
        if criterion["verdict"] in ("fail", "inconclusive"):
            print(f"   gate {criterion['verdict']}: {criterion['name']}: {criterion['message']}", file=out)
    return run.record


def quiet_logs() -> None:
    """Keep the demo's output to the releases: handlers log at WARNING and above.

    (On AWS each function is its own process with its own log level; here they share one
    process and one Powertools logger, so the level is set once for all of them.)
    """
    for name, level in (("modelgate", logging.WARNING), ("moto", logging.ERROR), ("moto.stepfunctions", logging.CRITICAL), ("botocore", logging.WARNING)):
        logging.getLogger(name).setLevel(level)


def run_demo(*, time_factor: float = 0.005, template_path: Path = Path("template.yaml"), out=sys.stdout,
             verbose: bool = False) -> int:
    from modelgate_harness.control import format_table
    from modelgate_harness.driver import ReleaseDriver, sample_stack
    from modelgate_harness.traffic import TrafficGenerator

    from modelgate import observability  # noqa: F401  (builds the shared logger first)
    from modelgate.adapters.lambda_alias import alias_state

    if not verbose:
        quiet_logs()
    requests = [json.loads(line) for line in (EXAMPLES / "traffic.jsonl").read_text().splitlines() if line.strip()]
    failures = []
    with sample_stack(template_path, time_factor=time_factor, seed=DEMO_SEED, ApprovalMode="manual") as (local, control):
        function = local.stack.outputs["SampleServiceFunctionName"]
        print(f"stack {local.stack_name} on the local runtime (time factor {time_factor})", file=out)
        traffic = TrafficGenerator(
            lambda_client=control.client("lambda"), function_name=function, qualifier="live",
            # Paced on the runtime's clock, so a busy machine changes nothing (module docstring).
            requests=[{"inputs": r} for r in requests], rate_per_second=TRAFFIC_PER_NOMINAL_SECOND,
            clock=local.clock,
        )
        traffic.start()
        # The driver's timeout guards against a hang only: nominal time, not the machine's
        # speed, decides every outcome, so a loaded machine just takes longer.
        driver = ReleaseDriver(control, timeout=HANG_GUARD_SECONDS)
        try:
            for scenario in SCENARIOS:
                before, _ = alias_state(control.client("lambda"), function, "live")
                final = run_release(driver, scenario, out=out)
                after, weights = alias_state(control.client("lambda"), function, "live")
                expected_live = final.get("candidate_version") if scenario.live_after == "candidate" else before
                print(f"   live alias: version {before} -> {after}"
                      + (f" (weights left: {weights})" if weights else ""), file=out)
                if final.get("status") != scenario.expect_status:
                    failures.append(f"{scenario.name}: ended {final.get('status')}, expected {scenario.expect_status}")
                if scenario.expect_error and final.get("error") != scenario.expect_error:
                    failures.append(f"{scenario.name}: ended by {final.get('error')}, expected {scenario.expect_error}")
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
    print("\nDemo OK: promoted, promoted, gate failed, rolled back by an alarm, rolled back by the judge"
          " - the live alias exactly as expected after each.", file=out)
    return 0
