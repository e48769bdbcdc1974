"""A canary alarm's threshold as it was set, and why: fixed, or from live's measured latency.

``resolve_threshold`` turns a policy's ``CanaryAlarmSpec`` and the measurements of live into the
threshold the alarm is created with (``AlarmThreshold``, kept in the ledger). Apart from the
policy's models: only the steps that arm a canary (``pipeline.canary``) build these, while every
pipeline handler validates the policy (issue #7).
"""

from typing import Literal

from pydantic import Field

from modelgate.errors import NotEnoughEvidence
from modelgate.model_base import Strict as _Strict
from modelgate.policy import CanaryAlarmSpec


class LiveLatency(_Strict):
    """Live's measured value of one statistic of its latency, and where it was measured."""

    source: Literal["cloudwatch", "evaluation", "candidate_evaluation"]
    value_ms: float = Field(ge=0.0)
    samples: int = Field(ge=0)
    detail: str


class AlarmThreshold(_Strict):
    """The threshold a canary alarm was created with, and why (kept in the ledger)."""

    alarm: str
    metric: str
    statistic: str
    threshold: float
    basis: Literal["fixed", "live", "floor", "candidate_without_live_data", "floor_without_live_data"]
    live: LiveLatency | None = None
    factor: float | None = None
    floor_ms: float | None = None
    explanation: str


def resolve_threshold(
    spec: CanaryAlarmSpec, measured: list[LiveLatency], candidate: LiveLatency | None = None
) -> AlarmThreshold:
    """The alarm's threshold: fixed, or max(floor, factor x live) from the first measurement
    of live in ``measured`` that has enough samples; without one, per the policy's
    ``without_live_data`` (``candidate``: the candidate's evaluated latency, see
    LiveRelativeThreshold).

    Raises ``NotEnoughEvidence`` when there is no usable measurement and the policy says
    ``fail`` (or ``candidate`` without a usable candidate measurement either).
    """
    common = {"alarm": spec.name, "metric": spec.metric, "statistic": spec.statistic}
    relative = spec.relative_to_live
    if relative is None:
        assert spec.threshold is not None
        return AlarmThreshold(
            **common, threshold=spec.threshold, basis="fixed",
            explanation=f"{spec.statistic} of {spec.metric} at a fixed threshold of {spec.threshold:g}",
        )
    usable = [m for m in measured if m.samples >= relative.min_samples]
    looked = "; ".join(f"{m.source}: {m.detail}" for m in measured) or "no measurement of live"
    short = f"live's latency has fewer than {relative.min_samples} measured calls ({looked})"
    basis = "live"
    if not usable and relative.without_live_data == "candidate":
        if candidate is None or candidate.samples < relative.min_samples:
            raise NotEnoughEvidence(
                f"alarm {spec.name}: {short}, and the candidate's evaluated latency, which the policy puts in its "
                f"place (without_live_data: candidate), has fewer too "
                f"({candidate.detail if candidate else 'not measured'}): the threshold can't be set"
            )
        usable, basis = [candidate], "candidate_without_live_data"
    if not usable:
        if relative.without_live_data == "fail":
            raise NotEnoughEvidence(
                f"alarm {spec.name}: its threshold is {relative.factor:g} x live's {spec.statistic} latency, and "
                f"{short}; an alarm without its threshold watches nothing, and the policy says fail "
                "(without_live_data)"
            )
        return AlarmThreshold(
            **common, threshold=relative.floor_ms, basis="floor_without_live_data", factor=relative.factor,
            floor_ms=relative.floor_ms,
            explanation=(
                f"{spec.statistic} of Duration above {relative.floor_ms:g} ms: the floor alone, because {short} "
                "and the policy says floor (without_live_data)"
            ),
        )
    base = usable[0]
    scaled = relative.factor * base.value_ms
    threshold = max(relative.floor_ms, scaled)
    if scaled < relative.floor_ms:
        basis = "floor"
    whose = "the candidate's evaluated" if base.source == "candidate_evaluation" else "live's"
    why = f"; {short}, so the candidate's own (without_live_data: candidate)" if base is candidate else ""
    return AlarmThreshold(
        **common, threshold=round(threshold, 3), basis=basis, live=base, factor=relative.factor,
        floor_ms=relative.floor_ms,
        explanation=(
            f"{spec.statistic} of Duration above {threshold:.1f} ms = max(floor {relative.floor_ms:g} ms, "
            f"{relative.factor:g} x {whose} {spec.statistic} {base.value_ms:.1f} ms from {base.source}: "
            f"{base.detail}){why}"
        ),
    )
