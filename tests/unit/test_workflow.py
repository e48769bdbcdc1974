"""The release workflow our users run (.github/workflows/release.yml): OIDC only where it
deploys, every action pinned by commit."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "release.yml"
PINNED = re.compile(r"^\s*-?\s*uses:\s*[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+\s*$")


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _deploys(job: dict) -> bool:
    return any(str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@") for step in job["steps"])


def test_only_the_jobs_that_deploy_may_ask_for_an_oidc_token():
    workflow = _workflow()
    # The workflow-wide default grants no id-token (every job, the pull request's tests included, gets it)
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    deploying = {name for name, job in jobs.items() if _deploys(job)}
    assert deploying == {"staging", "production"}
    for name, job in jobs.items():
        granted = (job.get("permissions") or {}).get("id-token")
        assert granted == ("write" if name in deploying else None), name
        # a job that names its permissions gets only those: it must keep reading the repository
        if job.get("permissions"):
            assert job["permissions"].get("contents") == "read", name


def test_every_action_is_pinned_by_commit_with_its_release_beside_it():
    lines = [line for line in WORKFLOW.read_text().splitlines() if re.match(r"^\s*-?\s*uses:", line)]
    assert lines, "the workflow uses no action?"
    unpinned = [line.strip() for line in lines if not PINNED.match(line)]
    assert unpinned == []
