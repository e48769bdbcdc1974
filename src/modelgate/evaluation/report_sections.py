"""The report's statistics sections: slices, repeats, power and the judge, for an approver.

Each section answers one question in words first and numbers second: is any part of the
dataset worse (slices)? Does the model give the same answer twice (repeats)? How small a
regression could this evaluation have caught (power)? Did the LLM judge earn a say (judge)?
Everything from a dataset or model is escaped, as in ``modelgate.evaluation.report``.
"""

from __future__ import annotations

from html import escape
from typing import Any

from modelgate.contract import Criterion, GateVerdict
from modelgate.evaluation.comparison import CANDIDATE, LIVE, CaseOutcome, EvaluationReport, per_case
from modelgate.evaluation.judges import JUDGE_SCORER
from modelgate.evaluation.power import family_size, power_line
from modelgate.policy import ReleasePolicy

COLOURS = {"pass": "#1b7f3b", "fail": "#c62828", "inconclusive": "#b85c00", "not_applicable": "#607080"}


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def badge(verdict: str, text: str | None = None) -> str:
    colour = COLOURS.get(verdict, "#607080")
    return f'<span class="v" style="background:{colour}">{_e(text or verdict.replace("_", " "))}</span>'


def _pts(x: float | None) -> str:
    return "n/a" if x is None else f"{round(x * 100, 1) + 0.0:.1f} pts"


def _scored(report: EvaluationReport) -> list:
    excluded = set(report.throttled_case_ids)
    return [r for r in report.results if r.case_id not in excluded]


def _outcomes(report: EvaluationReport, keep) -> tuple[dict[str, CaseOutcome], dict[str, CaseOutcome]]:
    scored = [r for r in _scored(report) if keep(r)]
    return (per_case([r for r in scored if r.side == CANDIDATE]), per_case([r for r in scored if r.side == LIVE]))


def _accuracy(outcomes: dict[str, CaseOutcome]) -> float | None:
    total = sum(o.weight for o in outcomes.values())
    return sum(o.weight * o.score for o in outcomes.values()) / total if total else None


# --------------------------------------------------------------------------- slices


