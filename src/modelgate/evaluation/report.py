"""An evaluation report as one self-contained HTML page.

Why one file with inline CSS and SVG and no script: the page is stored next to the
artefact in S3 and linked from the ledger and the approval message; it must render the
same in a mail client's preview, offline, and years later, with nothing to fetch.

Everything that comes from a dataset or a model (case ids, inputs, expected answers,
outputs, error texts) is escaped: a model output is untrusted input to this page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from typing import Any

from modelgate.contract import GateVerdict
from modelgate.evaluation.comparison import (
    CANDIDATE,
    LIVE,
    CaseResult,
    DeltaEstimate,
    EvaluationReport,
    per_case,
)
from modelgate.evaluation.report_sections import judge_section, power_section, repeats_section, slices_section
from modelgate.policy import ReleasePolicy

_COLOURS = {
    "pass": "#1b7f3b",
    "fail": "#c62828",
    "inconclusive": "#b85c00",
    "not_applicable": "#607080",
}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;
color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:2rem 0 .5rem}
.banner{padding:.75rem 1rem;border-radius:6px;color:#fff;font-weight:600;margin:1rem 0}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #d8dde6;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f9;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.v{display:inline-block;padding:0 .45rem;border-radius:3px;color:#fff;font-size:.85em;font-weight:600}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font:12.5px/1.4 ui-monospace,Menlo,monospace}
.muted{color:#5b6577}.err{color:#c62828}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _badge(verdict: str) -> str:
    colour = _COLOURS.get(verdict, "#607080")
    return f'<span class="v" style="background:{colour}">{_e(verdict.replace("_", " "))}</span>'


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "pts":
        return f"{round(value * 100, 1) + 0.0:.1f} pts"
    if unit == "fraction":
        return f"{value:.1%}"
    if unit == "ratio":
        return f"{value:+.1%}"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "usd":
        return f"{value:.6f} USD"
    if unit == "cases":
        return f"{value:.0f}"
    return f"{value:.4g}"


# --------------------------------------------------------------------------- sections


def _criteria_table(verdict: GateVerdict) -> str:
    rows = []
    for c in verdict.criteria:
        interval = (
            f"{_fmt(c.interval[0], c.unit)} to {_fmt(c.interval[1], c.unit)}" if c.interval else ""
        )
        rows.append(
            "<tr>"
            f"<td>{_e(c.name)}</td><td>{_badge(c.verdict)}</td>"
            f'<td class="num">{_e(_fmt(c.observed, c.unit))}</td>'
            f'<td class="num">{_e(_fmt(c.threshold, c.unit)) if c.threshold is not None else ""}</td>'
            f'<td class="num">{_e(interval)}</td>'
            f'<td class="num">{"" if c.p_value is None else f"{c.p_value:.3g}"}</td>'
            f"<td>{_e(c.message)}</td>"
            "</tr>"
        )
    return (
        "<table><thead><tr><th>criterion</th><th>verdict</th><th>observed</th><th>threshold</th>"
        "<th>95% CI</th><th>p</th><th>detail</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


_SIDE_ROWS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("cases scored", "n", lambda v: f"{v}"),
    ("accuracy", "accuracy", lambda v: f"{v:.3f}"),
    ("error rate", "error_rate", lambda v: f"{v:.1%}"),
    ("latency p50", "latency_p50_ms", lambda v: f"{v:.1f} ms"),
    ("latency p95", "latency_p95_ms", lambda v: f"{v:.1f} ms"),
    ("latency p99", "latency_p99_ms", lambda v: f"{v:.1f} ms"),
    ("cost / request", "cost_per_request_usd", lambda v: f"{v:.6f} USD"),
    ("tokens (in + out)", "total_tokens", lambda v: f"{v}"),
    ("throttled (left out)", "throttled", lambda v: f"{v}"),
)


def _metrics_table(report: EvaluationReport) -> str:
    sides = [s for s in (CANDIDATE, LIVE) if s in report.sides] + sorted(
        s for s in report.sides if s not in (CANDIDATE, LIVE)
    )
    head = "".join(f"<th>{_e(s)}</th>" for s in sides)
    rows = []
    for label, key, fmt in _SIDE_ROWS:
        cells = []
        for side in sides:
            value = getattr(report.sides[side], key)
            cells.append(f'<td class="num">{_e("n/a" if value is None else fmt(value))}</td>')
        rows.append(f"<tr><td>{_e(label)}</td>{''.join(cells)}</tr>")
    return f"<table><thead><tr><th>metric</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _chart_rows(report: EvaluationReport, verdict: GateVerdict) -> list[dict[str, Any]]:
    """One chart row per metric delta: point, interval, threshold line, verdict colour."""
    comparison = report.comparison
    if comparison is None:
        return []
    by_name = {c.name: c for c in verdict.criteria}

    def threshold(name: str, sign: float = 1.0) -> tuple[float | None, str]:
        c = by_name.get(name)
        if c is None or c.verdict == "not_applicable" or c.threshold is None:
            return None, "not_applicable" if c is None else c.verdict
        return sign * c.threshold, c.verdict

    def row(
        label: str,
        est: DeltaEstimate,
        unit: str,
        criterion: str | None,
        ratio: bool = False,
        sign: float = 1.0,
    ) -> dict[str, Any]:
        point = est.ratio if ratio else est.delta
        ci = est.ratio_ci95 if ratio else est.ci95
        limit, status = threshold(criterion, sign) if criterion else (None, "not_applicable")
        return {"label": label, "point": point, "ci": ci, "limit": limit, "verdict": status, "unit": unit}

    accuracy = comparison.accuracy
    gated = by_name.get("accuracy_drop")
    if gated is not None and gated.observed is not None:  # the gate's own cases (an ungated judge's left out)
        accuracy = accuracy.model_copy(update={
            "delta": -gated.observed,
            "ci95": None if gated.interval is None else (-gated.interval[1], -gated.interval[0]),
        })
    return [
        row("accuracy Δ", accuracy, "pts", "accuracy_drop", sign=-1.0),
        row("error rate Δ", comparison.error_rate, "pts", None),
        row("p95 latency Δ", comparison.latency_p95_ms, "ms", "p95_latency_increase_ms"),
        row("p95 latency Δ", comparison.latency_p95_ms, "%", "p95_latency_increase_ratio", ratio=True),
        row("cost / request Δ", comparison.cost_per_request_usd, "%", "cost_increase_ratio", ratio=True),
    ]


def _chart_value(value: float, unit: str) -> str:
    if unit == "pts":
        return f"{value * 100:+.1f}"
    if unit == "%":
        return f"{value * 100:+.1f}%"
    return f"{value:+.1f}"


def _delta_chart(report: EvaluationReport, verdict: GateVerdict) -> str:
    """Inline SVG: each metric's delta (candidate - live) with its 95% interval.

    Each row has its own scale (points, ms and percent don't share an axis); the dashed
    line is zero, the solid one the policy's limit where a criterion sets one.
    """
    rows = _chart_rows(report, verdict)
    if not rows:
        return '<p class="muted">No live side: nothing to compare (first release).</p>'
    width, label_w, plot_w, row_h = 940, 170, 440, 46
    height = row_h * len(rows) + 24
    parts = [
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="metric deltas with 95% intervals" '
        'font-family="system-ui,sans-serif" font-size="12">'
    ]
    for n, r in enumerate(rows):
        y = 12 + n * row_h + row_h / 2
        colour = _COLOURS.get(r["verdict"], "#607080")
        parts.append(f'<text x="0" y="{y + 4:.1f}" fill="#1d2330">{_e(r["label"])} ({_e(r["unit"])})</text>')
        point, ci, limit = r["point"], r["ci"], r["limit"]
        if point is None:
            parts.append(f'<text x="{label_w}" y="{y + 4:.1f}" fill="#607080">n/a</text>')
            continue
        values = [point, 0.0] + (list(ci) if ci else []) + ([limit] if limit is not None else [])
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.1 or max(abs(hi), 1e-9)
        lo, hi = lo - pad, hi + pad

        def x(v: float, lo: float = lo, hi: float = hi) -> float:
            return label_w + (v - lo) / (hi - lo) * plot_w

        parts.append(
            f'<line x1="{label_w}" x2="{label_w + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7ee"/>'
            f'<line x1="{x(0.0):.1f}" x2="{x(0.0):.1f}" y1="{y - 16:.1f}" y2="{y + 16:.1f}" '
            'stroke="#8a94a6" stroke-dasharray="3,3"/>'
        )
        if limit is not None:
            parts.append(
                f'<line x1="{x(limit):.1f}" x2="{x(limit):.1f}" y1="{y - 18:.1f}" y2="{y + 18:.1f}" '
                f'stroke="{colour}" stroke-width="2">'
                f'<title>limit {_e(_chart_value(limit, r["unit"]))}</title></line>'
            )
        if ci is not None:
            parts.append(
                f'<line x1="{x(ci[0]):.1f}" x2="{x(ci[1]):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{colour}" stroke-width="4" stroke-linecap="round"/>'
            )
        parts.append(f'<circle cx="{x(point):.1f}" cy="{y:.1f}" r="5.5" fill="{colour}"/>')
        text = _chart_value(point, r["unit"])
        if ci is not None:
            text += f"  [{_chart_value(ci[0], r['unit'])}, {_chart_value(ci[1], r['unit'])}]"
        if limit is not None:
            text += f"  limit {_chart_value(limit, r['unit'])}"
        parts.append(
            f'<text x="{label_w + plot_w + 12}" y="{y + 4:.1f}" fill="{colour}">{_e(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def worst_regressions(report: EvaluationReport, limit: int = 10) -> list[tuple[CaseResult, CaseResult]]:
    """(candidate, live) pairs where the candidate scored lower, the biggest weighted loss first.

    With repeats, a case is one row: its per-case mean scores decide, and the row shows the
    candidate's worst call and live's best one."""
    scored = [r for r in report.results if not r.throttled and r.case_id not in set(report.throttled_case_ids)]
    cand = per_case([r for r in scored if r.side == CANDIDATE])
    live = per_case([r for r in scored if r.side == LIVE])
    worst_call = {r.case_id: r for r in sorted((r for r in scored if r.side == CANDIDATE), key=lambda r: -r.score)}
    best_call = {r.case_id: r for r in sorted((r for r in scored if r.side == LIVE), key=lambda r: r.score)}
    lost = [cid for cid in cand if cid in live and cand[cid].score < live[cid].score]
    lost.sort(key=lambda cid: (-(live[cid].score - cand[cid].score) * cand[cid].weight, cid))
    return [(worst_call[cid], best_call[cid]) for cid in lost[:limit]]


def _answer(result: CaseResult) -> str:
    if result.error is not None:
        return f'<pre class="err">{_e(result.error)}</pre>'
    return f"<pre>{_e(result.output or '')}</pre>"


def _expected(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)
    return f"<pre>{_e(text)}</pre>"


def _regressions_table(report: EvaluationReport, limit: int) -> str:
    if LIVE not in report.sides:
        return '<p class="muted">No live side: no regressions to show.</p>'
    pairs = worst_regressions(report, limit)
    if not pairs:
        return '<p class="muted">No case scored lower on the candidate than on live.</p>'
    rows = []
    for cand, live in pairs:
        inputs = "\n".join(f"{k}: {v}" for k, v in (cand.inputs or {}).items())
        tags = ", ".join(cand.tags)
        rows.append(
            "<tr>"
            f"<td><b>{_e(cand.case_id)}</b><br><span class=\"muted\">{_e(cand.scorer or '')}"
            f"{' · ' + _e(tags) if tags else ''} · weight {cand.weight:g}</span></td>"
            f"<td><pre>{_e(inputs)}</pre></td>"
            f"<td>{_expected(cand.expected)}</td>"
            f'<td>{_answer(live)}<span class="muted">score {live.score:.2f}</span></td>'
            f'<td>{_answer(cand)}<span class="muted">score {cand.score:.2f}</span></td>'
            "</tr>"
        )
    return (
        "<table><thead><tr><th>case</th><th>inputs</th><th>expected</th><th>live</th>"
        "<th>candidate</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _banner(verdict: GateVerdict) -> str:
    if verdict.passed:
        return (
            f'<div class="banner" style="background:{_COLOURS["pass"]}">'
            "Gate passed: every criterion passed or does not apply.</div>"
            + _holm_note(verdict)
        )
    names = ", ".join(f"{c.name} ({c.verdict})" for c in verdict.failures)
    return (
        f'<div class="banner" style="background:{_COLOURS["fail"]}">Gate failed: {_e(names)}</div>'
        + _holm_note(verdict)
    )


def _holm_note(verdict: GateVerdict) -> str:
    if not verdict.multiple_comparisons:
        return ""
    return f'<p class="muted">Multiple comparisons: {_e(verdict.multiple_comparisons)}.</p>'


def _paired_line(report: EvaluationReport) -> str:
    comparison = report.comparison
    if comparison is None:
        return ""
    t = comparison.paired_test
    return (
        f'<p>All {comparison.n_pairs} cases, paired (the accuracy row: the cases the gate judges). '
        f'{_e(t.method)}: {t.b} case(s) worse on the '
        f"candidate, {t.c} better, two-sided p = {t.p_value:.3g}. Intervals: paired percentile "
        f"bootstrap, {comparison.resamples} resamples, seed {comparison.seed}.</p>"
    )


def render_html(
    report: EvaluationReport,
    verdict: GateVerdict,
    *,
    title: str,
    worst: int = 10,
    policy: ReleasePolicy | None = None,
) -> str:
    """The report as one HTML page: verdicts, slices, delta chart, repeats, power (needs the
    ``policy``), the judge, metrics, worst regressions."""
    throttled = ""
    if report.throttled_case_ids:
        throttled = (
            f"<p class=\"err\">{len(report.throttled_case_ids)} case(s) left out because the "
            f"provider throttled them on some side: {_e(', '.join(report.throttled_case_ids[:50]))}"
            f"{' …' if len(report.throttled_case_ids) > 50 else ''}</p>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="muted">{report.n_cases} cases · sides: {_e(", ".join(report.sides))} · '
        f"percentiles: {_e(report.percentile_method)} interpolation</p>"
        f"{_banner(verdict)}{throttled}"
        f"<h2>Gate criteria</h2>{_criteria_table(verdict)}"
        f"{slices_section(report, verdict)}"
        f"<h2>Deltas (candidate − live) with 95% intervals</h2>{_delta_chart(report, verdict)}"
        f"{_paired_line(report)}"
        f"{repeats_section(report)}{power_section(report, verdict, policy)}{judge_section(verdict)}"
        f"<h2>Metrics</h2>{_metrics_table(report)}"
        f"<h2>Worst regressed cases</h2>{_regressions_table(report, worst)}"
        "</body></html>"
    )

