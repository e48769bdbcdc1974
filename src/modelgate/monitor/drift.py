"""Drift: live traffic's profile against the promotion baseline, feature by feature.

A *profile* summarises records (captured live requests, or the evaluation's and canary's
calls at promotion): numeric samples (lengths, tokens, latency), category counts (refusals,
categorical inputs such as locale, schema validity) and an embedding centroid of the
requests' text. :func:`compare` checks a window's profile against the baseline's with the
statistics of :mod:`modelgate.monitor.drift_stats` and the thresholds of the service's
:class:`~modelgate.monitor.policy.DriftPolicy`; see there for the rule per feature kind.

Overall verdict: ``drift`` when any feature drifted; otherwise ``insufficient`` when the
window holds fewer than ``min_samples`` records or no feature could be checked (too little
data is never "no drift"); otherwise ``no_drift`` (features that could not be checked are
listed as insufficient in the verdict).
"""

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelgate.monitor import drift_stats as ds
from modelgate.monitor.policy import DriftPolicy

NUMERIC_FEATURES = ("input_length", "output_length", "input_tokens", "output_tokens", "latency_ms")
SAMPLE_CAP = 5000  # numeric values kept per feature in a profile (an even stride over the rest)
EMBEDDING_SAMPLE = 500  # texts embedded per profile (an even stride): Bedrock calls cost
Embedder = Callable[[Sequence[str]], list[list[float]]]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Profile(_Model):
    """What a set of records looks like, in the terms drift is judged on."""

    records: int
    numeric: dict[str, list[float]] = Field(default_factory=dict)
    categorical: dict[str, dict[str, int]] = Field(default_factory=dict)
    embedding_model: str | None = None
    centroid: list[float] | None = None
    embedded: int = 0


class FeatureCheck(_Model):
    feature: str
    kind: Literal["numeric", "categorical", "embedding"]
    baseline_n: int
    window_n: int
    result: Literal["drift", "ok", "insufficient"]
    statistics: dict[str, float | int] = Field(default_factory=dict)
    reason: str


class DriftVerdict(_Model):
    service: str
    version: str | None
    release_id: str | None
    verdict: Literal["drift", "no_drift", "insufficient"]
    window_start: str
    window_end: str
    records: int
    checks: list[FeatureCheck]
    summary: str
    baseline_key: str | None = None
    report_key: str | None = None


def local_embedder(texts: Sequence[str]) -> list[list[float]]:
    """The embedded AWS's embedding: a hashed bag of words (drift_stats.hashed_embedding)."""
    return [ds.hashed_embedding(t) for t in texts]


def features(record: Mapping[str, Any], policy: DriftPolicy) -> tuple[dict[str, float], dict[str, str], str]:
    """(numeric, categorical, text) of one record (see capture.py for the record's shape)."""
    inputs = record.get("inputs") or {}
    text = " ".join(str(inputs[name]) for name in policy.text_inputs if name in inputs)
    numeric: dict[str, float] = {
        "input_length": float(len(text)),
        "output_length": float(len(str(record.get("output") or ""))),
    }
    for name in ("input_tokens", "output_tokens", "latency_ms"):
        value = record.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            numeric[name] = float(value)
    categorical = {"refusal": "yes" if record.get("refusal") else "no"}
    for name in policy.categorical_inputs:
        categorical[f"input.{name}"] = str(inputs.get(name, "<absent>"))
    if record.get("schema_valid") is not None:
        categorical["schema_valid"] = "yes" if record["schema_valid"] else "no"
    return numeric, categorical, text


def _stride(values: Sequence[Any], cap: int) -> list[Any]:
    if len(values) <= cap:
        return list(values)
    step = len(values) / cap
    return [values[int(i * step)] for i in range(cap)]


