"""Removing a statement the code needs from template.yaml fails the call as on AWS."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
from modelgate_emulator import LocalAWS
from modelgate_harness.control import Control, submit
from modelgate_harness.polling import wait_until

from modelgate.adapters import clients as aws

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
RELEASE = ROOT / "examples" / "support-bot" / "v1"


def _without_intake_ledger_grant(tmp_path: Path) -> Path:
    """A copy of template.yaml whose IntakeFunction lacks its ledger statement (Sid
    WriteReleaseRecord: the ``- Statement:`` block holding it, up to the function's Events)."""
    lines = TEMPLATE.read_text().splitlines(keepends=True)
    sid = next(i for i, line in enumerate(lines) if "Sid: WriteReleaseRecord" in line)
    start = max(i for i in range(sid) if lines[i].strip() == "- Statement:")
    end = next(i for i in range(sid, len(lines)) if lines[i].strip() == "Events:")
    owner = next(lines[i] for i in range(start, -1, -1) if re.match(r"^  [A-Za-z0-9]+:\s*$", lines[i]))
    assert owner.strip() == "IntakeFunction:", f"WriteReleaseRecord is not the intake's (it is under {owner.strip()})"
    copy = tmp_path / "template.yaml"
    copy.write_text("".join(lines[:start] + lines[end:]))
    for folder in ("functions", "src", "statemachine"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    return copy


def test_removing_the_intakes_ledger_grant_fails_the_upload_with_access_denied(tmp_path):
    template = _without_intake_ledger_grant(tmp_path)
    with LocalAWS(template, stack_name="iam-missing", parameters={"ModelProvider": "local"}) as local:
        control = Control(local.stack_name, local.stack.outputs, aws.client, boto3.resource, act_as=local.acting_as)
        submit(control, RELEASE, commit="0" * 40)
        failed = wait_until(
            lambda: [r for r in local.invocations("IntakeFunction") if r.error_type],
            60,
            "the intake to fail",
        )
        assert "AccessDeniedException" in failed[0].error_message
        assert "dynamodb:PutItem" in failed[0].error_message
        denied = local.enforcer.denied()
        assert denied[0].action == "dynamodb:PutItem"
        assert "-IntakeFunctionRole-" in str(denied[0].role_arn)
