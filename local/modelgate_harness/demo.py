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
  then the provider changes what the model id answers (nothing in the release changes): the
  scheduled re-evaluation of live (EventBridge Scheduler, nominal time) finds a paired
  regression against the evaluation that promoted v2 and, per the sample policy, alerts and
  rolls live back to v1

Every HTML report the run wrote (evaluations, re-evaluations, drift reports) is saved to
``build/demo-reports/`` with an index.html, and the paths are printed (the bucket is in
memory and gone when the demo ends).

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
import html
import json
import logging
import shutil
import sys
import time
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
REPORTS_DIR = Path("build/demo-reports")
# How often the demo's stack re-evaluates live (nominal; the template's default is daily).
REEVALUATION_SCHEDULE = "rate(30 minutes)"
PROVIDER_CHANGE_SHARE = 0.5  # of questions the changed provider answers differently (bedrock.degraded)

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


def save_report(control, key: str, reports: Path) -> Path:
    """The bucket's HTML report ``key``, saved under ``reports`` (same relative path)."""
    body = control.client("s3").get_object(Bucket=control.bucket, Key=key)["Body"].read()
    path = reports / key.removeprefix("reports/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def save_all_reports(control, reports: Path) -> list[Path]:
    """Every HTML report under reports/ in the bucket (evaluations, re-evaluations, drift), and an index.html."""
    s3 = control.client("s3")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=control.bucket, Prefix="reports/")
            for o in page.get("Contents", []) if o["Key"].endswith(".html")]
    saved = [save_report(control, key, reports) for key in sorted(keys)]
    releases = {r.get("release_id"): r for r in control.ledger().list_releases(limit=200)}
    rows = []
    for path in saved:
        relative = path.relative_to(reports).as_posix()
        parts = relative.split("/")
        record = releases.get(parts[1]) if len(parts) > 2 else None
        if record is not None:
            what = (f"evaluation of release {parts[1]} (version {record.get('candidate_version', '?')}): "
                    f"{record.get('status', '?')}")
        elif parts[1:2] == ["monitor"]:
            what = "scheduled re-evaluation of live: " + parts[-1].removesuffix(".html")
        elif parts[1:2] == ["drift"]:
            what = "scheduled drift check of live, window ending " + parts[-1].removesuffix(".html")
        else:
            what = "report"
        rows.append(f'<tr><td><a href="{html.escape(relative)}">{html.escape(parts[-1])}</a></td>'
                    f"<td>{html.escape(what)}</td></tr>")
    (reports / "index.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Modelgate demo reports</title>'
        "<style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem}"
        "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #d8dde6;padding:.35rem .5rem;"
        "text-align:left}th{background:#f3f5f9}</style></head><body>"
        f"<h1>Modelgate demo: every report</h1><p>{len(saved)} report(s) the demo's releases and scheduled checks "
        "wrote to the artefact bucket, saved here before the in-memory bucket went away.</p>"
        f"<table><thead><tr><th>report</th><th>what</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "</body></html>", encoding="utf-8")
    return saved


def run_release(driver, scenario: Scenario, *, out=sys.stdout, reports: Path | None = None) -> dict:
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
    if report and reports is not None and report.endswith(".html"):
        print(f"   evaluation report: {save_report(driver.control, report, reports)}", file=out)
    elif report:
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


def provider_change(local, control, function: str, v1: dict, v2: dict, *, out=sys.stdout,
                    timeout: float = 600.0) -> list[str]:
    """The provider changes what v2's model id answers; the scheduled re-evaluation must catch it and,
    per the sample policy, roll live back to v1. Returns what went otherwise."""
    from modelgate_emulator.bedrock import degraded
    from modelgate_harness.polling import wait_until

    from modelgate.adapters.lambda_alias import alias_state
    from modelgate.monitor.journal import Journal

    model = str(v2.get("model_id") or "")
    print(f"\n== provider-side change: {model} now answers {PROVIDER_CHANGE_SHARE:.0%} of questions differently "
          "(same model id, nothing released)", file=out)
    journal = Journal(control.ledger().table)
    changed_at = time.time()
    local.foundation_models.change_answers(model, degraded(PROVIDER_CHANGE_SHARE))
    try:
        def caught() -> dict | None:
            with control.acting("operator"):
                events = journal.events("support-bot", kind="reevaluation", limit=50)
            return next((e for e in events if e["details"].get("verdict") == "regression"), None)

        def rolled_back() -> bool:
            with control.acting("operator"):
                return any(e["details"].get("action") == "rollback"
                           for e in journal.events("support-bot", kind="action", limit=10))

        found = wait_until(caught, timeout, "the scheduled re-evaluation to catch the provider-side change")
        wait_until(rolled_back, timeout, "the policy's rollback action")
    finally:
        local.foundation_models.revert_answers(model)
    print(f"   caught by the scheduled re-evaluation ({time.time() - changed_at:.1f} s real after the change): "
          f"{found['summary']}", file=out)
    with control.acting("operator"):
        actions = journal.events("support-bot", kind="action", limit=10)
    for action in reversed(actions):
        print(f"   action: {action['summary']}", file=out)
    after, weights = alias_state(control.client("lambda"), function, "live")
    print(f"   live alias: version {v2['candidate_version']} -> {after}", file=out)
    failures = []
    if after != v1["candidate_version"] or weights:
        failures.append(f"provider change: live is {after} {weights or ''}, expected v1's {v1['candidate_version']}")
    return failures


# After the releases, live's traffic shifts: a new kind of question (billing) in locales the
# evaluation never saw. The scheduled drift check (hourly, EventBridge Scheduler) must see it.
SHIFTED_TRAFFIC = [
    {"question": "Wie kann ich meine Rechnung als PDF herunterladen?", "locale": "ja-JP"},
    {"question": "Ma carte bancaire a été refusée lors du paiement, pourquoi ?", "locale": "ja-JP"},
    {"question": "Kann ich mein Abonnement pausieren statt es zu kündigen?", "locale": "pt-BR"},
    {"question": "Quels moyens de paiement acceptez-vous pour les factures annuelles ?", "locale": "pt-BR"},
]
SHIFTED_REQUESTS = 160


def drift_phase(local, control, function: str, time_factor: float, *, out) -> list[str]:
    """Shift live's traffic, wait for the next scheduled drift check, print its verdict and alert."""
    from datetime import datetime

    from modelgate_harness.polling import wait_until

    from modelgate.monitor import check

    print(f"\n== traffic shift: {SHIFTED_REQUESTS} requests of a new kind (billing questions, locales ja-JP and "
          "pt-BR) through the live alias", file=out)
    from modelgate.ledger import now_iso

    lam, s3, bucket = control.client("lambda"), control.client("s3"), control.bucket
    shifted_recorded = now_iso()  # the ledger's (and the journal's) own time, to find what came after
    for i in range(SHIFTED_REQUESTS):
        lam.invoke(FunctionName=function, Qualifier="live",
                   Payload=json.dumps({"inputs": SHIFTED_TRAFFIC[i % len(SHIFTED_TRAFFIC)]}).encode())
    shifted_at = local.clock.datetime()

    def after_shift():
        try:
            latest = json.loads(s3.get_object(Bucket=bucket, Key=check.latest_key("support-bot"))["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None
        return latest if datetime.fromisoformat(latest["window_end"]) >= shifted_at else None

    # the schedule is hourly: at most one nominal hour (3600 x factor real seconds) away
    latest = wait_until(after_shift, 3600 * time_factor * 3 + 120, "the next scheduled drift check")
    print(f"   drift check (scheduled, window {latest['window_start'][11:19]}..{latest['window_end'][11:19]} "
          f"nominal): {latest['verdict'].upper()} for version {latest['version']} over {latest['records']} "
          "captured records", file=out)
    for c in latest["checks"]:
        if c["result"] != "ok":
            print(f"     {c['result']:12} {c['feature']:18} {c['reason'][:110]}", file=out)
    print(f"   report: s3://{bucket}/{latest['report_key']}   (`modelgate drift support-bot`)", file=out)
    if latest["verdict"] != "drift":
        return [f"drift: the check after the traffic shift said {latest['verdict']}: {latest['summary']}"]
    from modelgate.monitor.journal import Journal

    journal = Journal(control.ledger().table)

    def alerted():
        with control.acting("operator"):
            events = journal.events("support-bot", kind="action", limit=20)
        return [e for e in events if e["details"].get("trigger") == "drift" and e["details"].get("action") == "alert"
                and e["at"] >= shifted_recorded]

    [alert, *_] = wait_until(alerted, 120, "the policy's on_drift alert, run by the monitor function")
    print(f"   action (monitoring journal): {alert['summary'][:150]}", file=out)
    return []


def run_demo(*, time_factor: float = 0.005, template_path: Path = Path("template.yaml"), out=sys.stdout,
             verbose: bool = False, reports: Path = REPORTS_DIR) -> int:
    from modelgate_harness.control import format_table
    from modelgate_harness.driver import ReleaseDriver, sample_stack
    from modelgate_harness.traffic import TrafficGenerator

    from modelgate import observability  # noqa: F401  (builds the shared logger first)
    from modelgate.adapters.lambda_alias import alias_state

    if not verbose:
        quiet_logs()
    requests = [json.loads(line) for line in (EXAMPLES / "traffic.jsonl").read_text().splitlines() if line.strip()]
    failures = []
    if reports.is_dir():  # this run's reports only: an older run's stay out of its index
        shutil.rmtree(reports)
    reports.mkdir(parents=True, exist_ok=True)
    with sample_stack(template_path, time_factor=time_factor, seed=DEMO_SEED, ApprovalMode="manual",
                      ReevaluationSchedule=REEVALUATION_SCHEDULE) as (local, control):
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
        finals: dict[str, dict] = {}
        try:
            for scenario in SCENARIOS:
                before, _ = alias_state(control.client("lambda"), function, "live")
                final = run_release(driver, scenario, out=out, reports=reports)
                finals[scenario.folder] = final
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
            if finals["v1"].get("status") == "Promoted" and finals["v2"].get("status") == "Promoted":
                failures += provider_change(local, control, function, finals["v1"], finals["v2"], out=out)
        finally:
            traffic.stop()
        failures += drift_phase(local, control, function, time_factor, out=out)
        print("\nlive traffic served during the demo (by executed version):", file=out)
        for v, counts in sorted(traffic.stats.items()):
            print(f"   version {v}: {counts}", file=out)
        print("\nRelease ledger:", file=out)
        print(format_table(list(reversed(control.ledger().list_releases(limit=20)))), file=out)
        saved = save_all_reports(control, reports)
        print(f"\nReports ({len(saved)}), open {reports / 'index.html'}:", file=out)
        for path in saved:
            print(f"   {path}", file=out)
    if failures:
        print("\nDEMO FAILED:\n  " + "\n  ".join(failures), file=out)
        return 1
    print("\nDemo OK: promoted, promoted, gate failed, rolled back by an alarm, rolled back by the judge, rolled back"
          " by the scheduled re-evaluation after a provider-side change - the live alias exactly as expected after each.",
          file=out)
    return 0
