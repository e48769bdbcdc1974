"""What `modelgate eval` leaves for CI: a JSON summary (`--summary-json`, read back by
`modelgate submit --eval-summary`) and a pull request comment body (`--summary-markdown`).

The JSON names what it evaluated by :func:`modelgate.upload_metadata.release_fingerprint`
(model, parameters, every prompt's digest), so `submit` refuses a summary of other prompts.
The Markdown is GitHub-flavoured: a verdict line, the sides' metrics, the paired deltas and
every gate criterion, under a hidden marker (:data:`COMMENT_MARKER`) by which the workflow
finds and updates its earlier comment instead of adding one per push. Text that comes from
the release folder or the gate's messages is escaped for Markdown tables (``|``, newlines,
HTML), so a release can't add rows, links or markup to the comment.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from modelgate.contract import GateVerdict
from modelgate.errors import ManifestInvalid, shown
from modelgate.evaluation.comparison import CANDIDATE, LIVE, EvaluationReport
from modelgate.manifest import Manifest
from modelgate.text import one_line
from modelgate.upload_metadata import CiEvaluation, release_fingerprint

SUMMARY_FORMAT = "modelgate-eval-summary/1"
COMMENT_MARKER = "<!-- modelgate-eval-summary -->"
MAX_SUMMARY_BYTES = 1024 * 1024


def summary_document(
    report: EvaluationReport, verdict: GateVerdict, manifest: Manifest, *, release_dir: str, live_dir: str | None
) -> dict[str, Any]:
    """The evaluation as CI keeps it: what was evaluated (fingerprint), the verdict, the numbers."""
    summary = report.summary()
    return {
        "format": SUMMARY_FORMAT,
        "service": manifest.service,
        "release": release_fingerprint(manifest),
        "release_dir": release_dir,
        "live_dir": live_dir,
        "model_id": manifest.model.model_id,
        "verdict": "pass" if verdict.passed else "fail",
        "n_cases": summary["n_cases"],
        "sides": summary["sides"],
        "deltas": summary["deltas"],
        "deltas_ci95": summary["deltas_ci95"],
        "paired_test": summary["paired_test"],
        "criteria": [c.model_dump(mode="json") for c in verdict.criteria],
    }


def read_summary(path: Path, manifest: Manifest) -> CiEvaluation:
    """A `--summary-json` file as the evaluation of ``manifest``; ManifestInvalid naming the
    problem when it is not one (wrong format, another release, numbers missing)."""
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestInvalid(f"evaluation summary {where} can't be read: {exc.strerror or exc}") from exc
    if len(data) > MAX_SUMMARY_BYTES:
        raise ManifestInvalid(f"evaluation summary {where} is {len(data):,} bytes; at most {MAX_SUMMARY_BYTES:,}")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestInvalid(f"evaluation summary {where} is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != SUMMARY_FORMAT:
        raise ManifestInvalid(
            f"evaluation summary {where} is not a `modelgate eval --summary-json` file (format {SUMMARY_FORMAT})"
        )
    expected = release_fingerprint(manifest)
    if document.get("release") != expected:
        raise ManifestInvalid(
            f"evaluation summary {where} is of another release (fingerprint {shown(document.get('release'), 20)}, "
            f"this folder's is {expected[:12]}…): evaluate this folder, then submit it"
        )
    sides = document.get("sides") if isinstance(document.get("sides"), dict) else {}
    candidate, live = sides.get(CANDIDATE), sides.get(LIVE)
    if not isinstance(candidate, dict):
        raise ManifestInvalid(f"evaluation summary {where} has no candidate metrics")
    try:
        return CiEvaluation(
            verdict=document.get("verdict"),  # type: ignore[arg-type]
            accuracy=candidate.get("accuracy"),  # type: ignore[arg-type]
            live_accuracy=live.get("accuracy") if isinstance(live, dict) else None,
            cases=document.get("n_cases"),  # type: ignore[arg-type]
            release=expected,
        )
    except ValueError as exc:
        raise ManifestInvalid(f"evaluation summary {where}: {shown(str(exc), 400)}") from exc


# ---------------------------------------------------------------------- the pull request comment
def _md(value: Any, limit: int = 300) -> str:
    """Text in a Markdown table cell: one line, ``|`` and HTML escaped, Markdown punctuation inert."""
    text = one_line(value, limit)
    for ch, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(ch, escaped)
    return "".join("\\" + ch if ch in "\\`*_[]|#!" else ch for ch in text)


def _num(value: Any, fmt: str, unit: str = "") -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "n/a"
    return f"{format(value, fmt)}{unit}"


_METRICS = (
    ("accuracy", "accuracy", ".3f", ""),
    ("p95 latency", "latency_p95_ms", ".1f", " ms"),
    ("cost / request", "cost_per_request_usd", ".6f", " USD"),
    ("error rate", "error_rate", ".1%", ""),
)
_DELTAS = (
    ("accuracy", "accuracy_delta", "+.3f", ""),
    ("error rate", "error_rate_delta", "+.1%", ""),
    ("p95 latency", "p95_latency_delta_ms", "+.1f", " ms"),
    ("cost / request", "cost_delta_usd", "+.6f", " USD"),
)


def summary_markdown(document: dict[str, Any]) -> str:
    """The pull request comment for one `--summary-json` document."""
    passed = document["verdict"] == "pass"
    sides = document.get("sides") or {}
    names = [n for n in (CANDIDATE, LIVE) if n in sides]
    lines = [
        COMMENT_MARKER,
        f"### Modelgate evaluation: {'✅ gate PASS' if passed else '❌ gate FAIL'}",
        "",
        f"**{_md(document.get('release_dir'), 200)}** ({_md(document.get('service'))}, model "
        f"{_md(document.get('model_id'))}) on {_num(document.get('n_cases'), 'd')} cases"
        + (f", against live **{_md(document['live_dir'], 200)}** on the same cases" if document.get("live_dir") else ""),
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for label, key, fmt, unit in _METRICS:
        lines.append(f"| {label} | " + " | ".join(_num(sides[n].get(key), fmt, unit) for n in names) + " |")
    deltas, intervals = document.get("deltas") or {}, document.get("deltas_ci95") or {}
    if deltas:
        lines += ["", "| candidate − live | delta | 95% interval |", "|---|---:|---:|"]
        for label, key, fmt, unit in _DELTAS:
            interval = intervals.get(key)
            shown_interval = (
                f"[{_num(interval[0], fmt, unit)}, {_num(interval[1], fmt, unit)}]"
                if isinstance(interval, list) and len(interval) == 2 else "n/a"
            )
            lines.append(f"| {label} | {_num(deltas.get(key), fmt, unit)} | {shown_interval} |")
    lines += ["", "| gate criterion | verdict | |", "|---|---|---|"]
    for criterion in document.get("criteria") or []:
        lines.append(
            f"| {_md(criterion.get('name'), 80)} | {_md(criterion.get('verdict'), 20)} | "
            f"{_md(criterion.get('message'), 400)} |"
        )
    lines += ["", f"<sub>release fingerprint `{_md(document.get('release'), 64)}` · `modelgate eval`</sub>", ""]
    return "\n".join(lines)
