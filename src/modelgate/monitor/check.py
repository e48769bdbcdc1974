"""The scheduled drift check of one service: live's captured window against its baseline.

EventBridge Scheduler invokes the drift check function with ``{"service": NAME}`` every
its ``AWS::Scheduler::Schedule`` (template.yaml: one per service). Steps:

1. the registration (policy off: nothing to do, said so);
2. the version live serves (the alias), the promoted release that put it there and that
   release's baseline (none: "insufficient", with why; that includes a baseline not built yet,
   since the monitor function builds it after the promotion, monitor/baseline.py);
3. the captured records of that version over the last ``window_minutes``;
4. :func:`modelgate.monitor.drift.compare`, the HTML report, the verdict JSON (and
   ``latest.json``) under ``reports/<service>/drift/``;
5. every verdict's journal entry (kind ``drift``); on a drift verdict, the policy's
   ``on_drift`` actions, run by the monitor function
   (:func:`modelgate.monitor.drift.request_actions`, then ``actions.act``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from modelgate import clock
from modelgate.monitor import baseline as baselines
from modelgate.monitor import capture, drift
from modelgate.monitor.embeddings import embedder_for
from modelgate.monitor.journal import Journal
from modelgate.registry import get_service


def drift_prefix(service: str) -> str:
    return f"reports/{service}/drift/"


def latest_key(service: str) -> str:
    return f"{drift_prefix(service)}latest.json"


def _no_baseline(version: str, release: dict[str, Any] | None) -> str:
    """Why there is no baseline to judge ``version`` against (the release that put it live, if any)."""
    if release is None:
        return f"no promoted release put version {version} live"
    release_id = release.get("release_id")
    if release.get("baseline_error"):
        return f"release {release_id} has no baseline ({release['baseline_error']})"
    if release.get("baseline_requested_at"):  # Promote asked; the monitor function builds it
        return f"release {release_id}'s baseline is not built yet (asked for at {release['baseline_requested_at']})"
    return f"release {release_id} has no baseline (none was asked for)"


def run(
    deps: Any, service: str, *, monitor_function_name: str | None, now: datetime | None = None
) -> dict[str, Any]:
    """One drift check of ``service``; the verdict as stored (or why none was made)."""
    from modelgate.monitor.drift_report import render

    config = get_service(deps.ssm, deps.settings.services_prefix, service)
    policy = config.policy.monitoring.drift
    if not policy.enabled:
        return {"service": service, "skipped": "the service's drift check is off (monitoring.drift.enabled)"}
    now = now or clock.now()
    start = now - timedelta(minutes=policy.window_minutes)
    bucket = deps.settings.artifact_bucket
    version = str(deps.lambda_.get_alias(FunctionName=config.function_name, Name=config.alias)["FunctionVersion"])
    release = next(
        (r for r in deps.ledger.list_releases(service=service, limit=200)
         if r.get("status") == "Promoted" and str(r.get("candidate_version")) == version),
        None,
    )
    embedder, model = embedder_for(policy, deps.client)
    records = capture.read_window(deps.s3, bucket, service, start, now, version=version,
                                  max_records=policy.max_records)
    window = drift.profile(records, policy, embedder=embedder, embedding_model=model)
    base_key = (release or {}).get("baseline_key")
    common = {"service": service, "version": version, "release_id": (release or {}).get("release_id"),
              "window_start": start.isoformat(), "window_end": now.isoformat(), "records": window.records,
              "baseline_key": base_key}
    base, why = None, _no_baseline(version, release)
    if base_key:
        try:
            base = baselines.load(deps.s3, bucket, base_key)
        except baselines.BaselineUnavailable as exc:  # over its cap, or gone: said in the verdict
            why = str(exc)
    if base is None:
        verdict = drift.DriftVerdict(**common, verdict="insufficient", checks=[],
                                     summary=f"insufficient: nothing to compare with: {why}")
    else:
        outcome, checks = drift.compare(base.profile, window, policy)
        verdict = drift.DriftVerdict(**common, verdict=outcome, checks=checks,
                                     summary=drift.summary(outcome, checks, window.records))
    stamp = f"{now:%Y%m%dT%H%M%SZ}"
    report_key = f"{drift_prefix(service)}{stamp}.html"
    deps.s3.put_object(Bucket=bucket, Key=report_key, Body=render(verdict, base, window).encode(),
                       ContentType="text/html; charset=utf-8")
    verdict = verdict.model_copy(update={"report_key": report_key})
    body = drift.dumps(verdict).encode()
    for key in (f"{drift_prefix(service)}{stamp}.json", latest_key(service)):
        deps.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    result = json.loads(body)
    details = {"verdict": verdict.verdict, "live_version": version, "release_id": verdict.release_id,
               "records": window.records, "report_key": report_key}
    Journal(deps.ledger.table).append(
        service, "drift", verdict.summary[:2_000], **{k: v for k, v in details.items() if v is not None}
    )
    if verdict.verdict == "drift":
        result["actions"] = drift.request_actions(deps, verdict, monitor_function_name)
    return result
