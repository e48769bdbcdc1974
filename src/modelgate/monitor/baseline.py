"""The baseline captured at promotion: what the promoted version's traffic looked like.

Sources, both of the promoted (candidate) version:

- its evaluation run (the evaluation report's candidate-side calls: inputs, answers,
  tokens, refusals, scores);
- its canary traffic: the records captured from it while it was a canary (when the
  service captures), the only source of production-measured latency (the evaluation's
  latency is the caller's, around Invoke, and would read as drift against the handler's).

Stored beside the evaluation report, ``reports/<service>/<release>/baseline.json``, with a
pointer (``baseline_key``) in the release's ledger record. It holds the drift profile
(:class:`modelgate.monitor.drift.Profile`) and, for people, the evaluation's scores.

Built asynchronously, off the promotion's critical path: Promote writes Promoted, then asks
the monitor function for the baseline (:func:`request_baseline`: Invoke with
``InvocationType`` ``Event``, "Invoking a Lambda function asynchronously", AWS Lambda
Developer Guide, https://docs.aws.amazon.com/lambda/latest/dg/invocation-async.html; Lambda
queues the event and answers 202 at once, and the function runs later with its own execution
role). The monitor builds it (:func:`build_for_release`, task ``baseline``), points the
ledger record at it and journals the outcome (``MONITOR#<service>``, kind ``baseline``). A
promotion is never slow or failed because of its baseline, and a failed build never touches
the alias or the release's status: the ledger says why (``baseline_error``) and the drift
check says "insufficient" until a baseline exists.
"""

import json
from collections import Counter
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from modelgate.adapters.s3 import MAX_BASELINE_BYTES, MAX_RESULTS_BYTES, read_object
from modelgate.errors import bounded
from modelgate.monitor import capture

# Promote's side of the asynchronous build (the request and its error) lives in the light
# monitor.baseline_request, so Promote's cold start skips the drift profile's models (issue #7).
from modelgate.monitor.baseline_request import BaselineRequest, BaselineUnavailable, request_baseline  # noqa: F401
from modelgate.monitor.drift import Embedder, Profile, local_embedder, profile
from modelgate.monitor.policy import MonitoringPolicy


class Baseline(BaseModel):
    model_config = ConfigDict(frozen=True)

    service: str
    release_id: str
    version: str
    created_at: str
    sources: dict[str, int]
    profile: Profile
    scores: dict[str, Any]


def baseline_key(service: str, release_id: str) -> str:
    return f"reports/{service}/{release_id}/baseline.json"


def evaluation_records(report: dict[str, Any], side: str = "candidate") -> list[dict[str, Any]]:
    """The evaluation report's calls of one side, as capture records (no latency: see above)."""
    from modelgate.refusal import is_refusal

    records = []
    for r in report.get("results", []):
        if r.get("side") != side or r.get("throttled"):
            continue
        records.append({
            "inputs": r.get("inputs") or {},
            "output": r.get("output") or "",
            "input_tokens": r.get("input_tokens"),
            "output_tokens": r.get("output_tokens"),
            "refusal": is_refusal(r.get("output") or ""),
            "error": r.get("error"),
            "score": r.get("score"),
            "scorer": r.get("scorer"),
        })
    return records


def scores(records: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in records if r.get("score") is not None and not r.get("error")]
    by_scorer: dict[str, list[float]] = {}
    for r in scored:
        by_scorer.setdefault(str(r.get("scorer") or "default"), []).append(float(r["score"]))
    return {
        "cases": len(scored),
        "mean_score": round(sum(float(r["score"]) for r in scored) / len(scored), 4) if scored else None,
        "by_scorer": {k: {"n": len(v), "mean": round(sum(v) / len(v), 4)} for k, v in sorted(by_scorer.items())},
        "refusal_rate": round(sum(1 for r in scored if r.get("refusal")) / len(scored), 4) if scored else None,
        "score_histogram": dict(sorted(Counter(f"{float(r['score']):.1f}" for r in scored).items())),
    }


def build_baseline(
    *,
    service: str,
    release_id: str,
    version: str,
    report: dict[str, Any],
    canary_records: list[dict[str, Any]],
    monitoring: MonitoringPolicy,
    now: datetime,
    embedder: Embedder | None = local_embedder,
    embedding_model: str | None = None,
) -> Baseline:
    evaluated = evaluation_records(report)
    canary = [r for r in canary_records if r.get("version") == version]
    # latency only from canary records (production-measured); the evaluation's records carry none
    combined = evaluated + canary
    kwargs: dict[str, Any] = {"embedder": embedder}
    if embedding_model:
        kwargs["embedding_model"] = embedding_model
    return Baseline(
        service=service,
        release_id=release_id,
        version=version,
        created_at=now.isoformat(),
        sources={"evaluation": len(evaluated), "canary": len(canary)},
        profile=profile(combined, monitoring.drift, **kwargs),
        scores=scores(evaluated),
    )


