"""The release workflow's staging and production jobs (.github/workflows/release.yml), their
`run:` steps executed unchanged, as GitHub's runner runs them (bash -e), against two stacks
on the embedded AWS: `modelgate local up --stack modelgate-staging` and `--stack modelgate-prod`,
each its own process on its own port, both named in one state file that the steps find through
MODELGATE_LOCAL. The `uses:` steps are replaced by what they provide: the checkout (this
repository is the working directory), setup-python (`modelgate` and `python3` on PATH) and
configure-aws-credentials (the environment: locally the state file hands each command the keys
of its principal).

Two full releases at most: staging's (submitted by the staging job, approved by an approver,
promoted) and production's (submitted by the production job; it ends waiting for approval).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import HANG_GUARD_SECONDS
from modelgate_harness import cli
from modelgate_harness.control import update_policy
from modelgate_harness.polling import wait_until
from modelgate_harness.server import LocalStateError, control_from_state, local_stack_state

pytestmark = pytest.mark.enable_socket

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
STAGING, PROD = "modelgate-staging", "modelgate-prod"
PROMOTED_SHA = "5e" * 20  # the commit main pushed (staging) and the tag points at (production)
UNSTAGED_SHA = "0f" * 20  # a tag on a commit staging never saw
# An approver is asked in both stages (samconfig.toml: ApprovalMode=manual); the whole traffic at once
# and a short watch (what crosses the stages is the subject here, not the canary)
FAST = {"rollout": "AllAtOnce", "post_promotion_watch_seconds": 60}
STACK_PARAMETERS = {
    STAGING: ["Stage=staging", "ApprovalMode=manual"],
    PROD: ["Stage=prod", "ApprovalMode=manual", "RequiresStage=staging"],  # as samconfig.toml's prod
}


def _step(job: str, name: str) -> dict:
    steps = [s for s in yaml.safe_load(WORKFLOW.read_text())["jobs"][job]["steps"] if s.get("name", "").startswith(name)]
    assert len(steps) == 1, f"{job} has {len(steps)} steps named {name!r}"
    return steps[0]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stages:
    state: Path
    tmp: Path
    bin_dir: Path
    staging_job: subprocess.CompletedProcess[str] | None = None  # the staging job's submit step, as it ran

    def cli(self, *args: str) -> list[str]:
        return ["--local", "--local-state", str(self.state), *args]

    def status(self, stack: str, release: str) -> dict:
        control = control_from_state(self.state, stack)
        with control.acting("operator"):
            return control.ledger().get(release) or {}

    def wait_for(self, stack: str, release: str, *statuses: str) -> dict:
        return wait_until(lambda: (r := self.status(stack, release)).get("status") in statuses and r, 300,
                          f"{release} to reach {' or '.join(statuses)} in {stack}", interval=0.2,
                          progress=lambda: self.status(stack, release).get("status"))

    def runner(self, sha: str, ref_name: str, name: str) -> dict[str, str]:
        """The runner's environment for one job: the workflow's env, GitHub's variables, PATH."""
        temp = self.tmp / name
        temp.mkdir()
        (temp / "summary.md").write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELGATE_", "AWS_", "GITHUB_"))}
        return {**env, **yaml.safe_load(WORKFLOW.read_text())["env"],
                "PATH": f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}", "MODELGATE_LOCAL": str(self.state),
                "GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "release-bot", "GITHUB_SHA": sha,
                "GITHUB_REF_NAME": ref_name, "RUNNER_TEMP": str(temp),
                "GITHUB_STEP_SUMMARY": str(temp / "summary.md"), "AWS_REGION": "us-east-1"}