def profile(
    records: Iterable[Mapping[str, Any]],
    policy: DriftPolicy,
    *,
    embedder: Embedder | None = local_embedder,
    embedding_model: str = ds.LOCAL_EMBEDDING_MODEL,
    skip_numeric: Sequence[str] = (),
) -> Profile:
    """The profile of ``records`` (failed requests, ``error`` set, are left out: the drift
    is in what the service answers; errors have their own metric and alarm)."""
    numeric: dict[str, list[float]] = {}
    categorical: dict[str, Counter[str]] = {}
    texts: list[str] = []
    n = 0
    for record in records:
        if record.get("error"):
            continue
        n += 1
        values, categories, text = features(record, policy)
        for name, value in values.items():
            if name not in skip_numeric:
                numeric.setdefault(name, []).append(value)
        for name, value in categories.items():
            categorical.setdefault(name, Counter())[value] += 1
        if text:
            texts.append(text)
    centroid, embedded = None, 0
    if embedder is not None and texts:
        sample = _stride(texts, EMBEDDING_SAMPLE)
        vectors = [v for v in embedder(sample) if any(v)]
        if vectors:
            centroid, embedded = ds.centroid(vectors), len(vectors)
    return Profile(
        records=n,
        numeric={k: _stride(v, SAMPLE_CAP) for k, v in numeric.items()},
        categorical={k: dict(v) for k, v in categorical.items()},
        embedding_model=embedding_model if centroid else None,
        centroid=centroid,
        embedded=embedded,
    )


def compare(baseline: Profile, window: Profile, policy: DriftPolicy) -> tuple[str, list[FeatureCheck]]:
    """(verdict, checks) of ``window`` against ``baseline``."""
    checks: list[FeatureCheck] = []
    need = policy.min_samples
    for name in sorted(set(baseline.numeric) | set(window.numeric)):
        b, w = baseline.numeric.get(name, []), window.numeric.get(name, [])
        if len(b) < need or len(w) < need:
            checks.append(_insufficient(name, "numeric", len(b), len(w), need))
            continue
        d, p = ds.ks_2samp(b, w)
        psi = ds.psi(b, w)
        drifted = p < policy.ks_p_value and psi >= policy.psi_threshold
        checks.append(FeatureCheck(
            feature=name, kind="numeric", baseline_n=len(b), window_n=len(w),
            result="drift" if drifted else "ok", statistics={"psi": psi, "ks_d": d, "ks_p": p},
            reason=(f"PSI {psi:.3f} ({'>=' if psi >= policy.psi_threshold else '<'} {policy.psi_threshold:g}), "
                    f"KS D {d:.3f} p {p:.2g} ({'<' if p < policy.ks_p_value else '>='} {policy.ks_p_value:g})"),
        ))
    for name in sorted(set(baseline.categorical) | set(window.categorical)):
        b_counts, w_counts = baseline.categorical.get(name, {}), window.categorical.get(name, {})
        nb, nw = sum(b_counts.values()), sum(w_counts.values())
        if nb < need or nw < need:
            checks.append(_insufficient(name, "categorical", nb, nw, need))
            continue
        stat, dof, p = ds.chi_square(b_counts, w_counts)
        psi = ds.psi_categorical(b_counts, w_counts)
        drifted = p < policy.chi2_p_value and psi >= policy.psi_threshold
        new = sorted(set(w_counts) - set(b_counts))
        checks.append(FeatureCheck(
            feature=name, kind="categorical", baseline_n=nb, window_n=nw,
            result="drift" if drifted else "ok", statistics={"psi": psi, "chi2": stat, "dof": dof, "chi2_p": p},
            reason=(f"PSI {psi:.3f} ({'>=' if psi >= policy.psi_threshold else '<'} {policy.psi_threshold:g}), "
                    f"chi-square {stat:.1f} on {dof} dof p {p:.2g} ({'<' if p < policy.chi2_p_value else '>='} "
                    f"{policy.chi2_p_value:g})" + (f"; new: {', '.join(new[:5])}" if new else "")),
        ))
    checks.append(_embedding_check(baseline, window, policy))
    if any(c.result == "drift" for c in checks):
        return "drift", checks
    if window.records < need or all(c.result == "insufficient" for c in checks):
        return "insufficient", checks
    return "no_drift", checks


