"""A drift verdict as one self-contained HTML page: baseline vs now, feature by feature.

Like the evaluation report (modelgate.evaluation.report): inline CSS and SVG, no script,
everything from traffic escaped (categories are customer input). Numeric features are
drawn as paired histograms over the baseline's decile bins (the bins PSI uses); categorical
features as paired bars of each category's share.
"""

from __future__ import annotations

import json
from html import escape
from itertools import pairwise
from typing import Any

from modelgate.monitor import drift_stats as ds
from modelgate.monitor.drift import DriftVerdict, Profile

_COLOURS = {"drift": "#c62828", "no_drift": "#1b7f3b", "insufficient": "#b85c00", "ok": "#1b7f3b"}
_BASE, _NOW = "#607080", "#1565c0"
_CSS = (
    "body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1000px;color:#1d2330;padding:0 1rem}"
    "h1{font-size:1.5rem}h2{font-size:1.1rem;margin:1.6rem 0 .4rem}"
    ".banner{padding:.7rem 1rem;border-radius:6px;color:#fff;font-weight:600}"
    "table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #d8dde6;padding:.3rem .5rem;"
    "text-align:left}th{background:#f3f5f9}pre{white-space:pre-wrap;overflow-wrap:anywhere}.key span{display:inline-block;width:12px;height:12px;margin:0 4px}"
)


def _bars(title: str, labels: list[str], base: list[float], now: list[float]) -> str:
    width, row = 720, 18  # labels | bars (180..560) | shares (from 570: room for '100% / 100%')
    height = row * len(labels) + 30
    top = max(base + now + [1e-9])
    out = [(f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
            'font-family="system-ui,sans-serif" font-size="11">')]
    for i, label in enumerate(labels):
        y = 10 + i * row
        out.append(f'<text x="0" y="{y + 11}">{escape(label[:28])}</text>')
        for j, (share, colour) in enumerate(((base[i], _BASE), (now[i], _NOW))):
            w = 380 * share / top
            out.append(f'<rect x="180" y="{y + j * 8}" width="{w:.1f}" height="7" fill="{colour}"/>')
        out.append(f'<text x="570" y="{y + 11}">{base[i]:.0%} / {now[i]:.0%}</text>')
    out.append("</svg>")
    return "".join(out)


def _numeric_chart(name: str, base: list[float], now: list[float]) -> str:
    edges = ds.quantile_edges(base)
    labels = [f"< {edges[0]:.4g}"] + [f"{a:.4g} .. {b:.4g}" for a, b in pairwise(edges)] + [f">= {edges[-1]:.4g}"]
    return _bars(name, labels, ds.bin_shares(base, edges), ds.bin_shares(now, edges))


def _categorical_chart(name: str, base: dict[str, int], now: dict[str, int]) -> str:
    cats = sorted(set(base) | set(now), key=lambda c: -(base.get(c, 0) + now.get(c, 0)))[:15]
    nb, nn = max(1, sum(base.values())), max(1, sum(now.values()))
    return _bars(name, cats, [base.get(c, 0) / nb for c in cats], [now.get(c, 0) / nn for c in cats])


def render(verdict: DriftVerdict, baseline: Any, window: Profile) -> str:
    """The page (``baseline``: a monitor.baseline.Baseline, or None when there is none)."""
    colour = _COLOURS[verdict.verdict]
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        f"<title>Drift: {escape(verdict.service)}</title><style>{_CSS}</style>",
        f"<h1>Drift check: {escape(verdict.service)}, version {escape(str(verdict.version))}</h1>",
        f'<div class="banner" style="background:{colour}">{escape(verdict.verdict)}: {escape(verdict.summary)}</div>',
        f"<p>Window {escape(verdict.window_start)} .. {escape(verdict.window_end)}: {verdict.records} records. "
        f"Baseline: {escape(str(verdict.baseline_key))}"
        + (f" (release {escape(str(baseline.release_id))}, sources {escape(str(baseline.sources))})" if baseline else "")
        + "</p>",
        ("<h2>Checks</h2><table><tr><th>feature</th><th>kind</th><th>result</th><th>baseline n</th>"
         "<th>window n</th><th>why</th></tr>"),
    ]
    for c in verdict.checks:
        parts.append(
            f"<tr><td>{escape(c.feature)}</td><td>{c.kind}</td>"
            f'<td style="color:{_COLOURS.get(c.result, "#b85c00")};font-weight:600">{c.result}</td>'
            f"<td>{c.baseline_n}</td><td>{c.window_n}</td><td>{escape(c.reason)}</td></tr>"
        )
    parts.append("</table>")
    if baseline is not None:
        parts.append(f'<p class="key"><span style="background:{_BASE}"></span>baseline '
                     f'<span style="background:{_NOW}"></span>now (share of records per bin)</p>')
        base: Profile = baseline.profile
        for name in sorted(set(base.numeric) & set(window.numeric)):
            if base.numeric[name] and window.numeric[name]:
                parts.append(f"<h2>{escape(name)}</h2>" + _numeric_chart(name, base.numeric[name], window.numeric[name]))
        for name in sorted(set(base.categorical) & set(window.categorical)):
            parts.append(f"<h2>{escape(name)}</h2>"
                         + _categorical_chart(name, base.categorical[name], window.categorical[name]))
        if baseline.scores:
            parts.append(f"<h2>Baseline evaluation scores</h2><pre>{escape(json.dumps(baseline.scores, indent=2, sort_keys=True, default=str))}</pre>")
    parts.append("</html>")
    return "\n".join(parts)
