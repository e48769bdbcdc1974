"""The `modelgate` CLI: the commands CI and approvers run, against the local stack."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from modelgate_emulator import LocalAWS
from modelgate_harness import cli
from modelgate_harness.control import Control, put_dataset

from modelgate.adapters import clients as aws

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "support-bot"


@pytest.fixture
def stack(monkeypatch):
    with LocalAWS(ROOT / "template.yaml", parameters={"ModelProvider": "local", "LogLevel": "WARNING"},
                  time_factor=0.002) as local:
        # each command runs as its principal (submit: ci, approve/reject: approver, status: operator)
        control = Control(local.stack_name, local.stack.outputs, aws.client, boto3.resource, act_as=local.acting_as,
                          call_url=local.call_function_url)
        put_dataset(control, "support-bot", EXAMPLES / "dataset.jsonl")
        # the CLI resolves the stack through CloudFormation on AWS; here it gets the local one
        monkeypatch.setattr(cli, "_control", lambda args: cli.with_principal(control, args))
        yield control


def test_submit_status_and_reject_through_the_cli(stack, capsys):
    # When CI submits a release folder
    assert cli.main(["submit", str(EXAMPLES / "v1"), "--commit", "ab" * 20, "--branch", "main"]) == 0
    release_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert release_id.startswith("support-bot-abababababab-")
    # Then status shows it, and an approver can reject it once it asks
    from modelgate_harness.driver import ReleaseDriver, ReleaseRun
    from modelgate_harness.polling import wait_until

    ledger = stack.ledger()
    record = wait_until(lambda: (r := ledger.get(release_id)) and r.get("execution_arn") and r, 30, "intake")
    run = ReleaseRun(release_id, record["execution_arn"])
    assert ReleaseDriver(stack).wait_for_decision_point(run)
    assert cli.main(["status", release_id]) == 0
    out = capsys.readouterr().out
    assert "PendingManualApproval" in out and "candidate" in out
    # CI's identity cannot decide (its policy may not call the decision URL)
    assert cli.main(["--as", "ci", "approve", release_id]) == 2
    assert "AccessDenied" in (err := capsys.readouterr().err) and "lambda:InvokeFunctionUrl" in err
    assert cli.main(["reject", release_id, "--comment", "not this week"]) == 0
    assert "Rejected by arn:aws:" in capsys.readouterr().out
    ReleaseDriver(stack).finish(run)
    assert cli.main(["status", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["status"] == "Rejected" and "not this week" in listed[0]["reason"]
    # And deciding again is a clear error, not a traceback
    assert cli.main(["approve", release_id]) == 2
    assert "DecisionConflict" in capsys.readouterr().err


def test_submit_refuses_a_folder_whose_prompt_changed(stack, tmp_path, capsys):
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "prompts").mkdir()
    (folder / "model-config.json").write_text((EXAMPLES / "v1" / "model-config.json").read_text())
    (folder / "prompts" / "system.txt").write_text("edited after the digest was taken\n")
    assert cli.main(["submit", str(folder)]) == 2
    assert "sha256" in capsys.readouterr().err
    listed = stack.client("s3").list_objects_v2(Bucket=stack.bucket, Prefix="releases/")
    assert listed.get("KeyCount", 0) == 0  # nothing uploaded


def test_eval_before_pushing(capsys, tmp_path):
    html = tmp_path / "report.html"
    code = cli.main(["eval", str(EXAMPLES / "v3"), "--dataset", str(EXAMPLES / "dataset.jsonl"),
                     "--live", str(EXAMPLES / "v2"), "--html", str(html)])
    out = capsys.readouterr().out
    assert code == 1 and "gate: FAIL" in out and "accuracy_drop" in out
    assert "<html" in html.read_text()
    assert cli.main(["eval", str(EXAMPLES / "v2"), "--dataset", str(EXAMPLES / "dataset.jsonl"),
                     "--live", str(EXAMPLES / "v1")]) == 0


def test_invoke_runs_one_handler_with_a_sample_event(capsys):
    code = cli.main(["invoke", "functions/inference",
                     "-e", str(ROOT / "events" / "inference" / "question.json"),
                     "-t", str(ROOT / "template.yaml"), "--parameter", "ModelProvider=local"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 1 and payload["errorType"] == "ModelNotConfigured"
    assert set(payload) >= {"errorMessage", "errorType", "stackTrace", "requestId"}


def test_invoke_names_the_functions_when_one_is_unknown(capsys):
    with pytest.raises(SystemExit, match="no function 'nope'.*ValidateFunction"):
        cli.main(["invoke", "nope", "-e", str(ROOT / "events" / "inference" / "question.json"),
                  "-t", str(ROOT / "template.yaml")])