def slices_section(report: EvaluationReport, verdict: GateVerdict) -> str:
    """One row per tested scope (all cases, each slice, the judge's cases): the drop, its
    interval, the limit, the Holm-adjusted p-value and the verdict."""
    drops = [c for c in verdict.criteria if c.name.startswith("accuracy_drop") or c.name == "judge_accuracy_drop"]
    if len(drops) < 2:
        return ""
    rows = []
    for c in drops:
        scope, keep = _scope(c.name, verdict)
        cand, live = _outcomes(report, keep)
        interval = f"{_pts(c.interval[0])} to {_pts(c.interval[1])}" if c.interval else ""
        acc_c, acc_l = _accuracy(cand), _accuracy(live)
        note = " (not gating)" if c.name == "judge_accuracy_drop" and c.verdict == "not_applicable" else ""
        rows.append(
            f"<tr><td>{_e(scope)}</td><td class=\"num\">{len(cand)}</td>"
            f'<td class="num">{"n/a" if acc_l is None else f"{acc_l:.2f}"}</td>'
            f'<td class="num">{"n/a" if acc_c is None else f"{acc_c:.2f}"}</td>'
            f'<td class="num"><b>{_e(_pts(c.observed))}</b></td><td class="num">{_e(interval)}</td>'
            f'<td class="num">{_e(_pts(c.threshold))}</td>'
            f'<td class="num">{"" if c.p_value is None else f"{c.p_value:.3g}"}</td>'
            f"<td>{badge(c.verdict)}{_e(note)}</td></tr>"
        )
    holm = verdict.multiple_comparisons or "one paired test: no correction needed"
    return (
        "<h2>Slices: is any part of the dataset worse?</h2>"
        f'<p class="muted">Each tagged slice is judged on its own cases against its own limit. {_e(holm)}.</p>'
        "<table><thead><tr><th>scope</th><th>cases</th><th>live</th><th>candidate</th><th>drop</th>"
        "<th>95% CI of the drop</th><th>limit</th><th>p (Holm-adjusted)</th><th>verdict</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _scope(name: str, verdict: GateVerdict):
    gated_judge = verdict.judge is None or verdict.judge.gating

    def not_ungated_judge(r) -> bool:
        return gated_judge or r.scorer != JUDGE_SCORER

    if name == "judge_accuracy_drop":
        return "cases the LLM judge scored", lambda r: r.scorer == JUDGE_SCORER
    if name.startswith("accuracy_drop["):
        tag = name[len("accuracy_drop["):-1]
        return f"slice: {tag}", lambda r: tag in r.tags and not_ungated_judge(r)
    return "all cases", not_ungated_judge


# --------------------------------------------------------------------------- repeats


def _dots(o: CaseOutcome | None) -> str:
    if o is None:
        return ""
    return f'<span title="{o.passes} of {o.calls} passed">{"●" * o.passes}{"○" * (o.calls - o.passes)}</span>'


def repeats_section(report: EvaluationReport, rows: int = 30) -> str:
    """Per side: pass rate, pass^k and flip rate; then the cases whose outcome moved."""
    if report.repeats < 2 or not report.consistency:
        return ""
    sides = [s for s in (CANDIDATE, LIVE) if s in report.consistency]
    head = "".join(f"<th>{_e(s)}</th>" for s in sides)

    def row(label: str, fmt) -> str:
        return f"<tr><td>{label}</td>" + "".join(
            f'<td class="num">{_e(fmt(report.consistency[s]))}</td>' for s in sides) + "</tr>"

    k = report.repeats
    table = (
        f"<table><thead><tr><th>every case run {k} times per side</th>{head}</tr></thead><tbody>"
        + row("mean per-case pass rate", lambda c: f"{c.pass_rate:.1%}")
        + row(f"pass^{k}: passed all {k} times", lambda c: f"{c.pass_all_k:.1%}")
        + row("flip rate: outcome changed between repeats", lambda c: f"{c.flip_rate:.1%} ({len(c.flipped_case_ids)})")
        + "</tbody></table>"
    )
    cand, live = _outcomes(report, lambda r: True)
    moved = sorted(
        (cid for cid in cand if cand[cid].flipped or (cid in live and (live[cid].flipped or live[cid].passes
                                                                       != cand[cid].passes))),
        key=lambda cid: (-(live[cid].score - cand[cid].score) if cid in live else 0.0, cid),
    )
    lines = "".join(
        f"<tr><td>{_e(cid)}</td><td>{_dots(live.get(cid))}</td><td>{_dots(cand[cid])}</td>"
        f'<td class="num">{cand[cid].score - live[cid].score if cid in live else 0.0:+.2f}</td></tr>'
        for cid in moved[:rows]
    )
    per_case_table = (
        "<p>Cases whose outcome moved (● passed, ○ failed, one mark per repeat), the biggest loss first"
        + (f" (first {rows} of {len(moved)})" if len(moved) > rows else "")
        + ":</p><table><thead><tr><th>case</th><th>live</th><th>candidate</th><th>pass-rate change</th></tr>"
        f"</thead><tbody>{lines}</tbody></table>" if moved else '<p class="muted">No case changed outcome.</p>'
    )
    return (
        "<h2>Repeats: does the model give the same answer twice?</h2>"
        f'<p class="muted">The case is the unit: a case\'s score is its pass rate over its {k} repeats, '
        "the intervals resample cases with all their repeats, and the paired test compares per-case pass "
        "rates (exact sign test), so repeats never count as extra independent evidence.</p>"
        + table + per_case_table
    )


# --------------------------------------------------------------------------- power


def power_section(report: EvaluationReport, verdict: GateVerdict, policy: ReleasePolicy | None) -> str:
    """For each tested scope: the smallest drop this many cases detect, at live's measured
    accuracy and the measured discordance, and the cases the limit would need."""
    if policy is None or LIVE not in report.sides:
        return ""
    judged = verdict.judge is not None and verdict.judge.gating
    tests = family_size(policy, judged)
    alpha = policy.significance_level / tests
    items = []
    limits = {c.name: c.threshold for c in verdict.criteria}
    for name in ["accuracy_drop", *(f"accuracy_drop[{t}]" for t in sorted(policy.slices))]:
        scope, keep = _scope(name, verdict)
        cand, live = _outcomes(report, keep)
        common = [cid for cid in cand if cid in live]
        if not common:
            continue
        live_acc = _accuracy({cid: live[cid] for cid in common}) or 0.0
        discordant = sum(cand[cid].score != live[cid].score for cid in common) / len(common)
        if live_acc <= 0.0 or discordant <= 0.0:
            items.append(f"<li>{_e(scope)}: candidate and live never disagreed on these {len(common)} cases "
                         "(or live scored nothing): no discordance to plan power from.</li>")
            continue
        line = power_line(scope, len(common), float(limits.get(name) or 0.0), alpha, live_acc, tests=tests,
                          assumed="(measured)", discordance=discordant)
        items.append(f"<li>{_e(line.statement.replace('(given)', '(measured)'))}</li>")
    if not items:
        return ""
    return (
        "<h2>Power: how small a regression could this evaluation catch?</h2>"
        '<p class="muted">Two-sided exact McNemar test at 80% power (Connor\'s approximation), live\'s measured '
        "accuracy and the measured discordance (the share of cases the two sides answered differently); with "
        "several tests, alpha is divided by their number (Holm's strictest step). A drop smaller than the "
        "smallest detectable one can pass unnoticed.</p>"
        f"<ul>{''.join(items)}</ul>"
    )


# --------------------------------------------------------------------------- judge


def judge_section(verdict: GateVerdict) -> str:
    judge = verdict.judge
    if judge is None:
        return ""
    status = badge("pass", "gates") if judge.gating else badge("not_applicable", "shown, not gating")
    kappa = "undefined" if judge.kappa is None else f"{judge.kappa:.2f}"
    accuracy = "n/a" if judge.accuracy is None else f"{judge.accuracy:.0%}"
    digests = "<br>".join(_e(d) for d in judge.rubric_sha256)
    return (
        "<h2>LLM judge: did it earn a say?</h2>"
        f"<p>{status} {_e(judge.reason)}.</p>"
        "<table><tbody>"
        f"<tr><td>judge model</td><td>{_e(judge.model_id)}</td></tr>"
        f"<tr><td>rubric sha256</td><td><code>{digests}</code></td></tr>"
        f"<tr><td>human-graded answers</td><td>{judge.graded}</td></tr>"
        f"<tr><td>Cohen's kappa (needs &ge; {judge.min_kappa:.2f})</td><td>{kappa}</td></tr>"
        f"<tr><td>raw agreement</td><td>{accuracy}</td></tr>"
        "</tbody></table>"
        '<p class="muted">Kappa, not raw agreement, is the bar: it discounts the agreement two raters reach by '
        "chance, so a judge that passes everything on a mostly-good labelled set does not earn a say.</p>"
    )


def adjusted_p(c: Criterion) -> str:
    return "" if c.p_value is None else f"{c.p_value:.3g}"
