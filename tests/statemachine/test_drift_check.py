"""The data plane end to end on the embedded AWS: a promoted release stores its baseline, live
traffic is captured, the scheduled drift check (EventBridge Scheduler on the clock) finds a
shifted traffic mix, writes its verdict and report, alerts and records the action.

One module-scoped stack and one full release (the suite's time budget)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from conftest import JUMP_WHEN_IDLE, SETUP_BAKE_SECONDS
from modelgate_harness.control import update_policy
from modelgate_harness.driver import ReleaseDriver, sample_stack
from modelgate_harness.polling import wait_until
from modelgate_harness.traffic import TrafficGenerator

from modelgate.monitor import check

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "support-bot"
SERVICE = "support-bot"
TIME_FACTOR = 0.002  # as the other state-machine tests
HANG_GUARD_SECONDS = 900  # a hang guard, no speed limit
SHIFTED = [
    {"question": "Wie kann ich meine Rechnung als PDF herunterladen?", "locale": "ja-JP"},
    {"question": "Ma carte bancaire a été refusée lors du paiement, pourquoi ?", "locale": "ja-JP"},
    {"question": "Kann ich mein Abonnement pausieren statt es zu kündigen?", "locale": "pt-BR"},
    {"question": "Quels moyens de paiement acceptez-vous pour les factures annuelles ?", "locale": "pt-BR"},
]


@pytest.fixture(scope="module")
def promoted():
    with sample_stack(ROOT / "template.yaml", time_factor=TIME_FACTOR, seed=7, jump_when_idle=JUMP_WHEN_IDLE,
                      run_schedules=True) as (local, control):
        # (set-up bakes, as conftest's set-up promotions: 300 nominal s per step, not 900)
        update_policy(control, SERVICE, approval="auto", min_canary_invocations=3, bake_seconds=SETUP_BAKE_SECONDS,
                      post_promotion_watch_seconds=SETUP_BAKE_SECONDS)
        # a week's window: on a loaded machine the nominal clock (500 nominal s per real s here)
        # can carry the shifted requests out of an hour's window before the check runs
        with control.acting("operator"):
            ssm, name = control.client("ssm"), control.outputs["ServicesPrefix"] + SERVICE
            registration = json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])
            registration["policy"]["monitoring"]["drift"]["window_minutes"] = 7 * 1440
            ssm.put_parameter(Name=name, Type="String", Overwrite=True, Value=json.dumps(registration))
        function = local.stack.outputs["SampleServiceFunctionName"]
        requests = [{"inputs": json.loads(line)} for line in (EXAMPLES / "traffic.jsonl").read_text().splitlines() if line]
        traffic = TrafficGenerator(lambda_client=control.client("lambda"), function_name=function, qualifier="live",
                                   requests=requests, rate_per_second=0.3, clock=local.clock)
        traffic.start()
        try:
            run = ReleaseDriver(control, timeout=HANG_GUARD_SECONDS).release(EXAMPLES / "v2", commit="2" * 40,
                                                                              decision=None)
        finally:
            traffic.stop()
        assert run.status == "Promoted", run.record.get("reason")
        yield local, control, run


def test_promotion_stores_the_baseline_beside_the_report_and_points_the_ledger_at_it(promoted):
    local, control, run = promoted
    # Promote asked the monitor function for it (asynchronously); the ledger points at it once built
    assert run.record.get("baseline_requested_at"), run.record
    record = wait_until(lambda: _baseline_done(_release(local, control, run.release_id)), HANG_GUARD_SECONDS,
                        "the baseline's ledger pointer (or why not)")
    key = record["baseline_key"]
    assert key == f"reports/{SERVICE}/{run.release_id}/baseline.json", record.get("baseline_error")
    s3 = local.client("s3")
    baseline = json.loads(s3.get_object(Bucket=control.outputs["ArtifactBucketName"], Key=key)["Body"].read())
    assert baseline["version"] == str(record["candidate_version"])
    assert baseline["sources"]["evaluation"] == 40  # the dataset's cases, candidate side
    # the dataset's locales (and the canary's own traffic, one request of which names none)
    assert {"en-GB", "en-US", "de-DE", "fr-FR"} <= set(baseline["profile"]["categorical"]["input.locale"])
    assert baseline["profile"]["embedding_model"] == "local.hashed-bag-of-words-v1"
    # and the monitoring journal says it was built (`modelgate status` shows it)
    from modelgate.monitor.journal import Journal

    with control.acting("operator"):
        events = Journal(control.ledger().table).events(SERVICE, kind="baseline", limit=10)
    assert [(e["details"]["status"], e["details"]["release_id"]) for e in events] == [("built", run.release_id)]


def _baseline_done(record: dict) -> dict | None:
    """The release's record once its baseline task ended (built: its pointer; failed: why)."""
    return record if record.get("baseline_key") or record.get("baseline_error") else None


