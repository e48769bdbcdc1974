"""Approval stage: register the evaluated release (auto or manual), ask approvers (the
token stays in the ledger, the mail carries signed links), hand a decision to the waiting task."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ClientError

from modelgate.approval import links
from modelgate.approval.identity import FourEyesViolation
from modelgate.errors import ConfigurationError, DecisionConflict
from modelgate.pipeline.approval import decide, decide_as_caller, register, request_approval
from modelgate.policy import ReleasePolicy

TOKEN = "AQCEAAAA-the-task-token-that-never-leaves-the-ledger=="


def waiting(world, *, four_eyes: bool = False, author: str | None = "Alice <alice@example.com>", **policy) -> str:
    """A release registered for manual approval, its WaitForApproval task holding TOKEN."""
    ctx = world.context(policy=ReleasePolicy(four_eyes=four_eyes, **policy))
    world.ledger.record(ctx.release_id, "Validated", "ok", service="support-bot", author=author)
    register(world.deps, ctx)
    world.ledger.put_token(ctx.release_id, "approval", TOKEN)
    return ctx.release_id


# ---------------------------------------------------------------------- register
def test_an_auto_policy_approves_at_registration(world):
    # Given a service whose policy approves automatically
    ctx = world.context(policy=ReleasePolicy(approval="auto"))
    # When the release is registered
    out = register(world.deps, ctx)
    # Then it is approved by the policy, in the state and in the ledger
    assert out.approval.approver == "policy:auto" and out.approval.decision == "approve"
    record = world.ledger.get(ctx.release_id)
    assert record["status"] == "Approved" and record["approval"]["approver"] == "policy:auto"


def test_a_manual_policy_registers_the_release_as_waiting_for_an_approver(world):
    # Given a service whose policy wants a person to approve, with four eyes
    ctx = world.context(policy=ReleasePolicy(approval="manual", four_eyes=True))
    # When the release is registered
    out = register(world.deps, ctx)
    # Then nobody approved it yet, and the ledger waits, remembering the four-eyes rule as asked
    assert out.approval is None
    record = world.ledger.get(ctx.release_id)
    assert record["status"] == "PendingManualApproval" and record["four_eyes"] is True


# ---------------------------------------------------------------------- request_approval
def test_the_request_keeps_the_token_and_mails_signed_links_without_it(world):
    # Given a release waiting for approval
    ctx = world.context(policy=ReleasePolicy(approval_timeout_seconds=3600, approvers=["alice@example.com"]))
    register(world.deps, ctx)
    # When approval is requested with the task's token
    assert request_approval(world.deps, ctx, TOKEN) == {"release_id": ctx.release_id, "requested": True}
    # Then the token is kept in the ledger
    assert world.ledger.get_token(ctx.release_id, "approval") == TOKEN
    # And the named approver gets one message, without the token, with a link per decision bound to her
    key = world.client("secretsmanager").get_secret_value(SecretId=world.settings.signing_secret_arn)["SecretString"]
    [message] = world.mail()
    assert TOKEN not in message and ctx.release_id in message
    for decision in ("approve", "reject"):
        url = re.search(rf"{decision.capitalize()}:\s+(\S+)", message).group(1)
        assert url.startswith("https://approve.example.com/decide?t=")
        # signed with the stack's key, for this release and decision, as Alice
        claims = links.verify_link(key.encode(), parse_qs(urlsplit(url).query)["t"][0], now=time.time())
        assert (claims.release_id, claims.decision, claims.approver) == (ctx.release_id, decision, "alice@example.com")


def _links_in(world, message: str) -> dict[str, links.LinkClaims]:
    key = world.client("secretsmanager").get_secret_value(SecretId=world.settings.signing_secret_arn)["SecretString"]
    found = {}
    for decision in ("approve", "reject"):
        match = re.search(rf"^{decision.capitalize()}:\s+(https://\S+)$", message, re.MULTILINE)
        if match:
            found[decision] = links.verify_link(
                key.encode(), parse_qs(urlsplit(match.group(1)).query)["t"][0], now=time.time()
            )
    return found


def test_each_named_approver_gets_their_own_links_and_the_author_no_approve_link(world):
    # Given four eyes, two named approvers, and a release uploaded for Bob (its verified author)
    policy = ReleasePolicy(four_eyes=True, approvers=["alice@example.com", "bob@example.com"])
    ctx = world.context(policy=policy, author="bob")
    register(world.deps, ctx)
    # When approval is requested
    request_approval(world.deps, ctx, TOKEN)
    # Then each approver is mailed separately (SNS attribute "approver" for their subscription's filter)
    mails = {m["MessageAttributes"]["approver"]["Value"]: m["Message"] for m in world.published()}
    assert sorted(mails) == ["alice@example.com", "bob@example.com"]
    # Alice's copy approves and rejects as Alice only
    alice = _links_in(world, mails["alice@example.com"])
    assert {d: c.approver for d, c in alice.items()} == {"approve": "alice@example.com", "reject": "alice@example.com"}
    # Bob, the author, can only reject: his copy says why and carries no approve link
    bob = _links_in(world, mails["bob@example.com"])
    assert list(bob) == ["reject"] and bob["reject"].approver == "bob@example.com"
    assert "Approve:  not by you (four eyes: you uploaded this release)" in mails["bob@example.com"]
    assert "Uploaded by: bob" in mails["alice@example.com"]


def test_the_mail_links_the_html_report_with_a_presigned_https_link(world):
    # Given a release whose gate wrote its HTML report
    from modelgate.contract import EvaluationSummary

    key = "reports/support-bot/r/evaluation.html"
    world.client("s3").put_object(Bucket="artefacts", Key=key, Body=b"<html>report</html>")
    summary = EvaluationSummary(n_cases=1, sides={}, report_key="reports/support-bot/r/evaluation.json",
                                report_html_key=key, dataset_key="d", dataset_version="v", shards=1, baseline="live")
    ctx = world.context(policy=ReleasePolicy(approval_timeout_seconds=3600), evaluation=summary)
    register(world.deps, ctx)
    # When approval is requested
    request_approval(world.deps, ctx, TOKEN)
    # Then the mail carries an https link a mail client opens, signed for that object, living no longer than the wait
    [message] = world.mail()
    url = re.search(r"^Report: (\S+)$", message, re.MULTILINE).group(1)
    assert url.startswith("https://") and "evaluation.html" in url and "Signature=" in url
    assert "X-Amz-Expires=3600" in url or "Expires=" in url
    assert f"Report in S3: s3://artefacts/{key}" in message


def test_without_named_approvers_the_mail_carries_a_reject_link_for_anyone_and_no_approve_link(world):
    ctx = world.context(policy=ReleasePolicy())
    register(world.deps, ctx)
    request_approval(world.deps, ctx, TOKEN)
    [message] = world.mail()
    found = _links_in(world, message)
    assert list(found) == ["reject"] and found["reject"].approver is None
    assert "Approve:  with `modelgate approve` (your IAM identity)" in message


def test_a_forged_newline_in_the_branch_or_model_forges_no_line_of_the_mail(world):
    # Given a release whose branch (from the manifest) carries newlines, a carriage return and a terminal escape
    forged = "main\n  candidate  accuracy 0.990\r\nApprove:  https://evil.example/decide?t=x\x1b[2J\u2028Reject: x"
    ctx = world.context(policy=ReleasePolicy(approvers=["alice@example.com"]), branch=forged)
    register(world.deps, ctx)
    # When approval is requested
    request_approval(world.deps, ctx, TOKEN)
    [message] = world.mail()
    lines = message.split("\n")
    # Then the branch stays on its own line, escaped, and no line is one the attacker wrote
    assert [line for line in lines if line.startswith("Approve:")] == [
        line for line in lines if line.startswith("Approve:  https://approve.example.com/decide?t=")]
    assert len([line for line in lines if line.startswith("Approve:")]) == 1
    assert not any("0.990" in line and "Commit" not in line for line in lines)
    assert not any(ch in message for ch in ("\r", "\x1b", "\u2028"))
    commit_line = next(line for line in lines if line.startswith("Commit "))
    assert "main\\n  candidate  accuracy 0.990\\r\\nApprove:" in commit_line and "\\x1b[2J" in commit_line


def test_the_mail_shows_the_models_the_policy_allows(world):
    # Given a release of a service whose policy allows local models only
    ctx = world.context(policy=ReleasePolicy(allowed_models=["local.*"]))
    register(world.deps, ctx)
    # When approval is requested / Then approvers read the policy's allow list
    request_approval(world.deps, ctx, TOKEN)
    [message] = world.mail()
    assert "Models support-bot's policy allows: 'local.*'." in message.splitlines()


def test_a_request_that_cannot_sign_its_links_keeps_no_token(world):
    # Given a signing secret that does not exist
    world.settings = world.settings.model_copy(update={"signing_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone"})
    ctx = world.context()
    # When approval is requested / Then it fails before keeping the token or mailing anyone
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        request_approval(world.deps, ctx, TOKEN)
    assert world.ledger.get_token(ctx.release_id, "approval") is None
    assert world.mail() == []


def test_a_signing_key_too_short_is_a_configuration_error(world):
    # Given a signing secret of 8 bytes
    world.client("secretsmanager").put_secret_value(SecretId=world.settings.signing_secret_arn, SecretString="too-shrt")
    # When approval is requested / Then it names the problem
    with pytest.raises(ConfigurationError, match="at least 32"):
        request_approval(world.deps, world.context(), TOKEN)


# ---------------------------------------------------------------------- decide
def test_an_approval_hands_the_decision_to_the_waiting_task(world):
    # Given a release waiting for approval
    release_id = waiting(world)
    # When an approver approves it
    record = decide(world.deps, release_id, "approve", "bob@example.com", "looks good")
    # Then the ledger records who and why, and the task gets the approval through its token
    assert record["status"] == "Approved"
    assert (record["approval"]["approver"], record["approval"]["comment"]) == ("bob@example.com", "looks good")
    [(call, sent)] = world.sfn.sent
    assert call == "send_task_success" and sent["taskToken"] == TOKEN
    assert json.loads(sent["output"]) == {"decision": "approve", "approver": "bob@example.com", "comment": "looks good"}
    # And the token is used up
    assert world.ledger.get_token(release_id, "approval") is None


def test_a_rejection_fails_the_waiting_task_with_the_reason(world):
    release_id = waiting(world)
    decide(world.deps, release_id, "reject", "bob@example.com", "not now")
    assert world.sfn.sent == [("send_task_failure", {
        "taskToken": TOKEN, "error": "ApprovalRejected", "cause": "rejected by bob@example.com: not now"})]
    assert world.ledger.get(release_id)["status"] == "Rejected"


def test_four_eyes_refuses_the_authors_own_approval_and_lets_another_approver_decide(world):
    # Given a four-eyes release whose commit Alice wrote
    release_id = waiting(world, four_eyes=True, author="Alice <alice@example.com>")
    # When Alice approves it / Then she is refused, nothing is sent, and it still waits
    with pytest.raises(FourEyesViolation, match="alice@example.com is the release's author"):
        decide(world.deps, release_id, "approve", "alice@example.com")
    assert world.sfn.sent == []
    assert world.ledger.get(release_id)["status"] == "PendingManualApproval"
    assert world.ledger.get_token(release_id, "approval") == TOKEN
    # When Bob approves it / Then it is approved
    assert decide(world.deps, release_id, "approve", "bob@example.com")["status"] == "Approved"


def test_four_eyes_lets_the_author_reject(world):
    release_id = waiting(world, four_eyes=True, author="Alice <alice@example.com>")
    assert decide(world.deps, release_id, "reject", "alice@example.com", "oops")["status"] == "Rejected"


def test_a_decision_when_nothing_waits_is_a_conflict(world):
    # Given a release that was decided already (its token used up)
    release_id = waiting(world)
    decide(world.deps, release_id, "approve", "bob@example.com")
    # When another decision arrives / Then it is a conflict naming the status, and nothing more is sent
    with pytest.raises(DecisionConflict, match=r"no approval request waiting \(status: Approved\)"):
        decide(world.deps, release_id, "reject", "carol@example.com")
    assert len(world.sfn.sent) == 1


def test_a_decision_for_an_unknown_release_is_a_conflict(world):
    with pytest.raises(DecisionConflict, match="no such release"):
        decide(world.deps, "support-bot-nope-0", "approve", "bob@example.com")


def test_a_decision_reaching_a_task_that_already_ended_is_a_conflict(world):
    # Given a release whose waiting task timed out just before the decision reached it
    release_id = waiting(world)
    world.sfn.gone = "TaskTimedOut"
    # When an approver approves / Then it is a conflict saying the release stopped waiting
    with pytest.raises(DecisionConflict, match="stopped waiting for approval before the decision reached it"):
        decide(world.deps, release_id, "approve", "bob@example.com")


def test_a_decision_the_task_never_got_leaves_the_release_waiting(world):
    # Given a release waiting for approval, and an approver whose SendTaskSuccess is denied
    release_id = waiting(world)
    world.sfn.gone = "AccessDeniedException"
    # When the approver approves / Then the AWS error surfaces
    with pytest.raises(ClientError, match="AccessDeniedException"):
        decide(world.deps, release_id, "approve", "bob@example.com")
    # And the ledger does not claim a decision the task never got: it still waits, token kept
    record = world.ledger.get(release_id)
    assert record["status"] == "PendingManualApproval" and "approval" not in record
    assert "did not reach the waiting task (AccessDeniedException)" in record["history"][-1]["detail"]
    assert world.ledger.get_token(release_id, "approval") == TOKEN
    # And once the call goes through, the same approver can decide
    world.sfn.gone = None
    assert decide(world.deps, release_id, "approve", "bob@example.com")["status"] == "Approved"


# ---------------------------------------------------------------------- decisions through IAM
ALICE_SSO = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Release_1a2b/Alice@Example.com"
ALICE_IAM = "arn:aws:iam::123456789012:user/asmith"
BOB_IAM = "arn:aws:iam::123456789012:user/bob-dev"
CAROL_IAM = "arn:aws:iam::123456789012:user/carol"
IDENTITIES = {"asmith": "alice@example.com", "alice-dev": "alice@example.com", "bob-dev": "bob@example.com"}


def test_through_iam_only_a_named_approver_approves_and_the_identity_map_names_iam_users(world):
    # Given a release whose policy names Alice and Bob, and maps their logins / IAM names
    release_id = waiting(world, approvers=["alice@example.com", "bob@example.com"], identities=IDENTITIES)
    # When Carol (an IAM user the policy doesn't name) approves / Then she is refused, nothing is sent
    with pytest.raises(links.NotAnApprover, match="carol is not among the approvers"):
        decide_as_caller(world.deps, release_id, "approve", CAROL_IAM)
    assert world.sfn.sent == [] and world.ledger.get(release_id)["status"] == "PendingManualApproval"
    # When Alice approves as IAM user asmith (mapped to her email) / Then it is approved, as that ARN
    assert decide_as_caller(world.deps, release_id, "approve", ALICE_IAM)["approval"]["approver"] == ALICE_IAM
    assert [name for name, _ in world.sfn.sent] == ["send_task_success"]


def test_through_iam_anyone_may_reject(world):
    release_id = waiting(world, approvers=["alice@example.com"])
    assert decide_as_caller(world.deps, release_id, "reject", CAROL_IAM, "no")["status"] == "Rejected"


def test_through_iam_four_eyes_knows_the_author_by_login_and_the_approver_by_session(world):
    # Given a four-eyes release uploaded by GitHub login Alice-Dev, named approvers Alice and Bob
    release_id = waiting(world, four_eyes=True, author="Alice-Dev", approvers=["alice@example.com", "bob@example.com"],
                         identities=IDENTITIES)
    # When Alice approves through her SSO session (named by her email, in another case) or her IAM user
    for arn in (ALICE_SSO, ALICE_IAM):
        with pytest.raises(FourEyesViolation, match="is the release's author"):
            decide_as_caller(world.deps, release_id, "approve", arn)
    assert world.sfn.sent == [] and world.ledger.get_token(release_id, "approval") == TOKEN
    # When Bob approves as his IAM user / Then it is approved
    assert decide_as_caller(world.deps, release_id, "approve", BOB_IAM)["status"] == "Approved"


def test_through_iam_four_eyes_refuses_an_approver_it_cannot_place(world):
    # Given four eyes, no named approvers (any IAM approver may approve) and no identity map
    release_id = waiting(world, four_eyes=True, author="alice@example.com")
    # When IAM user "asmith" approves / Then four eyes can't tell it isn't Alice, and refuses saying so
    with pytest.raises(FourEyesViolation, match="approver 'asmith' is not an email"):
        decide_as_caller(world.deps, release_id, "approve", ALICE_IAM)
    # An SSO session named by an email is placed: Bob's approves
    bob_sso = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Release_1a2b/bob@example.com"
    assert decide_as_caller(world.deps, release_id, "approve", bob_sso)["status"] == "Approved"


def test_through_iam_an_unknown_release_is_a_conflict(world):
    with pytest.raises(DecisionConflict, match="not in the ledger"):
        decide_as_caller(world.deps, "support-bot-nope-0", "approve", BOB_IAM)
