"""The HTML report: self-contained, escaped, and showing what the gate decided."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from modelgate.evaluation.comparison import CANDIDATE, LIVE, CaseResult, build_report
from modelgate.evaluation.gate import evaluate_gate
from modelgate.evaluation.report import render_html, worst_regressions
from modelgate.policy import ReleasePolicy

SCRIPT = '<script>alert("pwned")</script>'
VOID = {"meta", "br", "circle", "line", "img", "hr", "input", "link"}


class GatePolicy(ReleasePolicy):
    max_p95_latency_increase_ms: float | None = None
    max_p95_latency_increase_ratio: float | None = None
    max_cost_increase_ratio: float | None = None


def result(side: str, i: int, score: float, **kw) -> CaseResult:
    return CaseResult(
        side=side,
        case_id=kw.pop("case_id", f"c{i}"),
        score=score,
        latency_ms=kw.pop("latency_ms", 40.0 + i),
        output=kw.pop("output", f"answer {i}"),
        cost_usd=kw.pop("cost_usd", 1e-5),
        scorer="contains",
        expected=kw.pop("expected", f"answer {i}"),
        inputs={"question": f"question {i}?"},
        **kw,
    )


def regressed_report():
    """20 cases: the candidate loses c0..c7 (c0 hostile output, c1 an error), wins c19."""
    cand, live = [], []
    for i in range(20):
        live.append(result(LIVE, i, 0.0 if i == 19 else 1.0))
        if i == 0:
            cand.append(result(CANDIDATE, i, 0.0, output=SCRIPT, expected="<b>bold</b> & 'quotes'"))
        elif i == 1:
            cand.append(result(CANDIDATE, i, 0.0, output=None, error="RuntimeError: <boom>"))
        else:
            cand.append(result(CANDIDATE, i, 0.0 if i <= 7 else 1.0, weight=3.0 if i == 4 else 1.0))
    return build_report(cand + live)


class TagBalance(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


@pytest.fixture
def page() -> str:
    report = regressed_report()
    policy = GatePolicy(max_p95_latency_increase_ms=50, max_cost_increase_ratio=0.1)
    return render_html(report, evaluate_gate(report, policy), title="support-bot <v3> vs v2")


def test_the_page_is_self_contained(page: str) -> None:
    # Given a rendered report / Then it fetches nothing: no URL, script, stylesheet or image
    assert not re.search(r"https?://", page)
    assert not re.search(r"\b(src|href)\s*=", page, re.IGNORECASE)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "url(" not in page and "@import" not in page
    # And it has its CSS and its chart inline
    assert "<style>" in page and "<svg" in page


def test_everything_from_the_dataset_and_the_model_is_escaped(page: str) -> None:
    # Given a model output that is a script, an expected answer with markup, an error with <>
    # Then they appear as text, never as markup
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &#x27;quotes&#x27;" in page
    assert "RuntimeError: &lt;boom&gt;" in page
    assert "<title>support-bot &lt;v3&gt; vs v2</title>" in page
    # And the page is well-formed: every tag closes in order
    parser = TagBalance()
    parser.feed(page)
    assert parser.problems == [] and parser.stack == []


def test_the_page_shows_every_criterion_with_its_verdict(page: str) -> None:
    report = regressed_report()
    verdict = evaluate_gate(report, GatePolicy(max_p95_latency_increase_ms=50, max_cost_increase_ratio=0.1))
    for c in verdict.criteria:
        assert f"<td>{c.name}</td>" in page
    assert "Gate failed: accuracy_drop (fail)" in page
    assert ">not applicable</span>" in page  # the latency ratio the policy doesn't set
    # And the chart plots the deltas with their interval and the policy's limit
    assert page.count("<circle") == 5
    assert "limit -5.0" in page  # accuracy: at most 5 points lower


def test_the_worst_regressed_cases_come_first_side_by_side(page: str) -> None:
    report = regressed_report()
    worst = worst_regressions(report, limit=3)
    # The heaviest loss (weight 3) first, then by case id; improvements are not regressions
    assert [c.case_id for c, _ in worst] == ["c4", "c0", "c1"]
    assert all(c.side == CANDIDATE and live.side == LIVE for c, live in worst)
    # And the page shows live's and the candidate's outputs of those cases
    section = page.split("Worst regressed cases")[1]
    assert section.index("<b>c4</b>") < section.index("<b>c0</b>") < section.index("<b>c1</b>")
    assert "<b>c19</b>" not in section and "<b>c8</b>" not in section


def test_a_first_release_has_no_chart_and_no_regressions() -> None:
    report = build_report([result(CANDIDATE, i, 1.0) for i in range(12)])
    html = render_html(report, evaluate_gate(report, ReleasePolicy()), title="first")
    assert "Gate passed" in html
    assert "No live side: nothing to compare" in html and "<svg" not in html
    assert "No live side: no regressions to show." in html


def test_throttled_cases_are_listed() -> None:
    results = [result(CANDIDATE, i, 1.0) for i in range(12)] + [result(LIVE, i, 1.0) for i in range(12)]
    results.append(result(CANDIDATE, 12, 0.0, throttled=True, error="throttled", output=None))
    report = build_report(results)
    html = render_html(report, evaluate_gate(report, ReleasePolicy()), title="t")
    assert "1 case(s) left out because the provider throttled them on some side: c12" in html
