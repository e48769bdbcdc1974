"""Session-wide: the least-privilege report of every embedded AWS the tests ran.

Each ``LocalAWS`` that enforces IAM leaves a snapshot of its stack's grants and of the
calls it authorised (``modelgate_emulator.iam``). At the end of the session they are
written to ``build/iam/`` (``$MODELGATE_IAM_DIR`` overrides; gitignored): the session's
records as JSON and its report as markdown. ``make iam-report`` merges them with the
demo's and fails on a grant unused without a written reason.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest

SLOW_REASON = "a scale run of a property the suite also tests at a smaller scale: `make test-slow` (or --run-slow) runs it"


# The test process's garbage collector runs young collections every 50,000 net allocations
# instead of 700 (and a full one after 5 middle ones instead of 10): the embedded AWS allocates
# fast and keeps a large heap (moto's backends, botocore's models, each stack's handler modules),
# so at the default thresholds collections took ~12% of a state-machine test module's CPU
# (8.5 of 68 CPU s in test_release_paths.py: 13 full collections at ~0.5 s each); at these,
# 3.2 s, for ~50 MB more peak memory. Cycles are still collected; only less often.
GC_THRESHOLDS = (50_000, 20, 5)


def pytest_configure(config: pytest.Config) -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="also run the tests marked slow (scale runs)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` repeat a property at full scale (more seeds, more cases, more
    services); `make test` skips them, saying so, and `make test-slow` runs them."""
    if config.getoption("--run-slow") or os.environ.get("MODELGATE_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason=SLOW_REASON)
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from modelgate_emulator import iam, iam_report

    snapshots = iam.collected()
    if not snapshots:
        return
    directory = Path(os.environ.get("MODELGATE_IAM_DIR") or Path(session.config.rootpath) / "build" / "iam")
    label = f"pytest-{os.getpid()}"
    template = Path(session.config.rootpath) / "template.yaml"  # the project's stacks, not fixtures
    path = iam_report.write_session(directory, label, snapshots, template=template)
    if path is not None:
        report = iam_report.merge(json.loads(path.read_text()))
        (directory / f"{label}.md").write_text(iam_report.render_markdown(report))
