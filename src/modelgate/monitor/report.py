"""A re-evaluation of live as one self-contained HTML page (the evaluation report's style:
inline CSS, no script, every model output escaped)."""

from __future__ import annotations

from modelgate.evaluation.comparison import CANDIDATE, LIVE, EvaluationReport
from modelgate.evaluation.report import _CSS, _answer, _e, _expected, worst_regressions

_VERDICT_COLOURS = {"regression": "#c62828", "no_regression": "#1b7f3b", "insufficient": "#b85c00"}


def _num(value: float | None, fmt: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{format(value, fmt)}{unit}"


def render_reevaluation(report: EvaluationReport, *, verdict: str, why: str, title: str, release_id: str) -> str:
    """Live now (the comparison's candidate side) against the evaluation that promoted it (its live side)."""
    rows = []
    for label, side in (("at promotion", LIVE), ("now", CANDIDATE)):
        m = report.sides.get(side)
        if m is None:
            continue
        rows.append(
            f"<tr><td>{label}</td><td class=num>{m.n}</td><td class=num>{_num(m.accuracy, '.3f')}</td>"
            f"<td class=num>{_num(m.error_rate, '.1%')}</td><td class=num>{_num(m.latency_p95_ms, '.1f', ' ms')}</td>"
            f"<td class=num>{_num(m.cost_per_request_usd, '.6f', ' USD')}</td></tr>"
        )
    worse = []
    for now, then in worst_regressions(report, 15):
        inputs = "\n".join(f"{k}: {v}" for k, v in (now.inputs or {}).items())
        worse.append(
            f"<tr><td><b>{_e(now.case_id)}</b></td><td><pre>{_e(inputs)}</pre></td><td>{_expected(now.expected)}</td>"
            f'<td>{_answer(then)}<span class="muted">score {then.score:.2f}</span></td>'
            f'<td>{_answer(now)}<span class="muted">score {now.score:.2f}</span></td></tr>'
        )
    cases = (
        "<table><thead><tr><th>case</th><th>inputs</th><th>expected</th><th>at promotion</th><th>now</th></tr></thead>"
        f"<tbody>{''.join(worse)}</tbody></table>"
        if worse else '<p class="muted">No case scores lower now than at promotion.</p>'
    )
    colour = _VERDICT_COLOURS.get(verdict, "#607080")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"
        f'<p class="muted">the same cases as the evaluation that promoted release {_e(release_id)}, paired by case</p>'
        f'<div class="banner" style="background:{colour}">{_e(verdict.replace("_", " "))}: {_e(why)}</div>'
        "<h2>Metrics</h2><table><thead><tr><th></th><th>cases</th><th>accuracy</th><th>errors</th><th>p95</th>"
        f"<th>cost/request</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"<h2>Cases that score lower now</h2>{cases}</body></html>"
    )