def _insufficient(name: str, kind: Any, nb: int, nw: int, need: int) -> FeatureCheck:
    return FeatureCheck(
        feature=name, kind=kind, baseline_n=nb, window_n=nw, result="insufficient",
        reason=f"too few values to judge: baseline {nb}, window {nw}, at least {need} each needed",
    )


def _embedding_check(baseline: Profile, window: Profile, policy: DriftPolicy) -> FeatureCheck:
    need = min(policy.min_samples, EMBEDDING_SAMPLE)
    common = {"feature": "request_embedding", "kind": "embedding", "baseline_n": baseline.embedded,
              "window_n": window.embedded}
    if baseline.centroid is None or window.centroid is None or min(baseline.embedded, window.embedded) < need:
        return FeatureCheck(**common, result="insufficient",
                            reason=f"too few embedded requests: baseline {baseline.embedded}, window {window.embedded}, "
                                   f"at least {need} each needed")
    if baseline.embedding_model != window.embedding_model:
        return FeatureCheck(**common, result="insufficient",
                            reason=f"embedded by different models ({baseline.embedding_model} vs "
                                   f"{window.embedding_model}): centroids are not comparable")
    distance = ds.cosine_distance(baseline.centroid, window.centroid)
    drifted = distance >= policy.centroid_distance
    return FeatureCheck(**common, result="drift" if drifted else "ok", statistics={"cosine_distance": distance},
                        reason=f"centroid cosine distance {distance:.3f} ({'>=' if drifted else '<'} "
                               f"{policy.centroid_distance:g}, {baseline.embedding_model})")


def summary(verdict: str, checks: Sequence[FeatureCheck], records: int) -> str:
    drifted = [c for c in checks if c.result == "drift"]
    short = [c for c in checks if c.result == "insufficient"]
    if verdict == "drift":
        return f"drift in {', '.join(c.feature for c in drifted)} over {records} records: " + "; ".join(
            f"{c.feature}: {c.reason}" for c in drifted)
    if verdict == "insufficient":
        return f"insufficient data: {records} records in the window; " + "; ".join(
            f"{c.feature}: {c.reason}" for c in short[:3])
    text = f"no drift in {len(checks) - len(short)} features over {records} records"
    return text + (f" ({', '.join(c.feature for c in short)} not judged: too few values)" if short else "")


def dumps(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), separators=(",", ":"))


# --------------------------------------------------------------------------- the action
# Routed through the monitoring actions module when the two halves of issue #9 merge.


def request_actions(deps: Any, verdict: DriftVerdict, monitor_function_name: str | None) -> dict[str, Any]:
    """Ask the monitor function to run the policy's ``on_drift`` actions (alert, re-evaluate,
    roll back: ``modelgate.monitor.actions.act``, each recorded in the monitoring journal). An
    asynchronous invoke ("Invoke", Lambda API Reference: InvocationType Event, retried twice by
    Lambda on error): the drift check's own role holds no rollback or alert grant."""
    if not monitor_function_name:
        return {"requested": False, "detail": "no monitor function configured"}
    payload = {
        "task": "act", "trigger": "drift", "service": verdict.service, "requested_by": "drift-check",
        "reason": verdict.summary[:2_000],
        "evidence": {"version": verdict.version, "release_id": verdict.release_id, "records": verdict.records,
                     "window_end": verdict.window_end, "report_key": verdict.report_key},
    }
    deps.lambda_.invoke(FunctionName=monitor_function_name, InvocationType="Event",
                        Payload=json.dumps(payload).encode())
    return {"requested": True, "function": monitor_function_name}
