"""The `modelgate` CLI: the commands CI and approvers run, against the local stack."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from conftest import HANG_GUARD_SECONDS, JUMP_WHEN_IDLE
from modelgate_emulator import LocalAWS
from modelgate_harness import cli
from modelgate_harness.control import Control, put_dataset
from modelgate_harness.driver import INTERNAL_CALLBACKS

from modelgate.adapters import clients as aws

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "support-bot"


@pytest.fixture(scope="module")
def _module_stack():
    """One stack for the module's tests (each submits its own commits and leaves no release
    running); its scheduled checks off, as the release tests' (nothing here is about them)."""
    with LocalAWS(ROOT / "template.yaml", parameters={"ModelProvider": "local", "LogLevel": "WARNING"},
                  time_factor=0.002, run_schedules=False, jump_when_idle=JUMP_WHEN_IDLE,
                  internal_callbacks=INTERNAL_CALLBACKS) as local:
        # each command runs as its principal (submit: ci, approve/reject: approver, status: operator)
        control = Control(local.stack_name, local.stack.outputs, aws.client, boto3.resource, act_as=local.acting_as,
                          call_url=local.call_function_url)
        put_dataset(control, "support-bot", EXAMPLES / "dataset.jsonl")
        yield control


@pytest.fixture
def stack(_module_stack, monkeypatch):
    # the CLI resolves the stack through CloudFormation on AWS; here it gets the local one
    monkeypatch.setattr(cli, "_control", lambda args: cli.with_principal(_module_stack, args))
    return _module_stack


def test_submit_status_and_reject_through_the_cli(stack, capsys):
    # When CI submits a release folder
    assert cli.main(["submit", str(EXAMPLES / "v1"), "--commit", "ab" * 20, "--branch", "main"]) == 0
    release_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert release_id.startswith("support-bot-abababababab-")
    # Then status shows it, and an approver can reject it once it asks
    from modelgate_harness.driver import ReleaseDriver, ReleaseRun
    from modelgate_harness.polling import wait_until

    ledger = stack.ledger()
    record = wait_until(lambda: (r := ledger.get(release_id)) and r.get("execution_arn") and r, HANG_GUARD_SECONDS, "intake")
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
    [listed] = [r for r in json.loads(capsys.readouterr().out) if r["release_id"] == release_id]
    assert listed["status"] == "Rejected" and "not this week" in listed["reason"]
    # And deciding again is a clear error, not a traceback
    assert cli.main(["approve", release_id]) == 2
    assert "DecisionConflict" in capsys.readouterr().err


def test_submit_writes_the_commit_branch_and_evaluation_as_metadata_and_validate_records_them(stack, tmp_path, capsys):
    from modelgate_harness.polling import wait_until

    # Given CI evaluated the folder against live before uploading
    summary = tmp_path / "eval.json"
    assert cli.main(["eval", str(EXAMPLES / "v2"), "--dataset", str(EXAMPLES / "dataset.jsonl"),
                     "--live", str(EXAMPLES / "v1"), "--summary-json", str(summary)]) == 0
    accuracy = json.loads(summary.read_text())["sides"]["candidate"]["accuracy"]
    capsys.readouterr()
    # When it submits with that summary, from a branch whose name S3 metadata can't carry as is
    assert cli.main(["submit", str(EXAMPLES / "v2"), "--commit", "cd" * 20, "--branch", "feature/naïve",
                     "--author", "alice", "--eval-summary", str(summary)]) == 0
    release_id = capsys.readouterr().out.strip().splitlines()[-1]
    # Then the manifest object carries them (x-amz-meta-modelgate-*), as CI tooling reads them
    key = f"releases/support-bot/{'cd' * 20}/model-config.json"
    meta = stack.client("s3").head_object(Bucket=stack.bucket, Key=key)["Metadata"]
    assert meta["modelgate-commit"] == "cd" * 20 and meta["modelgate-branch"] == "feature/na%C3%AFve"
    assert meta["modelgate-eval-verdict"] == "pass" and float(meta["modelgate-eval-accuracy"]) == accuracy
    assert meta["modelgate-author"] == "alice"
    # And Validate records them in the ledger, shown by `modelgate status`
    ledger = stack.ledger()
    record = wait_until(lambda: (r := ledger.get(release_id)) and r.get("ci_evaluation") and r, HANG_GUARD_SECONDS, "Validate")
    assert record["branch"] == "feature/naïve" and record["ci_evaluation"]["accuracy"] == accuracy
    assert cli.main(["status", release_id]) == 0
    assert f"ci eval   pass before upload: accuracy {accuracy:.3f}" in capsys.readouterr().out
    # And a summary of another folder is refused before anything is uploaded
    assert cli.main(["submit", str(EXAMPLES / "v3"), "--commit", "ef" * 20, "--eval-summary", str(summary)]) == 2
    assert "is of another release" in capsys.readouterr().err
    listed = stack.client("s3").list_objects_v2(Bucket=stack.bucket, Prefix=f"releases/support-bot/{'ef' * 20}/")
    assert listed.get("KeyCount", 0) == 0
    # (the stack is the module's: the release submitted above is rejected, so it holds no lock)
    from modelgate_harness.driver import ReleaseDriver, ReleaseRun

    run = ReleaseRun(release_id, record["execution_arn"])
    assert ReleaseDriver(stack).wait_for_decision_point(run)
    assert cli.main(["reject", release_id, "--comment", "test over"]) == 0
    assert ReleaseDriver(stack).finish(run).record["status"] == "Rejected"


def test_submit_refuses_a_folder_whose_prompt_changed(stack, tmp_path, capsys):
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "prompts").mkdir()
    (folder / "model-config.json").write_text((EXAMPLES / "v1" / "model-config.json").read_text())
    (folder / "prompts" / "system.txt").write_text("edited after the digest was taken\n")
    s3 = stack.client("s3")
    before = s3.list_objects_v2(Bucket=stack.bucket, Prefix="releases/").get("Contents", [])
    assert cli.main(["submit", str(folder)]) == 2
    assert "sha256" in capsys.readouterr().err
    after = s3.list_objects_v2(Bucket=stack.bucket, Prefix="releases/").get("Contents", [])
    assert after == before  # nothing uploaded (the module's other tests uploaded theirs)


def test_eval_before_pushing(capsys, tmp_path):
    html = tmp_path / "report.html"
    code = cli.main(["eval", str(EXAMPLES / "v3"), "--dataset", str(EXAMPLES / "dataset.jsonl"),
                     "--live", str(EXAMPLES / "v2"), "--html", str(html)])
    out = capsys.readouterr().out
    assert code == 1 and "gate: FAIL" in out and "accuracy_drop" in out
    assert "<html" in html.read_text()
    assert cli.main(["eval", str(EXAMPLES / "v2"), "--dataset", str(EXAMPLES / "dataset.jsonl"),
                     "--live", str(EXAMPLES / "v1")]) == 0
