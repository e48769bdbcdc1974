"""Removing a statement the code needs from template.yaml fails the call as on AWS."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from modelgate_emulator import LocalAWS
from modelgate_emulator.lambda_runtime import LambdaInvokeError
from modelgate_harness.control import Control, submit
from modelgate_harness.polling import wait_until

from modelgate.adapters import clients as aws
from modelgate.contract import ReleaseContext
from modelgate.manifest import ArtifactRef

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


# ---------------------------------------------------------------------------------------------
# The functions added since (drift check, monitor, attest): each statement below is
# taken out of the deployed role for one invocation, as if template.yaml lacked it (the role's
# inline policy is written again without it: IAM reads the new policy at once, and the
# enforcer drops its cache on any IAM write), and the invocation must fail with AccessDenied
# naming the statement's action. The same invocations first run with the whole policy, so a
# statement removed from template.yaml fails this test as well. Statements whose calls only a
# released service reaches (captured traffic, baselines, the chain of a real release, task
# tokens) are exercised by the state-machine tests, as is the IAM decision URL's function
# (tests/statemachine/test_cli.py decides through it on a release waiting for approval).
# Statements that differ from another of the same role only in their dynamodb:LeadingKeys
# condition (the monitor's Journal, Attest's EndedRelease and Chain) are checked too: the
# embedded AWS sets that condition key from each request's partition key values, so the other
# statement no longer allows the call.
DRIFT = {"service": "support-bot"}
LIFECYCLE = {"task": "lifecycle", "service": "support-bot"}
REEVALUATE = {"task": "reevaluate", "service": "support-bot"}
ATTEST = "attest"  # the event is built once the stack exists
NEW_FUNCTION_STATEMENTS = [
    ("DriftCheckFunction", "ServiceRegistration", DRIFT, "ssm:GetParameter"),
    ("DriftCheckFunction", "LiveAlias", DRIFT, "lambda:GetAlias"),
    ("DriftCheckFunction", "PromotedReleases", DRIFT, "dynamodb:Query"),
    ("DriftCheckFunction", "CaptureListing", DRIFT, "s3:ListBucket"),
    ("DriftCheckFunction", "DriftReports", DRIFT, "s3:PutObject"),
    ("DriftCheckFunction", "DriftVerdictsInTheMonitoringJournal", DRIFT, "dynamodb:PutItem"),
    ("MonitorFunction", "ServiceRegistrations", LIFECYCLE, "ssm:GetParameter"),
    ("MonitorFunction", "ManagedFunctions", LIFECYCLE, "lambda:GetAlias"),
    ("MonitorFunction", "ReleasesOfAService", REEVALUATE, "dynamodb:Query"),
    ("MonitorFunction", "Journal", LIFECYCLE, "dynamodb:PutItem"),
    ("AttestFunction", "EndedRelease", ATTEST, "dynamodb:GetItem"),
    ("AttestFunction", "Chain", ATTEST, "dynamodb:GetItem"),
    ("AttestFunction", "ArtefactDigest", ATTEST, "s3:GetObjectVersion"),
    ("AttestFunction", "SignAttestation", ATTEST, "kms:Sign"),
    ("AttestFunction", "StoreAttestation", ATTEST, "s3:PutObject"),
]


@contextlib.contextmanager
def without_statement(local: LocalAWS, function: str, sid: str) -> Iterator[None]:
    """``function``'s execution role without the statement ``sid`` for the block, then restored."""
    iam_client = local.client("iam")
    role = local.stack.resources[f"{function}Role"].physical_id.rsplit("/", 1)[-1]
    for name in iam_client.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam_client.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
        kept = [s for s in statements if s.get("Sid") != sid]
        if len(kept) < len(statements):
            break
    else:
        raise AssertionError(f"{function}'s role has no statement {sid}")
    iam_client.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps({**document, "Statement": kept}))
    try:
        yield
    finally:
        iam_client.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))


def _events(local: LocalAWS) -> dict[str, Any]:
    """An ended release for Attest (its ledger record and artefact, put as local-admin; the key
    is no manifest's, so no release starts)."""
    bucket = local.stack.outputs["ArtifactBucketName"]
    key = "releases/support-bot/" + "a" * 40 + "/artefact.json"
    version = local.client("s3").put_object(Bucket=bucket, Key=key, Body=b'{"artefact": 1}')["VersionId"]
    ctx = ReleaseContext(release_id="support-bot-grants", service="support-bot", commit="a" * 40, branch="main",
                         artifact=ArtifactRef(bucket=bucket, key=key, version_id=version))
    control = Control(local.stack_name, local.stack.outputs, aws.client, boto3.resource, act_as=local.acting_as)
    control.ledger().record(ctx.release_id, "Promoted", "ended for the grant test", candidate_version="2",
                            live_version="1")
    return {ATTEST: ctx.model_dump(mode="json")}


def test_each_statement_of_the_new_functions_is_needed_and_its_absence_is_access_denied():
    with LocalAWS(TEMPLATE, stack_name="iam-grants", parameters={"ModelProvider": "local"},
                  run_schedules=False) as local:
        events = _events(local)
        # With every statement: no call is denied.
        for function, event in [("DriftCheckFunction", DRIFT), ("MonitorFunction", LIFECYCLE),
                                ("MonitorFunction", REEVALUATE), ("AttestFunction", events[ATTEST])]:
            local.invoke(function, event)
        assert local.enforcer.denied() == []
        assert local.client("s3").get_object(Bucket=local.stack.outputs["ArtifactBucketName"],
                                             Key="reports/support-bot/support-bot-grants/attestation.intoto.json")
        # Without one of them: that call is refused, and the invocation fails naming its action.
        missed = []
        for function, sid, event, action in NEW_FUNCTION_STATEMENTS:
            with without_statement(local, function, sid):
                try:
                    answer = local.invoke(function, events[event] if isinstance(event, str) else event)
                except LambdaInvokeError as error:
                    if "AccessDenied" not in error.error_message or action not in error.error_message:
                        missed.append(f"{function} without {sid}: failed otherwise: {error}")
                else:
                    missed.append(f"{function} without {sid}: succeeded ({str(answer)[:200]})")
        assert missed == [], "\n".join(missed)
