"""The drift baseline, built by the monitor function after Promote asked for it (task baseline),
the drift check while it is not built yet, and the capped reads of the monitoring data."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from modelgate.adapters import clients as aws
from modelgate.adapters.s3 import MAX_BASELINE_BYTES, MAX_CAPTURE_BATCH_BYTES
from modelgate.contract import EvaluationSummary
from modelgate.evaluation.comparison import CANDIDATE, CaseResult, build_report
from modelgate.monitor import baseline as baselines
from modelgate.monitor import capture, check
from modelgate.monitor.baseline import BaselineRequest, BaselineUnavailable, baseline_key, build_for_release
from modelgate.monitor.dashboard import dashboard_name
from modelgate.monitor.journal import Journal
from modelgate.monitor.policy import CapturePolicy, DriftPolicy, MonitoringPolicy
from modelgate.pipeline.deps import Deps
from modelgate.policy import ReleasePolicy
from modelgate.settings import MonitorSettings

SERVICE, BUCKET = "support-bot", "artefacts"
RELEASE = "support-bot-abc1234def0-0123456789"
CANARY_START = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
PROMOTED_AT = CANARY_START + timedelta(minutes=30)
MONITORING = MonitoringPolicy(
    capture=CapturePolicy(enabled=True, sample_rate=1.0),
    drift=DriftPolicy(enabled=True, categorical_inputs=["locale"], text_inputs=["question"]),
)
MONITOR_APP = Path(__file__).resolve().parents[2] / "functions" / "monitor" / "app.py"


def monitor_deps(world) -> Deps:
    s = world.settings
    settings = MonitorSettings(
        LEDGER_TABLE=s.ledger_table, ARTIFACT_BUCKET=s.artifact_bucket, SERVICES_PREFIX=s.services_prefix,
        APPROVAL_TOPIC_ARN=s.approval_topic_arn, STACK_NAME=s.stack_name, ALERT_TOPIC_ARN=s.approval_topic_arn,
        MONITOR_FUNCTION_NAME="test-monitor", ATTEST_FUNCTION_NAME="test-attest",
    )
    return Deps(settings, world.client, world.ledger)


def captured(world, version: str, at: datetime, n: int, locale: str = "en-GB") -> str:
    """A batch of ``n`` captured requests of ``version``, the first at ``at`` (one a minute)."""
    records = [{"ts": (at + timedelta(minutes=i)).isoformat(), "service": SERVICE, "version": version,
                "inputs": {"question": f"how do I do thing {i}?", "locale": locale}, "output": "Like so.",
                "latency_ms": 40.0 + i, "input_tokens": 9, "output_tokens": 3, "refusal": False, "error": None}
               for i in range(n)]
    key = capture.capture_key(SERVICE, version, at)
    body = "".join(json.dumps(r) + "\n" for r in records)
    world.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    return key


def promoted_with_capture(world, *, cases: int = 12) -> BaselineRequest:
    """Release RELEASE promoted version 2 over 1 after an evaluation of ``cases`` cases and a
    canary from CANARY_START to PROMOTED_AT; the service captures its traffic. Returns the
    request Promote made."""
    world.register(ReleasePolicy(monitoring=MONITORING))
    world.service_function()
    world.publish(RELEASE)
    world.deps.lambda_.update_alias(FunctionName=f"test-svc-{SERVICE}", Name="live", FunctionVersion="2")
    results = [CaseResult(side=CANDIDATE, case_id=f"case-{i:02d}", score=1.0, latency_ms=10.0, output="yes",
                          expected="yes", inputs={"question": f"q{i}", "locale": "en-US"}) for i in range(cases)]
    report = build_report(results)
    key = f"reports/{SERVICE}/{RELEASE}/evaluation.json"
    put = world.client("s3").put_object(Bucket=BUCKET, Key=key, Body=report.model_dump_json().encode())
    summary = EvaluationSummary(**report.summary(), report_key=key, report_version=put["VersionId"],
                                dataset_key="datasets/support-bot/dataset.jsonl", dataset_version="dv1", shards=1,
                                baseline="live")
    world.ledger.receive(RELEASE, "uploaded", service=SERVICE, commit="abc1234def0",
                         artifact={"bucket": BUCKET, "key": "k", "version_id": "v"})
    world.ledger.record(RELEASE, "Promoted", "promoted", candidate_version="2", live_version="1",
                        evaluation=summary, canary_started_at=CANARY_START.isoformat())
    return BaselineRequest(release_id=RELEASE, version="2", report_key=key, report_version=put["VersionId"],
                           canary_started_at=CANARY_START, promoted_at=PROMOTED_AT)


def baseline_events(world) -> list[dict]:
    return Journal(world.ledger.table).events(SERVICE, kind="baseline")


# ---------------------------------------------------------------------- the task
def test_the_baseline_is_built_from_the_evaluation_and_the_canary_window_then_pointed_at_and_journalled(world):
    # Given a promoted release, with its canary's traffic captured, and traffic outside that window
    request = promoted_with_capture(world)
    captured(world, "2", CANARY_START + timedelta(minutes=1), 10)  # the canary, on the candidate
    captured(world, "2", PROMOTED_AT + timedelta(minutes=5), 7, locale="ja-JP")  # live after the promotion
    captured(world, "1", CANARY_START + timedelta(minutes=1), 5)  # stable's share of the canary's traffic
    # When the monitor builds its baseline
    result = build_for_release(monitor_deps(world), SERVICE, request)
    # Then it is built from the evaluation's candidate calls and the canary's own records only
    key = baseline_key(SERVICE, RELEASE)
    assert result["status"] == "built" and result["baseline_key"] == key
    assert result["sources"] == {"evaluation": 12, "canary": 10}
    stored = baselines.load(world.client("s3"), BUCKET, key)
    assert (stored.release_id, stored.version, stored.created_at) == (RELEASE, "2", PROMOTED_AT.isoformat())
    assert set(stored.profile.categorical["input.locale"]) == {"en-US", "en-GB"}
    # And the release's record points at it; its status is untouched
    record = world.ledger.get(RELEASE)
    assert (record["baseline_key"], record["baseline_sources"]) == (key, {"evaluation": 12, "canary": 10})
    assert record["baseline_built_at"] and not record.get("baseline_error") and record["status"] == "Promoted"
    # And the monitoring journal says so (modelgate status shows it)
    [event] = baseline_events(world)
    assert event["details"]["status"] == "built" and event["details"]["release_id"] == RELEASE
    assert "built from 12 evaluation, 10 canary records" in event["summary"]


def test_a_second_baseline_task_for_the_same_release_is_a_no_op(world):
    request = promoted_with_capture(world)
    deps = monitor_deps(world)
    build_for_release(deps, SERVICE, request)
    # When Lambda delivers the same asynchronous event again (or Promote asked twice)
    again = build_for_release(deps, SERVICE, request)
    # Then nothing is rebuilt or rewritten, and nothing more is journalled
    assert again["status"] == "exists" and again["baseline_key"] == baseline_key(SERVICE, RELEASE)
    versions = world.client("s3").list_object_versions(Bucket=BUCKET, Prefix=baseline_key(SERVICE, RELEASE))
    assert len(versions["Versions"]) == 1
    assert len(baseline_events(world)) == 1


def test_a_baseline_build_that_raises_is_journalled_and_leaves_the_release_promoted(world, monkeypatch):
    # Given a promoted release whose baseline build fails (the profile raises)
    request = promoted_with_capture(world)

    def broken(**_kwargs):
        raise RuntimeError("the profile could not be computed")

    monkeypatch.setattr(baselines, "build_baseline", broken)
    # When the monitor builds its baseline / Then the task does not raise; it says it failed, and why
    result = build_for_release(monitor_deps(world), SERVICE, request)
    assert result["status"] == "failed" and result["error"] == "RuntimeError: the profile could not be computed"
    # And the journal holds the failure, the release's record the reason
    [event] = baseline_events(world)
    assert event["details"]["status"] == "failed"
    assert "not built: RuntimeError: the profile could not be computed" in event["summary"]
    record = world.ledger.get(RELEASE)
    assert record["baseline_error"] == "RuntimeError: the profile could not be computed"
    # And the release is still promoted, live still on its version, and no baseline was written
    assert record["status"] == "Promoted" and not record.get("baseline_key")
    assert world.alias() == ("2", {})
    assert "Contents" not in world.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=baseline_key(SERVICE, RELEASE))
    # And once the cause is gone, a new request builds it and clears the error
    monkeypatch.undo()
    assert build_for_release(monitor_deps(world), SERVICE, request)["status"] == "built"
    assert world.ledger.get(RELEASE)["baseline_error"] is None


def test_a_request_that_does_not_match_the_release_is_refused_and_journalled(world):
    request = promoted_with_capture(world)
    deps = monitor_deps(world)
    # A version the release did not promote, and another report
    wrong = request.model_copy(update={"version": "7", "report_key": f"reports/{SERVICE}/other/evaluation.json"})
    result = build_for_release(deps, SERVICE, wrong)
    assert result["status"] == "failed"
    assert "its candidate is version 2, not 7" in result["error"] and "its evaluation report is" in result["error"]
    record = world.ledger.get(RELEASE)
    assert not record.get("baseline_key") and not record.get("baseline_error")  # the release's own record untouched
    # A release the ledger does not hold: journalled, and no record is made up for it
    ghost = request.model_copy(update={"release_id": "support-bot-0000000-ghost"})
    result = build_for_release(deps, SERVICE, ghost)
    assert result["error"] == "BaselineUnavailable: release support-bot-0000000-ghost is not in the ledger"
    assert world.ledger.get("support-bot-0000000-ghost") is None
    assert [e["details"]["status"] for e in baseline_events(world)] == ["failed", "failed"]


def test_an_oversize_capture_batch_fails_the_build_naming_the_object_and_the_cap(world):
    request = promoted_with_capture(world)
    key = capture.capture_key(SERVICE, "2", CANARY_START + timedelta(minutes=2))
    world.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"{}\n" * (MAX_CAPTURE_BATCH_BYTES // 3 + 1))
    result = build_for_release(monitor_deps(world), SERVICE, request)
    assert result["status"] == "failed"
    assert result["error"].startswith(f"CaptureUnreadable: a captured batch (s3://{BUCKET}/{key} version ")
    assert f"is {MAX_CAPTURE_BATCH_BYTES + 2:,} bytes; at most {MAX_CAPTURE_BATCH_BYTES:,} are read" in result["error"]
    assert world.ledger.get(RELEASE)["status"] == "Promoted"


# ---------------------------------------------------------------------- the handler
def _monitor_handler():
    spec = importlib.util.spec_from_file_location("monitor_app_under_test", MONITOR_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the task model's annotations through it
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_the_monitor_task_takes_a_baseline_request_and_refuses_a_bad_one():
    app = _monitor_handler()
    event = {"task": "baseline", "service": SERVICE, "requested_by": "promote",
             "baseline": {"release_id": RELEASE, "version": "2", "report_key": "reports/x/evaluation.json",
                          "report_version": "v1", "canary_started_at": None,
                          "promoted_at": "2026-11-30T10:30:00+00:00"}}
    task = app.MonitorTask.model_validate(event)
    assert task.baseline.promoted_at == PROMOTED_AT
    with pytest.raises(ValidationError, match="version"):
        app.MonitorTask.model_validate({**event, "baseline": {**event["baseline"], "version": "$LATEST"}})
    with pytest.raises(ValidationError, match="extra"):
        app.MonitorTask.model_validate({**event, "baseline": {**event["baseline"], "bucket": "elsewhere"}})
    with pytest.raises(ValidationError, match="goes with task baseline, and only with it"):
        app.MonitorTask.model_validate({"task": "baseline", "service": SERVICE})
    with pytest.raises(ValidationError, match="goes with task baseline, and only with it"):
        app.MonitorTask.model_validate({**event, "task": "reevaluate"})


def test_the_monitor_builds_the_baseline_then_writes_the_service_dashboard_again(world, monkeypatch):
    # Given a promoted release, and the monitor function's environment
    request = promoted_with_capture(world)
    s = world.settings
    for name, value in {"LEDGER_TABLE": s.ledger_table, "ARTIFACT_BUCKET": s.artifact_bucket,
                        "SERVICES_PREFIX": s.services_prefix, "APPROVAL_TOPIC_ARN": s.approval_topic_arn,
                        "STACK_NAME": s.stack_name, "ALERT_TOPIC_ARN": s.approval_topic_arn,
                        "MONITOR_FUNCTION_NAME": "test-monitor", "ATTEST_FUNCTION_NAME": "test-attest"}.items():
        monkeypatch.setenv(name, value)
    app = _monitor_handler()
    context = SimpleNamespace(function_name="test-monitor", function_version="$LATEST", memory_limit_in_mb=1024,
                              invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:test-monitor",
                              aws_request_id="req-1")
    # When Lambda delivers Promote's request
    aws.reset_clients()
    try:
        result = app.lambda_handler({"task": "baseline", "service": SERVICE, "requested_by": "promote",
                                     "baseline": request.model_dump(mode="json")}, context)
    finally:
        aws.reset_clients()
    # Then the baseline is built, and the service's dashboard shows it among the latest events
    assert result["status"] == "built" and result["dashboard"] == dashboard_name(s.stack_name, SERVICE)
    body = json.loads(world.client("cloudwatch").get_dashboard(DashboardName=result["dashboard"])["DashboardBody"])
    assert "baseline: baseline of version 2 (release " in body["widgets"][-1]["properties"]["markdown"]


# ---------------------------------------------------------------------- the drift check meanwhile
def test_the_drift_check_says_insufficient_while_the_baseline_is_not_built_yet(world):
    # Given a promoted release whose baseline Promote asked for, not built yet
    promoted_with_capture(world)
    world.ledger.set_fields(RELEASE, baseline_requested_at="2026-11-30T10:30:01.000+00:00")
    # When the drift check runs
    result = check.run(world.deps, SERVICE, monitor_function_name=None, now=PROMOTED_AT + timedelta(hours=1))
    # Then it is insufficient, saying why, never an error and never "no drift"
    assert result["verdict"] == "insufficient"
    assert result["summary"] == (f"insufficient: nothing to compare with: release {RELEASE}'s baseline is not built "
                                 "yet (asked for at 2026-11-30T10:30:01.000+00:00)")


def test_the_drift_check_says_insufficient_for_an_oversize_baseline_naming_it_and_the_cap(world):
    request = promoted_with_capture(world)
    key = baseline_key(SERVICE, request.release_id)
    world.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b" " * (MAX_BASELINE_BYTES + 1))
    world.ledger.set_fields(RELEASE, baseline_key=key)
    result = check.run(world.deps, SERVICE, monitor_function_name=None, now=PROMOTED_AT + timedelta(hours=1))
    assert result["verdict"] == "insufficient"
    assert f"the drift baseline (s3://{BUCKET}/{key} version " in result["summary"]
    assert f"is {MAX_BASELINE_BYTES + 1:,} bytes; at most {MAX_BASELINE_BYTES:,} are read" in result["summary"]
    with pytest.raises(BaselineUnavailable, match="nothing of it was read"):
        baselines.load(world.client("s3"), BUCKET, key)
