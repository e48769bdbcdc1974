"""`modelgate local up` in one process, the CLI's commands from another: the same commands
that run against AWS run against the local runtime, and as on AWS each runs as an identity
that IAM checks: the server authorises every HTTP request as the principal whose keys signed it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import HANG_GUARD_SECONDS
from modelgate_harness import cli
from modelgate_harness.polling import wait_until
from modelgate_harness.server import local_stack_state

ROOT = Path(__file__).resolve().parents[2]
V1 = ROOT / "examples" / "support-bot" / "v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_up(tmp_path: Path, template: Path = ROOT / "template.yaml", traffic: str = "120"):
    state = tmp_path / "local.json"
    log = (tmp_path / "server.log").open("w")  # a pipe nobody reads would fill and block the server
    process = subprocess.Popen(
        [sys.executable, "-m", "modelgate_harness.cli", "local", "up", "--port", str(free_port()),
         "--time-factor", "0.003", "--traffic", traffic, "--state-file", str(state), "--template", str(template)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
        # this checkout's code, not whatever the environment's editable install points at
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), str(ROOT / "local"), *filter(None, [os.environ.get("PYTHONPATH")])])},
    )
    # A bound for a hung start, not a speed check (a cold start took over 60 s at load ~17 on the 2 cores).
    try:  # up when it writes its state file; a server that exited won't
        wait_until(lambda: state.exists() or process.poll() is not None, HANG_GUARD_SECONDS, "the local runtime to start",
                   interval=0.1)
    except TimeoutError:
        pass
    if not state.exists():
        process.kill()
        pytest.fail("local runtime did not start:\n" + (tmp_path / "server.log").read_text()[-5000:])
    try:
        yield state
    finally:
        process.terminate()
        # a hang guard, no speed limit: shutting down stops the executions, the scheduled checks and
        # the traffic, and waits for asynchronous invocations, which takes longer on a busy machine
        try:
            process.wait(timeout=HANG_GUARD_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            log.close()
    assert not state.exists()  # it cleans up after itself


@pytest.fixture
def server(tmp_path):
    with local_up(tmp_path) as state:
        yield state


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
    wait_until(reaches("PendingManualApproval"), HANG_GUARD_SECONDS, f"{release} to ask for approval", interval=0.2,
               progress=now)
    assert cli.main(["--local", "--local-state", str(server), "approve", release, "--comment", "from another shell"]) == 0
    capsys.readouterr()
    record = wait_until(reaches("Promoted", "RolledBack", "Failed"), HANG_GUARD_SECONDS, f"{release} to end", interval=0.2,
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
        local_stack_state(server)["functions"]["IntakeFunction"]}
    assert any(" START RequestId: " in line for line in lines) and any(" REPORT RequestId: " in line for line in lines)


def local_cli(state: Path, *args: str) -> list[str]:
    return ["--local", "--local-state", str(state), *args]


def keys_of(state: Path, principal: str) -> dict[str, str]:
    keys = local_stack_state(state)["principals"][principal]
    return {k: keys[k] for k in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")}


def client_as(state: Path, service: str, **keys: str):
    settings = local_stack_state(state)
    return boto3.client(service, endpoint_url=settings["endpoint_url"], region_name=settings["region"], **keys)


def waiting_release(state: Path, capsys) -> str:
    assert cli.main(local_cli(state, "submit", str(V1), "--commit", "ef" * 20, "--branch", "main")) == 0
    release = capsys.readouterr().out.strip().splitlines()[-1]
    wait_until(lambda: status(state, capsys, release)["status"] == "PendingManualApproval", 90,
               f"{release} to ask for approval", interval=0.2, progress=lambda: status(state, capsys, release)["status"])
    return release


@pytest.mark.enable_socket
def test_principals_keys_decide_what_each_http_call_may_do(server, capsys):
    # Given a release waiting for approval (submitted as ci, watched as operator)
    release = waiting_release(server, capsys)
    assert server.stat().st_mode & 0o077 == 0  # the keys are the owner's alone

    # When CI tries to approve it
    assert cli.main(local_cli(server, "--as", "ci", "approve", release)) == 2
    # Then the decision URL refuses it (403 Forbidden, as a Function URL does), and the CLI names the action
    err = capsys.readouterr().err
    assert "AccessDenied" in err and "principal ci is not authorized to perform: lambda:InvokeFunctionUrl" in err, err
    # and the task-token call itself, signed with CI's keys or the approver's, is refused as
    # states:SendTaskSuccess: only the decision function holds it (four eyes can't be skipped)
    for principal in ("ci", "approver"):
        sfn = client_as(server, "stepfunctions", **keys_of(server, principal))
        with pytest.raises(ClientError) as denied:
            sfn.send_task_success(taskToken="not-a-token", output="{}")
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert f"/modelgate-{principal} is not authorized to perform: states:SendTaskSuccess" in \
            denied.value.response["Error"]["Message"]
    assert status(server, capsys, release)["status"] == "PendingManualApproval"

    # When a key nobody issued signs requests, each service refuses it in its own words
    stranger = {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG",
                "aws_session_token": "none"}
    expected = {"dynamodb": "UnrecognizedClientException", "s3": "InvalidAccessKeyId", "sts": "InvalidClientTokenId"}
    calls = {"dynamodb": lambda c: c.list_tables(), "s3": lambda c: c.list_buckets(),
             "sts": lambda c: c.get_caller_identity()}
    for service, code in expected.items():
        with pytest.raises(ClientError) as refused:
            calls[service](client_as(server, service, **stranger))
        assert refused.value.response["Error"]["Code"] == code, service
    # and the approver's key with a wrong secret does not sign for the approver
    forged = {**keys_of(server, "approver"), "aws_secret_access_key": "guessed"}
    with pytest.raises(ClientError) as forged_error:
        client_as(server, "dynamodb", **forged).list_tables()
    assert forged_error.value.response["Error"]["Code"] == "InvalidSignatureException"

    # When the approver approves through the CLI, it is their identity the ledger records
    assert cli.main(local_cli(server, "approve", release, "--comment", "as the approver")) == 0
    capsys.readouterr()
    record = status(server, capsys, release)
    assert record["approval"]["approver"] == local_stack_state(server)["principals"]["approver"]["arn"]


@pytest.mark.enable_socket
def test_approve_over_http_fails_without_the_approver_policys_decision_url_statement(tmp_path, capsys):
    # Given a stack whose ApproverPolicy lost its grant on the decision URL
    template = (ROOT / "template.yaml").read_text()
    statement = """          - Sid: AskForADecision
            Effect: Allow
            Action: lambda:InvokeFunctionUrl
            Resource: !GetAtt ApprovalDecisionFunction.Arn
            Condition:
              StringEquals:
                lambda:FunctionUrlAuthType: AWS_IAM
"""
    assert template.count(statement) == 1
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "template.yaml").write_text(template.replace(statement, ""))
    for folder in ("functions", "src", "statemachine"):  # what the template's Uris name (copies:
        # `local up` refuses code that resolves outside the template's folder, symlinks included)
        shutil.copytree(ROOT / folder, stack / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with local_up(tmp_path, stack / "template.yaml", traffic="0") as state:
        release = waiting_release(state, capsys)
        # When the approver approves over HTTP
        assert cli.main(local_cli(state, "approve", release)) == 2
        # Then the decision URL refuses the request as AWS does (403 Forbidden), and the release still waits
        err = capsys.readouterr().err
        assert "AccessDenied" in err and "not authorized to perform: lambda:InvokeFunctionUrl" in err, err
        assert status(state, capsys, release)["status"] == "PendingManualApproval"