def canary_records(
    s3: Any, bucket: str, service: str, version: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    return capture.read_window(s3, bucket, service, start, end, version=version, max_records=50_000)


def load(s3: Any, bucket: str, key: str) -> Baseline:
    """The stored baseline; its size is checked (HeadObject) before it is read, at most
    ``MAX_BASELINE_BYTES``: a larger one is :class:`BaselineUnavailable` naming it and the cap."""
    body = read_object(s3, bucket, key, None, error=BaselineUnavailable, what="the drift baseline",
                       max_bytes=MAX_BASELINE_BYTES)
    return Baseline.model_validate(json.loads(body))


def build_for_release(deps: Any, service: str, request: BaselineRequest) -> dict[str, Any]:
    """The monitor's task ``baseline``: build the promoted version's baseline, store it beside
    its evaluation report, point the release's ledger record at it and journal the outcome.

    Idempotent: a release whose record already points at its baseline is left as it is (the
    result says ``exists``); two builds racing write the same key with the same inputs.
    A failure (the request not matching the release's record, a report or capture batch that
    can't be read or is over its cap, a failed embedding call) is journalled (``failed``, with
    why) and recorded as ``baseline_error`` on the release; it never touches the alias or the
    release's status, and is not raised (the SDK has already retried transient errors; Lambda's
    two retries of an asynchronous event would journal the same failure twice more). A request
    that doesn't match its release is journalled and leaves that release's record untouched.
    """
    from modelgate.ledger import now_iso
    from modelgate.monitor.embeddings import embedder_for
    from modelgate.monitor.journal import Journal
    from modelgate.observability import logger
    from modelgate.registry import get_service

    key = baseline_key(service, request.release_id)
    details: dict[str, Any] = {"release_id": request.release_id, "version": request.version}
    record = deps.ledger.get(request.release_id)
    matched = False  # a request that does not match its release records nothing on it
    try:
        _check_request(record, service, request)
        matched = True
        if record.get("baseline_key") == key:  # type: ignore[union-attr]  # checked above
            logger.info("baseline already built", extra={"release_id": request.release_id, "key": key})
            return {"status": "exists", **details, "baseline_key": key}
        monitoring = get_service(deps.ssm, deps.settings.services_prefix, service).policy.monitoring
        bucket = deps.settings.artifact_bucket
        report = json.loads(read_object(deps.s3, bucket, request.report_key, request.report_version,
                                        error=BaselineUnavailable, what="the evaluation report",
                                        max_bytes=MAX_RESULTS_BYTES))
        canary: list[dict[str, Any]] = []
        if monitoring.capture.enabled and request.canary_started_at:
            canary = canary_records(deps.s3, bucket, service, request.version, request.canary_started_at,
                                    request.promoted_at)
        embedder, model = embedder_for(monitoring.drift, deps.client)
        baseline = build_baseline(
            service=service, release_id=request.release_id, version=request.version, report=report,
            canary_records=canary, monitoring=monitoring, now=request.promoted_at, embedder=embedder,
            embedding_model=model,
        )
        deps.s3.put_object(Bucket=bucket, Key=key, Body=baseline.model_dump_json().encode(),
                           ContentType="application/json")
        deps.ledger.set_fields(request.release_id, baseline_key=key, baseline_sources=baseline.sources,
                               baseline_built_at=now_iso(), baseline_error=None)
        sources = ", ".join(f"{n} {name}" for name, n in baseline.sources.items())
        result = {"status": "built", **details, "baseline_key": key, "sources": baseline.sources}
        summary = f"baseline of version {request.version} (release {request.release_id}) built from {sources} records"
    except Exception as exc:  # noqa: BLE001 - journalled and recorded; the promotion stands
        logger.exception("baseline not built", extra={"release_id": request.release_id})
        error = bounded(f"{type(exc).__name__}: {exc}", 1_000)
        if matched:
            deps.ledger.set_fields(request.release_id, baseline_error=error)
        result = {"status": "failed", **details, "error": error}
        summary = f"baseline of version {request.version} (release {request.release_id}) not built: {error}"
    Journal(deps.ledger.table).append(service, "baseline", bounded(summary, 2_000),
                                      **{k: v for k, v in result.items() if k != "sources"})
    return result


def _check_request(record: dict[str, Any] | None, service: str, request: BaselineRequest) -> None:
    """The request must describe the release the ledger holds: this service's, promoted
    ``version`` after the evaluation at ``report_key`` (anyone who may invoke the monitor could
    otherwise point a release's baseline at another report)."""
    if record is None:
        raise BaselineUnavailable(f"release {request.release_id} is not in the ledger")
    problems = []
    if record.get("service") != service:
        problems.append(f"it is a release of {record.get('service')!r}, not of {service!r}")
    if str(record.get("candidate_version")) != request.version:
        problems.append(f"its candidate is version {record.get('candidate_version')}, not {request.version}")
    recorded = (record.get("evaluation") or {}).get("report_key")
    if recorded != request.report_key:
        problems.append(f"its evaluation report is {recorded!r}, not {request.report_key!r}")
    if record.get("status") != "Promoted" and not record.get("promoted_at"):
        problems.append(f"it was never promoted (status {record.get('status')})")
    if problems:
        raise BaselineUnavailable(f"the baseline request does not match release {request.release_id}: "
                                  + "; ".join(problems))
