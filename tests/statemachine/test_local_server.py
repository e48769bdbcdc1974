"""`modelgate local up` in one process, the CLI's commands from another: the same commands
that run against AWS run against the local runtime."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from modelgate_harness import cli
from modelgate_harness.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    state = tmp_path / "local.json"
    log = (tmp_path / "server.log").open("w")  # a pipe nobody reads would fill and block the server
    process = subprocess.Popen(
        [sys.executable, "-m", "modelgate_harness.cli", "local", "up", "--port", str(free_port()),
         "--time-factor", "0.003", "--traffic", "120", "--state-file", str(state)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
        # this checkout's code, not whatever the environment's editable install points at
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), str(ROOT / "local"), *filter(None, [os.environ.get("PYTHONPATH")])])},
    )
    try:  # up when it writes its state file; a server that exited won't
        wait_until(lambda: state.exists() or process.poll() is not None, 60, "the local runtime to start",
                   interval=0.1)
    except TimeoutError:
        pass
    if not state.exists():
        process.kill()
        pytest.fail("local runtime did not start:\n" + (tmp_path / "server.log").read_text()[-5000:])
    yield state
    process.terminate()
    process.wait(timeout=30)
    log.close()
    assert not state.exists()  # it cleans up after itself


def status(state: Path, capsys, release: str | None = None) -> dict | list:
    assert cli.main(["--local", "--local-state", str(state), "status", *([release] if release else []), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.enable_socket
def test_submit_status_and_approve_from_another_process(server, capsys):
    # When CI submits through the CLI
    assert cli.main(["--local", "--local-state", str(server), "submit", str(ROOT / "examples" / "support-bot" / "v1"),
                     "--commit", "cd" * 20, "--branch", "main"]) == 0
    release = capsys.readouterr().out.strip().splitlines()[-1]

    def reaches(*statuses: str):
        return lambda: (record := status(server, capsys, release))["status"] in statuses and record

    def now() -> str:
        return status(server, capsys, release)["status"]

    # Then it asks for approval, and an approver approves through the CLI
    wait_until(reaches("PendingManualApproval"), 60, f"{release} to ask for approval", interval=0.2, progress=now)
    assert cli.main(["--local", "--local-state", str(server), "approve", release, "--comment", "from another shell"]) == 0
    capsys.readouterr()
    record = wait_until(reaches("Promoted", "RolledBack", "Failed"), 120, f"{release} to end", interval=0.2,
                        progress=now)
    assert record["status"] == "Promoted", record.get("reason")
    assert record["approval"]["comment"] == "from another shell"
    assert [r["status"] for r in status(server, capsys)] == ["Promoted"]

    # and the intake's log lines are in its own log group, with the runtime's lines around them
    assert cli.main(["--local", "--local-state", str(server), "logs", "IntakeFunction",
                     "-t", str(ROOT / "template.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    intake = [json.loads(line.split(" ", 1)[1]) for line in lines if line.split(" ", 1)[1].startswith("{")]
    assert any(entry.get("release_id") == release and entry["message"] == "release intake" for entry in intake)
    assert {entry.get("function_name") for entry in intake if "function_name" in entry} == {
        json.loads(server.read_text())["functions"]["IntakeFunction"]}
    assert any(" START RequestId: " in line for line in lines) and any(" REPORT RequestId: " in line for line in lines)
