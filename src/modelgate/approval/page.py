"""What approvers read: the approval mail, and the approval callback's HTML pages
(confirmation, result, and every refusal).

Pure functions from data to a page. Everything that comes from outside (the ledger record,
the form, error messages) is escaped with ``html.escape``; no page loads a script or
anything from elsewhere. The signed token appears once, in the confirmation form's hidden
field (the POST must carry it: that is what makes a cookie unnecessary); it is never shown
as text, and the task token is never anywhere near a page.

Headers (see :data:`PAGE_HEADERS`) keep the link's token out of Referer headers, caches
and frames (clickjacking an "Approve" button would otherwise be one iframe away).
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from typing import Any

from modelgate.approval.links import DECIDE_PATH, LinkClaims, link_ttl
from modelgate.contract import ReleaseContext
from modelgate.evaluation import format_side
from modelgate.text import one_line

CONTENT_TYPE = "text/html; charset=utf-8"
PAGE_HEADERS: dict[str, str] = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}"
    ".approve{background:#1a7f37;color:#fff}.reject{background:#cf222e;color:#fff}"
    "button{font-size:1rem;padding:.5rem 1.2rem;border:0;border-radius:4px;cursor:pointer}"
    "input,textarea{font-size:1rem;width:100%;box-sizing:border-box;margin:.2rem 0 .8rem}"
    ".note{color:#555;font-size:.9rem}"
)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str) -> str:
    """A whole document around already-escaped ``body``."""
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex,nofollow\">"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{_e(title)}</h1>{body}</body></html>"
    )


def _utc(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def _num(value: Any, fmt: str) -> str:
    if value is None:
        return "n/a"
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def release_summary(record: Mapping[str, Any], report_url: str | None = None, report_location: str | None = None) -> str:
    """The facts an approver decides on: what changes, and how it scored against live."""
    rows = [
        ("Service", record.get("service")),
        ("Release", record.get("release_id")),
        ("Commit", f"{record.get('commit', '?')} on {record.get('branch') or '?'}"),
        ("Author", record.get("author") or "unknown (the upload named none)"),
        ("Model", record.get("model_id")),
        ("Candidate version", record.get("candidate_version")),
        ("Live version", record.get("live_version")),
    ]
    parts = ["<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v is not None) + "</table>"]
    ev = record.get("evaluation") or {}
    sides = ev.get("sides") or {}
    if sides:
        parts.append("<h2>Evaluation (same cases, candidate vs live)</h2><table><tr><th></th><th>cases</th>"
                     "<th>accuracy</th><th>errors</th><th>p95 latency</th><th>cost / request</th></tr>")
        for name, side in sides.items():
            side = side or {}
            parts.append(
                f"<tr><th>{_e(name)}</th><td>{_e(side.get('n'))}</td>"
                f"<td>{_e(_num(side.get('accuracy'), '.3f'))}</td>"
                f"<td>{_e(_num(side.get('error_rate'), '.1%'))}</td>"
                f"<td>{_e(_num(side.get('latency_p95_ms'), '.1f'))} ms</td>"
                f"<td>{_e(_num(side.get('cost_per_request_usd'), '.6f'))} USD</td></tr>"
            )
        parts.append("</table>")
    deltas = {k: v for k, v in (ev.get("deltas") or {}).items() if v is not None}
    if deltas:
        ci = ev.get("deltas_ci95") or {}
        items = []
        for key, value in deltas.items():
            interval = ci.get(key)
            band = f" (95% CI {_num(interval[0], '+.3g')} … {_num(interval[1], '+.3g')})" if interval else ""
            items.append(f"<li>{_e(key)}: {_e(_num(value, '+.4g'))}{_e(band)}</li>")
        parts.append("<p>Candidate minus live:</p><ul>" + "".join(items) + "</ul>")
    test = ev.get("paired_test")
    if isinstance(test, Mapping) and test.get("p_value") is not None:
        parts.append(
            f"<p>{_e(test.get('method'))}: p = {_e(_num(test.get('p_value'), '.3g'))} "
            f"({_e(test.get('b'))} cases worse, {_e(test.get('c'))} better)</p>"
        )
    gate = record.get("gate")
    if isinstance(gate, Mapping) and "passed" in gate:
        parts.append(f"<p>Gate: {'passed' if gate['passed'] else 'FAILED'}</p>")
    if report_url:
        parts.append(f"<p><a href=\"{_e(report_url)}\" rel=\"noreferrer noopener\">Evaluation report</a></p>")
    elif report_location:
        parts.append(f"<p>Evaluation report: <code>{_e(report_location)}</code></p>")
    return "".join(parts)


def confirmation_page(
    claims: LinkClaims, token: str, record: Mapping[str, Any], *, report_url: str | None = None,
    report_location: str | None = None, four_eyes: bool = False,
) -> str:
    """GET: what the link would do, and the form whose POST does it."""
    verb = claims.decision
    title = f"{verb.capitalize()} release of {record.get('service', '?')}?"
    warning = (
        "<p class=\"note\">This service's policy asks for four eyes: the release's author can't approve it.</p>"
        if four_eyes and verb == "approve" else ""
    )
    form = (
        f"<form method=\"post\" action=\"{_e(DECIDE_PATH)}\">"
        f"<input type=\"hidden\" name=\"t\" value=\"{_e(token)}\">"
        f"<p>You {_e(verb)} as <strong>{_e(claims.approver or 'anyone (this reject link names nobody)')}</strong>: "
        "the link is bound to you.</p>"
        "<label for=\"comment\">Comment (recorded with the decision)</label>"
        "<textarea id=\"comment\" name=\"comment\" rows=\"3\" maxlength=\"2000\"></textarea>"
        f"<button type=\"submit\" class=\"{_e(verb)}\">{_e(verb.capitalize())} this release</button>"
        "</form>"
    )
    return page(
        title,
        "<p>Opening this page decided nothing. Check the numbers, then confirm below.</p>"
        + release_summary(record, report_url, report_location)
        + warning
        + form
        + f"<p class=\"note\">This link works once and expires at {_e(_utc(claims.expires_at))}. "
        "Your name (from the link), IP address and browser are recorded with the decision.</p>",
    )


def result_page(claims: LinkClaims, record: Mapping[str, Any]) -> str:
    """POST succeeded: the decision as the ledger recorded it."""
    approval = record.get("approval") or {}
    done = "approved" if claims.decision == "approve" else "rejected"
    body = (
        f"<p>Release <code>{_e(claims.release_id)}</code> of {_e(record.get('service'))} was {done} "
        f"by {_e(approval.get('approver'))} at {_e(approval.get('at'))}.</p>"
    )
    if approval.get("comment"):
        body += f"<p>Comment: {_e(approval['comment'])}</p>"
    body += (
        "<p class=\"note\">The release pipeline continues with the canary.</p>" if claims.decision == "approve"
        else "<p class=\"note\">The release pipeline stops; the ledger records why.</p>"
    )
    return page(f"Release {done}", body)


def refusal_page(title: str, message: str, *, hint: str | None = None) -> str:
    """Any 4xx: what is wrong, and that nothing was decided."""
    body = f"<p>{_e(message)}</p>"
    if hint:
        body += f"<p class=\"note\">{_e(hint)}</p>"
    return page(title, body)


# ---------------------------------------------------------------------- the mail
def approval_message(
    ctx: ReleaseContext, links: dict[str, str] | None = None, *, author: str | None = None,
    recipient: str | None = None, report_url: str | None = None,
) -> str:
    """The mail approvers get: the numbers, the report, and signed links (never the task token).

    ``recipient``: the named approver this copy (and its links) is for; ``author``: the
    release's verified author. Every line holds one thing: text from the upload (branch,
    commit, model id, author) goes through :func:`modelgate.text.one_line`, so a newline or a
    terminal escape in it can't forge a line or act.
    """
    ev = ctx.evaluation.model_dump() if ctx.evaluation else {}
    model_id = ctx.manifest.model.model_id if ctx.manifest else "?"
    lines = [
        f"Release {one_line(ctx.release_id)} of {one_line(ctx.service)} waits for your decision.",
        (f"Commit {one_line(ctx.commit, 64)} on {one_line(ctx.branch, 200)}; model "
         f"{one_line(model_id, 200)}; candidate version {one_line(ctx.candidate_version)}."),
        (f"Models {one_line(ctx.service)}'s policy allows: "
         f"{one_line(ctx.policy.allowed_models_text(), 400) if ctx.policy else 'unknown'}."),
        "",
        "Evaluation (candidate vs live, same cases):",
    ]
    for name, side in (ev.get("sides") or {}).items():
        lines.append("  " + format_side(name, side))
    deltas = ev.get("deltas") or {}
    if deltas:
        lines.append("  deltas: " + ", ".join(f"{k} {v:+.4g}" for k, v in deltas.items() if v is not None))
    ci = (ev.get("deltas_ci95") or {}).get("accuracy_delta")
    if ci:
        lines.append(f"  accuracy delta 95% CI: [{ci[0]:+.3f}, {ci[1]:+.3f}]")
    if ev.get("paired_test"):
        test = ev["paired_test"]
        lines.append(f"  {test.get('method')}: p={test.get('p_value'):.3g} ({test.get('b')} worse / {test.get('c')} better)")
    if report_url:  # a presigned HTTPS link a mail client opens (approval.report_link)
        lines.append(f"Report: {one_line(report_url, 4096)}")
    for key in ("report_html_key", "report_key"):
        if ev.get(key):
            lines.append(f"Report in S3: s3://{one_line(ctx.artifact.bucket)}/{one_line(ev[key], 1024)}")
            break
    if author:
        lines.append(f"Uploaded by: {one_line(author, 256)}")
    if ctx.policy is not None and ctx.policy.four_eyes:
        lines.append(f"Four eyes: the release's author ({one_line(author, 256) or 'unknown'}) can't approve it.")
    if links:
        ttl = link_ttl(ctx.policy.approval_timeout_seconds if ctx.policy else 0)
        lines.append("")
        if recipient:
            lines.append(f"These links are yours ({one_line(recipient)}): they decide as you. Don't forward them.")
        if "approve" in links:
            lines.append(f"Approve:  {links['approve']}")
        elif recipient:
            lines.append("Approve:  not by you (four eyes: you uploaded this release)")
        else:
            lines.append("Approve:  with `modelgate approve` (your IAM identity); the policy names no link approvers")
        if "reject" in links:
            lines.append(f"Reject:   {links['reject']}")
        lines.append(
            f"(Each link opens a confirmation page, works once and expires in {ttl // 3600} h {ttl % 3600 // 60} min.)"
        )
    lines += [
        "",
        "With AWS credentials:",
        f"  modelgate approve {ctx.release_id} --comment '...'",
        f"  modelgate reject {ctx.release_id} --comment '...'",
    ]
    return "\n".join(lines)
