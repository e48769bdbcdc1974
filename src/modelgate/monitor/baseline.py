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
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from modelgate.monitor import capture
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
    from modelgate.evaluation.scorers import is_refusal

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
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return Baseline.model_validate(json.loads(body))


def capture_at_promotion(deps: Any, ctx: Any) -> dict[str, Any]:
    """Promote's last step: build the promoted version's baseline, store it beside its
    evaluation report and point the ledger record at it. Returns the ledger fields set.

    Never fails the promotion (the version is live already): a baseline that could not be
    built is recorded as missing, with the reason, and the drift check then says
    "insufficient" for this version rather than judging it against nothing.
    """
    from modelgate import clock
    from modelgate.monitor.embeddings import embedder_for
    from modelgate.observability import logger
    from modelgate.registry import get_service

    key = baseline_key(ctx.service, ctx.release_id)
    try:
        if ctx.evaluation is None or ctx.candidate_version is None:
            raise ValueError("the release carries no evaluation summary or candidate version")
        monitoring = get_service(deps.ssm, deps.settings.services_prefix, ctx.service).policy.monitoring
        bucket = deps.settings.artifact_bucket
        args = {"Bucket": bucket, "Key": ctx.evaluation.report_key}
        if ctx.evaluation.report_version:
            args["VersionId"] = ctx.evaluation.report_version
        report = json.loads(deps.s3.get_object(**args)["Body"].read())
        now = clock.now()
        canary: list[dict[str, Any]] = []
        if monitoring.capture.enabled and ctx.canary_started_at:
            start = datetime.fromisoformat(ctx.canary_started_at)
            canary = canary_records(deps.s3, bucket, ctx.service, ctx.candidate_version, start, now)
        embedder, model = embedder_for(monitoring.drift, deps.client)
        baseline = build_baseline(
            service=ctx.service, release_id=ctx.release_id, version=ctx.candidate_version, report=report,
            canary_records=canary, monitoring=monitoring, now=now, embedder=embedder, embedding_model=model,
        )
        deps.s3.put_object(Bucket=bucket, Key=key, Body=baseline.model_dump_json().encode(),
                           ContentType="application/json")
        fields = {"baseline_key": key, "baseline_sources": baseline.sources}
    except Exception as exc:  # noqa: BLE001 - the version is live; a missing baseline is recorded, not raised
        logger.exception("baseline not captured", extra={"release_id": ctx.release_id})
        fields = {"baseline_key": None, "baseline_error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    deps.ledger.set_fields(ctx.release_id, **fields)
    return fields