def run_step(step: dict, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A `run:` step as GitHub's runner runs it on Linux (bash -e, the step's file), in the checkout."""
    script = Path(env["RUNNER_TEMP"]) / "step.sh"
    script.write_text(step["run"])
    return subprocess.run(["bash", "-e", str(script)], cwd=ROOT, env={**env, **step.get("env", {})},
                          capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> Iterator[Stages]:
    """Both stacks served (one `modelgate local up` each, one state file), the sample service on
    FAST in both, and production trusting staging's key (an operator's acts, through the CLI)."""
    tmp = tmp_path_factory.mktemp("workflow-stages")
    state = tmp / "local.json"
    code_path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "local"), *filter(None, [os.environ.get("PYTHONPATH")])])
    servers = []
    for stack, parameters in STACK_PARAMETERS.items():
        log = (tmp / f"{stack}.log").open("w")  # a pipe nobody reads would fill and block the server
        command = [sys.executable, "-m", "modelgate_harness.cli", "local", "up", "--stack", stack,
                   "--port", str(_free_port()), "--time-factor", "0.003", "--state-file", str(state)]
        for parameter in parameters:
            command += ["--parameter", parameter]
        servers.append((stack, log, subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": code_path})))

    def up(stack: str) -> bool:
        try:
            return bool(local_stack_state(state, stack))
        except LocalStateError:  # not written yet, or not naming this stack yet
            return False

    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "modelgate"  # `pip install .`: this checkout's CLI
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{code_path}" exec "{sys.executable}" -m modelgate_harness.cli "$@"\n')
    shim.chmod(0o755)
    (bin_dir / "python3").symlink_to(sys.executable)  # setup-python
    try:
        for stack, _log, process in servers:
            try:
                wait_until(lambda s=stack, p=process: up(s) or p.poll() is not None, HANG_GUARD_SECONDS,
                           f"{stack} to start", interval=0.2)
            except TimeoutError:
                pass
            if not up(stack):
                pytest.fail(f"{stack} did not start:\n" + (tmp / f"{stack}.log").read_text()[-5000:])
        for stack in STACK_PARAMETERS:
            update_policy(control_from_state(state, stack), "support-bot", **FAST)
        pem = tmp / "staging.pem"
        assert cli.main(["--local", "--local-state", str(state), "--stack", STAGING, "public-key", "--out",
                         str(pem)]) == 0
        assert cli.main(["--local", "--local-state", str(state), "--stack", PROD, "trust", "staging",
                         "--public-key", str(pem)]) == 0
        yield Stages(state, tmp, bin_dir)
    finally:
        for _stack, log, process in servers:
            process.terminate()
        for _stack, log, process in servers:
            try:  # a hang guard, no speed limit (shutting down stops executions and waits for invocations)
                process.wait(timeout=HANG_GUARD_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
    assert not state.exists()  # each server removed its entry; the last one the file


@pytest.fixture(scope="module")
def staged(stages) -> str:
    """The staging job ran for PROMOTED_SHA on main; an approver approved; staging promoted it."""
    env = stages.runner(PROMOTED_SHA, "main", "staging-job")
    result = run_step(_step("staging", "Submit the release to staging"), env)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    match = re.fullmatch(r"release id: (support-bot-\S+)\n", summary)
    assert match, summary
    release = match.group(1)
    stages.staging_job = result
    stages.wait_for(STAGING, release, "PendingManualApproval")
    assert cli.main(stages.cli("--stack", STAGING, "approve", release, "--comment", "staging looks right")) == 0
    assert stages.wait_for(STAGING, release, "Promoted", "RolledBack", "Failed", "Rejected")["status"] == "Promoted"
    return release


def test_the_staging_job_evaluates_submits_and_shows_the_release(stages, staged):
    result, release = stages.staging_job, staged
    # CI's evaluation ran first (its verdict goes in the upload's metadata), then the upload, then its status
    assert "gate: PASS" in result.stdout and "summary: " in result.stdout
    prefix = f"releases/support-bot/{PROMOTED_SHA}/"
    assert f"uploaded {prefix}prompts/system.txt" in result.stderr
    assert f"uploaded {prefix}model-config.json" in result.stderr
    assert release.startswith(f"support-bot-{PROMOTED_SHA[:12]}-")
    assert release in result.stdout and "branch main" in result.stdout  # `modelgate status RELEASE`
    record = stages.status(STAGING, release)
    assert record["commit"] == PROMOTED_SHA and record["author"] == "release-bot"
    assert record["ci_evaluation"]["verdict"] == "pass"


def test_the_production_job_takes_the_release_staging_promoted(stages, staged):
    env = stages.runner(PROMOTED_SHA, "v1.0.0", "production-job")
    # When the production job requires staging's attestation of the tagged commit
    result = run_step(_step("production", "Require the staging attestation"), env)
    # Then it finds the promoted release, verifies it and exports its attestation
    assert result.returncode == 0, result.stdout + result.stderr
    assert "::error::" not in result.stdout
    verified = result.stdout.splitlines()
    assert verified[0] == f"release {staged}: VERIFIED", result.stdout
    assert len(verified) > 4 and all(line.startswith("  [ok] ") for line in verified[1:]), result.stdout
    attestation = Path(env["RUNNER_TEMP"]) / "staging.intoto.json"
    assert f"wrote {attestation}" in result.stderr and attestation.stat().st_size > 0
    assert Path(env["GITHUB_STEP_SUMMARY"]).read_text() == f"staging attestation: {staged}\n"

    # When it submits the same folder to production with that attestation
    result = run_step(_step("production", "Submit the release to production"), env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"uploaded releases/support-bot/{PROMOTED_SHA}/attestations/" not in result.stderr  # carried, not listed
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text().splitlines()
    match = re.fullmatch(r"release id: (support-bot-\S+) - approve with: modelgate --stack modelgate-prod approve \1",
                         summary[-1])
    assert match, summary
    # Then production accepts it (staging's proof checked at Validate) and asks its approvers
    record = stages.wait_for(PROD, match.group(1), "PendingManualApproval", "Invalid", "Failed")
    assert record["status"] == "PendingManualApproval", record.get("reason")
    validated = next(h["detail"] for h in record["history"] if h["status"] == "Validated")
    assert f"promoted in staging as release {staged}" in validated, validated


def test_the_production_job_stops_a_commit_staging_did_not_promote(stages, staged):
    env = stages.runner(UNSTAGED_SHA, "v1.0.1", "production-job-unstaged")
    result = run_step(_step("production", "Require the staging attestation"), env)
    assert result.returncode == 1
    assert result.stdout == (f"::error::commit {UNSTAGED_SHA} was not promoted in staging: production takes only "
                             "what staging promoted\n")
    assert result.stderr == ""
    assert not (Path(env["RUNNER_TEMP"]) / "staging.intoto.json").exists()
    assert Path(env["GITHUB_STEP_SUMMARY"]).read_text() == ""
