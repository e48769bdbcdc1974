"""`modelgate eval --summary-json / --summary-markdown`: what CI keeps of an evaluation, and the
pull request comment made of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modelgate_harness import cli
from modelgate_harness.control import load_release_dir
from modelgate_harness.eval_summary import COMMENT_MARKER, read_summary, summary_markdown

from modelgate.errors import ManifestInvalid

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "support-bot"


@pytest.fixture(scope="module")
def v3_against_v2(tmp_path_factory):
    """`modelgate eval` of v3 (a worse prompt) against v2, both summaries written."""
    out = tmp_path_factory.mktemp("summary")
    code = cli.main(["eval", str(EXAMPLES / "v3"), "--dataset", str(EXAMPLES / "dataset.jsonl"),
                     "--live", str(EXAMPLES / "v2"), "--summary-json", str(out / "s.json"),
                     "--summary-markdown", str(out / "s.md")])
    return code, out / "s.json", out / "s.md"


def test_the_comment_says_the_verdict_the_numbers_and_every_criterion(v3_against_v2):
    code, summary, comment = v3_against_v2
    document = json.loads(summary.read_text())
    text = comment.read_text()
    # the gate failed (exit 1) and both files say so
    assert code == 1 and document["verdict"] == "fail"
    assert text.startswith(COMMENT_MARKER) and "gate FAIL" in text
    candidate, live = document["sides"]["candidate"]["accuracy"], document["sides"]["live"]["accuracy"]
    assert f"| accuracy | {candidate:.3f} | {live:.3f} |" in text
    assert f"| accuracy | {candidate - live:+.3f} |" in text
    failed = [c["name"] for c in document["criteria"] if c["verdict"] == "fail"]
    assert failed and all(f"| {name.replace('_', chr(92) + '_')} | fail |" in text for name in failed)


def test_the_summary_is_accepted_only_for_the_folder_it_evaluated(v3_against_v2):
    _, summary, _ = v3_against_v2
    v3, _ = load_release_dir(EXAMPLES / "v3", commit="ab" * 20, branch="main")
    evaluation = read_summary(summary, v3)  # another commit or branch: the same release
    assert evaluation.verdict == "fail" and evaluation.cases == 40 and evaluation.live_accuracy is not None
    v2, _ = load_release_dir(EXAMPLES / "v2", commit=None, branch=None)
    with pytest.raises(ManifestInvalid, match="is of another release .*evaluate this folder, then submit it"):
        read_summary(summary, v2)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not JSON"),
        ('{"format": "something-else"}', "is not a `modelgate eval --summary-json` file"),
        (None, "can't be read"),
    ],
)
def test_a_file_that_is_no_summary_is_refused_naming_it(tmp_path, content, problem):
    path = tmp_path / "summary.json"
    if content is not None:
        path.write_text(content)
    v2, _ = load_release_dir(EXAMPLES / "v2", commit=None, branch=None)
    with pytest.raises(ManifestInvalid, match=problem):
        read_summary(path, v2)


def test_text_from_the_release_cannot_add_rows_links_or_markup_to_the_comment():
    # Given a summary whose folder name and criterion message carry table and HTML syntax
    document = {
        "verdict": "pass", "service": "svc", "model_id": "m-v1:0", "n_cases": 3, "release": "0" * 64,
        "release_dir": "x|y\n| forged | row |", "live_dir": None,
        "sides": {"candidate": {"accuracy": 1.0}}, "deltas": None, "deltas_ci95": None,
        "criteria": [{"name": "min_cases", "verdict": "pass", "message": "<img src=x onerror=alert(1)> [click](http://e.vil)"}],
    }
    text = summary_markdown(document)
    # Then no line starts a forged row, no tag is live, no link is formed
    assert "\n| forged" not in text and "x\\|y\\\\n\\| forged" in text
    assert "<img" not in text and "&lt;img" in text
    assert "[click](" not in text and "\\[click\\](http" in text
