"""Drift profiles, the per-feature rules, baselines from an evaluation, capture records and the report."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from modelgate.monitor import capture, drift
from modelgate.monitor.baseline import build_baseline, evaluation_records
from modelgate.monitor.policy import CapturePolicy, DriftPolicy, MonitoringPolicy
from modelgate.monitor.drift_report import render

POLICY = DriftPolicy(enabled=True, min_samples=50, categorical_inputs=["locale"])
QUESTIONS = ["How do I reset my password?", "Can I export my notes as PDF?", "How do I change my email address?",
             "Is there a family plan?", "How do I delete my account?"]
SHIFTED = ["Wie kann ich meine Rechnung herunterladen?", "Mon paiement a échoué, que faire ?",
           "Warum wurde meine Karte abgelehnt?", "Où trouver ma facture ?"]


def records(n: int, *, seed: int, questions=QUESTIONS, locales=("en-GB", "en-US", "de-DE"), refusal_rate=0.05,
            latency=(40.0, 8.0)) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        q = rng.choice(questions)
        refused = rng.random() < refusal_rate
        answer = "I don't know." if refused else "Go to Settings > Account. " * rng.randint(1, 4)
        out.append({"inputs": {"question": q, "locale": rng.choice(locales)}, "output": answer,
                    "input_tokens": 20 + len(q) // 4, "output_tokens": len(answer) // 4,
                    "latency_ms": max(1.0, rng.gauss(*latency)), "refusal": refused, "error": None})
    return out


def test_the_same_traffic_is_no_drift():
    base = drift.profile(records(400, seed=1), POLICY)
    now = drift.profile(records(300, seed=2), POLICY)
    verdict, checks = drift.compare(base, now, POLICY)
    assert verdict == "no_drift", [c.reason for c in checks if c.result != "ok"]
    assert {c.feature for c in checks} >= {"input.locale", "refusal", "output_length", "request_embedding"}


def test_a_new_kind_of_question_and_locale_is_drift_and_says_where():
    base = drift.profile(records(400, seed=1), POLICY)
    now = drift.profile(records(300, seed=3, questions=SHIFTED, locales=("fr-FR", "de-DE"), refusal_rate=0.6), POLICY)
    verdict, checks = drift.compare(base, now, POLICY)
    assert verdict == "drift"
    drifted = {c.feature for c in checks if c.result == "drift"}
    assert {"input.locale", "refusal", "request_embedding"} <= drifted
    locale = next(c for c in checks if c.feature == "input.locale")
    assert "new: fr-FR" in locale.reason and locale.statistics["chi2_p"] < POLICY.chi2_p_value
    assert "drift in" in drift.summary(verdict, checks, now.records)


def test_too_little_data_is_insufficient_never_no_drift():
    base = drift.profile(records(400, seed=1), POLICY)
    now = drift.profile(records(20, seed=2), POLICY)
    verdict, checks = drift.compare(base, now, POLICY)
    assert verdict == "insufficient"
    assert all(c.result == "insufficient" for c in checks)
    assert "too few" in checks[0].reason


def test_significant_but_immaterial_is_not_drift():
    # a small latency shift: KS finds it with this many values, PSI says it does not matter
    base = drift.profile(records(4000, seed=1, latency=(40.0, 8.0)), POLICY)
    now = drift.profile(records(4000, seed=2, latency=(41.5, 8.0)), POLICY)
    _, checks = drift.compare(base, now, POLICY)
    latency = next(c for c in checks if c.feature == "latency_ms")
    assert latency.statistics["ks_p"] < POLICY.ks_p_value and latency.statistics["psi"] < POLICY.psi_threshold
    assert latency.result == "ok"


def test_failed_requests_are_left_out_of_the_profile():
    rows = records(60, seed=1) + [{"inputs": {"question": "x"}, "error": "ModelNotConfigured"}] * 40
    assert drift.profile(rows, POLICY).records == 60


def test_centroids_of_different_embedding_models_are_not_compared():
    base = drift.profile(records(200, seed=1), POLICY, embedding_model="amazon.titan-embed-text-v2:0")
    now = drift.profile(records(200, seed=2), POLICY)
    _, checks = drift.compare(base, now, POLICY)
    assert next(c for c in checks if c.kind == "embedding").result == "insufficient"


def test_baseline_from_the_evaluation_has_no_latency_and_keeps_the_scores():
    report = {"results": [
        {"side": "candidate", "case_id": f"c{i}", "score": 1.0 if i % 4 else 0.0, "latency_ms": 900.0,
         "output": "I don't know." if i % 10 == 0 else "Reset password via the link", "input_tokens": 30,
         "output_tokens": 9, "inputs": {"question": QUESTIONS[i % 5], "locale": "en-GB"}, "scorer": "contains"}
        for i in range(60)
    ] + [{"side": "live", "case_id": "c0", "score": 0.0, "latency_ms": 1.0, "output": "x"}]}
    assert len(evaluation_records(report)) == 60
    base = build_baseline(service="s", release_id="r", version="3", report=report,
                          canary_records=[{**r, "version": "3"} for r in records(30, seed=5)]
                          + [{**r, "version": "2"} for r in records(30, seed=6)],
                          monitoring=MonitoringPolicy(), now=datetime.now(UTC))
    assert base.sources == {"evaluation": 60, "canary": 30}
    assert len(base.profile.numeric["latency_ms"]) == 30  # the canary's own, never the evaluation's
    assert base.scores["cases"] == 60 and base.scores["mean_score"] == pytest.approx(0.75)
    assert base.scores["refusal_rate"] == pytest.approx(0.1)


def test_capture_records_are_redacted_cut_and_batched_into_one_object_per_batch():
    policy = CapturePolicy(enabled=True, sample_rate=1.0, max_field_chars=16, redact=["email"], batch_records=3)
    when = datetime(2026, 11, 30, 9, 5, tzinfo=UTC)
    record = capture.build_record(
        policy, service="s", version="4", when=when,
        event={"inputs": {"question": "a very long question indeed", "email": "x@y.z"}},
        response={"output": "an answer", "usage": {"input_tokens": 3, "output_tokens": 2}, "cost_usd": 0.1},
        latency_ms=12.3456, refusal=False, schema_valid=None, error=None,
    )
    assert record["inputs"] == {"question": "a very long ques", "email": capture.REDACTED}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bkt")
        buffer = capture.CaptureBuffer(rng=random.Random(1))
        keys = [buffer.add(policy, {**record, "ts": (when + timedelta(seconds=i)).isoformat()}, s3, "bkt", when)
                for i in range(7)]
        assert [k is not None for k in keys] == [False, False, True, False, False, True, False]
        assert keys[2].startswith("capture/s/4/2026/11/30/09/20261130T090500Z-")
        assert buffer.pending() == 1 and buffer.puts == 2
        buffer.flush(s3, "bkt", when)
        window = capture.read_window(s3, "bkt", "s", when, when + timedelta(minutes=1))
        assert len(window) == 7 and capture.versions(s3, "bkt", "s") == ["4"]
        assert capture.read_window(s3, "bkt", "s", when + timedelta(seconds=5), when + timedelta(hours=2)) == window[5:]


def test_sampling_follows_the_rate_and_is_off_by_default():
    buffer = capture.CaptureBuffer(rng=random.Random(7))
    assert not any(buffer.sampled(CapturePolicy()) for _ in range(100))
    share = sum(buffer.sampled(CapturePolicy(enabled=True, sample_rate=0.25)) for _ in range(4000)) / 4000
    assert share == pytest.approx(0.25, abs=0.03)


def test_drift_check_without_capture_is_refused_at_registration():
    with pytest.raises(ValueError, match="enable capture"):
        MonitoringPolicy(drift=DriftPolicy(enabled=True))


def test_report_draws_each_shared_feature_and_escapes_traffic():
    rows = records(200, seed=1)
    rows[0]["inputs"]["locale"] = "<script>alert(1)</script>"
    base = build_baseline(service="s", release_id="r", version="3", report={"results": []},
                          canary_records=[{**r, "version": "3"} for r in rows], monitoring=MonitoringPolicy(
                              capture=CapturePolicy(enabled=True), drift=POLICY), now=datetime.now(UTC))
    window = drift.profile(records(200, seed=2), POLICY)
    outcome, checks = drift.compare(base.profile, window, POLICY)
    verdict = drift.DriftVerdict(service="s", version="3", release_id="r", verdict=outcome, window_start="a",
                                 window_end="b", records=window.records, checks=checks,
                                 summary=drift.summary(outcome, checks, window.records))
    page = render(verdict, base, window)
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert page.count("<svg") == len(set(base.profile.numeric) & set(window.numeric)) + len(
        set(base.profile.categorical) & set(window.categorical))
    assert json.loads(drift.dumps(verdict))["verdict"] == outcome