def _release(local, control, release_id: str) -> dict:
    from boto3.dynamodb.types import TypeDeserializer

    item = local.client("dynamodb").get_item(TableName=control.outputs["LedgerTableName"],
                                            Key={"pk": {"S": f"RELEASE#{release_id}"}, "sk": {"S": "RELEASE"}})
    return {k: TypeDeserializer().deserialize(v) for k, v in item.get("Item", {}).items()}


def test_the_scheduled_check_finds_a_new_traffic_mix_reports_and_alerts(promoted):
    local, control, run = promoted
    bucket = control.outputs["ArtifactBucketName"]
    s3, lam = local.client("s3"), local.client("lambda")
    function = local.stack.outputs["SampleServiceFunctionName"]
    # When live's traffic shifts to new questions and locales (capture samples half of it)
    for i in range(160):
        lam.invoke(FunctionName=function, Qualifier="live",
                   Payload=json.dumps({"inputs": SHIFTED[i % len(SHIFTED)]}).encode())
    assert any(o["Key"].startswith(f"capture/{SERVICE}/")
               for o in s3.list_objects_v2(Bucket=bucket, Prefix="capture/").get("Contents", []))
    shifted_at = local.clock.datetime()

    # Then the next scheduled check (rate(60 minutes), on the clock) judges it drift
    def verdict():
        try:
            latest = json.loads(s3.get_object(Bucket=bucket, Key=check.latest_key(SERVICE))["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None
        # a check of a window that ends after the shift (one before it saw the canary's own traffic)
        return latest if datetime.fromisoformat(latest["window_end"]) >= shifted_at else None

    latest = wait_until(verdict, HANG_GUARD_SECONDS, "a drift check after the shift")
    assert latest["verdict"] == "drift", latest["summary"]
    drifted = {c["feature"] for c in latest["checks"] if c["result"] == "drift"}
    assert "input.locale" in drifted, latest["summary"]
    embedding = next(c for c in latest["checks"] if c["feature"] == "request_embedding")
    assert embedding["result"] != "insufficient" and "cosine_distance" in embedding["statistics"], embedding
    assert latest["release_id"] == run.release_id
    # with its HTML report beside the verdict
    page = s3.get_object(Bucket=bucket, Key=latest["report_key"])["Body"].read().decode()
    assert "<svg" in page and "ja-JP" in page
    # and the verdict in the monitoring journal, and the policy's on_drift alert run by the monitor
    # function (the drift check's role may only ask it to)
    from modelgate.monitor.journal import Journal

    journal = Journal(control.ledger().table)

    def alerts():
        with control.acting("operator"):
            events = journal.events(SERVICE, kind="action", limit=20)
        return [e for e in events if e["details"].get("trigger") == "drift" and e["details"].get("action") == "alert"]

    [alert, *_] = wait_until(alerts, HANG_GUARD_SECONDS, "the policy's on_drift alert")
    assert alert["details"]["status"] == "done", alert
    with control.acting("operator"):
        [verdict, *_] = [e for e in journal.events(SERVICE, kind="drift", limit=20)
                         if e["details"].get("verdict") == "drift"]
    assert verdict["details"]["release_id"] == run.release_id


def test_modelgate_drift_prints_the_latest_verdict_and_its_report(promoted, monkeypatch, capsys):
    from modelgate_harness import cli

    local, control, run = promoted
    s3 = local.client("s3")

    def about_the_release():  # a scheduled check of the promoted release (whichever test ran before this one)
        try:
            latest = json.loads(s3.get_object(Bucket=control.bucket, Key=check.latest_key(SERVICE))["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None
        return latest if latest["release_id"] == run.release_id else None

    monkeypatch.setattr(cli, "_control", lambda args: cli.with_principal(control, args))

    def printed():  # the command's output, with the verdict it read (none if a check ran meanwhile)
        before = wait_until(about_the_release, HANG_GUARD_SECONDS, "a drift check of the promoted release")
        assert cli.main(["drift", SERVICE]) == 0  # as the operator
        out = capsys.readouterr().out
        return (out, before) if about_the_release() == before else None

    out, latest = wait_until(printed, HANG_GUARD_SECONDS, "the drift command between two scheduled checks")
    assert out.splitlines()[0].startswith(f"{SERVICE} version {latest['version']} (release {run.release_id}): "
                                          f"{latest['verdict']} over {latest['records']} records")
    assert latest["checks"] and all(f" {c['feature']} " in out for c in latest["checks"])
    assert f"report: s3://{control.bucket}/{latest['report_key']}" in out
    assert cli.main(["drift", "no-such-service"]) == 2
    assert "no drift verdict yet" in capsys.readouterr().err
