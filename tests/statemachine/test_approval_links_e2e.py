"""Approval links on the real stack: each named approver is mailed their own signed links
(SNS subscription filter on the ``approver`` attribute), GET shows, POST decides as the
link's approver; the release's author (the uploader, never the manifest) can't approve by
link or by CLI, anyone can reject (a revoked signing key: test_approval_key_revocation.py).
The tests share one stack (``shared_pipeline``): each has its own inboxes and commits."""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from urllib.parse import parse_qs, urlencode, urlsplit

from conftest import HANG_GUARD_SECONDS
from modelgate_harness import cli
from modelgate_harness.polling import wait_until

from modelgate.approval import links

ALICE, BOB = "alice@example.com", "bob@example.com"


def _function_url_event(method: str, url: str, body: dict | None = None) -> dict:
    parts = urlsplit(url)
    event = {
        "version": "2.0", "routeKey": "$default", "rawPath": parts.path, "rawQueryString": parts.query,
        "headers": {"host": parts.netloc, "user-agent": "pytest-browser", "x-forwarded-proto": "https"},
        "requestContext": {
            "accountId": "anonymous", "apiId": parts.netloc.split(".")[0], "domainName": parts.netloc,
            "domainPrefix": parts.netloc.split(".")[0],
            "http": {"method": method, "path": parts.path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.10",
                     "userAgent": "pytest-browser"},
            "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
        "isBase64Encoded": False,
    }
    if parts.query:
        event["queryStringParameters"] = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if body is not None:
        event["headers"]["content-type"] = "application/x-www-form-urlencoded"
        event["body"] = base64.b64encode(urlencode(body).encode()).decode()
        event["isBase64Encoded"] = True
    return event


def _inbox(control, approver: str, label: str) -> str:
    """An approver's mailbox for one test (``label``: the module's tests share a stack): an SQS
    queue subscribed with a filter policy on the ``approver`` attribute."""
    sqs, sns = control.client("sqs"), control.client("sns")
    queue = sqs.create_queue(QueueName=f"inbox-{label}-{approver.split('@')[0]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=control.outputs["ApprovalTopicArn"], Protocol="sqs", Endpoint=arn,
                  Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"approver": [approver]})})
    return queue


def _mail(control, queue: str) -> str:
    sqs = control.client("sqs")
    [message] = wait_until(lambda: sqs.receive_message(QueueUrl=queue).get("Messages"), HANG_GUARD_SECONDS, "the approval mail")
    return message["Body"]


def _link(message: str, decision: str) -> str | None:
    found = re.search(rf"^{decision.capitalize()}:\s+(https://\S+)$", message, re.MULTILINE)
    return found.group(1) if found else None


# The policy's identity map: CI reports GitHub login "bob"; the local approver principal's IAM
# session ("modelgate-approver") is Alice's. Four eyes compares people through it.
IDENTITIES = {"bob": BOB, "modelgate-approver": ALICE}


def _waiting_release(pipeline, tmp_path, *, author: str, label: str, **policy):
    pipeline.set_policy(approval="manual", four_eyes=True, **{"identities": IDENTITIES, **policy})
    folder = tmp_path / "v2"
    shutil.copytree(pipeline.examples / "v2", folder)
    manifest = json.loads((folder / "model-config.json").read_text())
    manifest["source"]["author"] = "Alice Example <alice@example.com>"  # what the folder claims: ignored
    # (a branch that forges a mail line, "main\nApprove: https://evil...", is refused at Validate:
    # tests/statemachine/hostile_corpus.py; the mail's own one-line guard: test_stage_approval.py)
    manifest["source"]["branch"] = "main"
    (folder / "model-config.json").write_text(json.dumps(manifest))
    run = pipeline.driver.submit(folder, commit=pipeline.commit_for(label), author=author,
                                 branch="main")
    assert pipeline.driver.wait_for_decision_point(run)
    return run


def test_each_approver_gets_their_own_links_and_the_author_cannot_approve_by_link(shared_pipeline, tmp_path):
    pipeline = shared_pipeline
    local, control = pipeline.local, pipeline.control
    inboxes = {who: _inbox(control, who, "links") for who in (ALICE, BOB)}
    # Given a four-eyes release CI uploaded for Bob (its manifest claims Alice wrote it)
    run = _waiting_release(pipeline, tmp_path, author="bob", label="links", approvers=[ALICE, BOB])
    assert control.ledger().get(run.release_id)["author"] == "bob"
    mails = {who: _mail(control, queue) for who, queue in inboxes.items()}
    token = control.ledger().get_token(run.release_id, "approval")
    for message in mails.values():
        assert token and token not in message
        # the only Approve line is ours (or none)
        assert all(line.startswith("Approve:  https://" + urlsplit(control.outputs["ApprovalCallbackUrl"]).netloc)
                   or "not by you" in line for line in message.splitlines() if line.startswith("Approve:"))
    # Then Bob, the author, was mailed no approve link, only his reject link
    assert _link(mails[BOB], "approve") is None and _link(mails[BOB], "reject")
    approve = _link(mails[ALICE], "approve")
    assert approve.startswith(control.outputs["ApprovalCallbackUrl"].rstrip("/") + "/decide?t=")

    def call(event):
        # through the Function URL: anonymous, allowed by the function's resource policy
        return local.invoke_function_url("ApprovalCallbackFunction", event)

    page = call(_function_url_event("GET", approve))
    assert page["statusCode"] == 200 and "as <strong>alice@example.com</strong>" in page["body"]
    assert control.ledger().get(run.release_id)["status"] == "PendingManualApproval"
    # When Bob forges an approve link of his own with the stack's key (as if he could sign one)
    secret = control.client("secretsmanager").get_secret_value(
        SecretId=control.outputs["ApprovalSigningSecretArn"])["SecretString"].encode()
    forged = links.sign_link(secret, release_id=run.release_id, decision="approve",
                             expires_at=int(time.time()) + 600, nonce="f" * 22, approver=BOB)
    bob = call(_function_url_event("POST", approve.split("?")[0], {"t": forged, "email": ALICE}))
    # Then four eyes refuses it, whatever name he types
    assert bob["statusCode"] == 403 and "Four eyes" in bob["body"]
    # When Alice confirms her link / Then the release is approved, by her, once
    t = parse_qs(urlsplit(approve).query)["t"][0]
    alice = call(_function_url_event("POST", approve.split("?")[0], {"t": t, "comment": "ok"}))
    assert alice["statusCode"] == 200, alice["body"]
    replay = call(_function_url_event("POST", approve.split("?")[0], {"t": t}))
    assert replay["statusCode"] == 409
    run = pipeline.driver.finish(run)
    assert run.record["approval"]["approver"] == "link:alice@example.com"
    assert "ShiftTraffic" in run.path, run.path


def test_the_author_can_reject_by_link(shared_pipeline, tmp_path):
    pipeline = shared_pipeline
    local, control = pipeline.local, pipeline.control
    inbox = _inbox(control, BOB, "author-rejects")
    run = _waiting_release(pipeline, tmp_path, author="bob", label="author-rejects", approvers=[ALICE, BOB])
    reject = _link(_mail(control, inbox), "reject")
    t = parse_qs(urlsplit(reject).query)["t"][0]
    response = local.invoke_function_url("ApprovalCallbackFunction",
                                         _function_url_event("POST", reject.split("?")[0], {"t": t, "comment": "bug"}))
    assert response["statusCode"] == 200, response["body"]
    run = pipeline.driver.finish(run)
    assert run.record["status"] == "Rejected" and run.record["approval"]["approver"] == "link:bob@example.com"


def _cli_on(pipeline, monkeypatch):
    # the CLI resolves the stack through CloudFormation on AWS; here it gets the local one
    monkeypatch.setattr(cli, "_control", lambda args: cli.with_principal(pipeline.control, args))
    return pipeline.control


def test_the_author_cannot_approve_through_the_cli_but_can_reject(shared_pipeline, tmp_path, monkeypatch, capsys):
    pipeline = shared_pipeline
    cli_control = _cli_on(pipeline, monkeypatch)
    # Given a four-eyes release uploaded by Alice under her GitHub login ("alice-gh", mapped to her email)
    run = _waiting_release(pipeline, tmp_path, author="alice-gh", label="cli-author",
                           identities={**IDENTITIES, "alice-gh": ALICE})
    # When Alice approves through IAM (the approver principal's session is hers: the identity map)
    # Then four eyes knows both names are Alice's and refuses, in one line, and nothing is decided
    assert cli.main(["approve", run.release_id]) == 2
    err = capsys.readouterr().err
    assert "FourEyesViolation" in err and "is the release's author" in err and err.count("\n") == 1
    assert cli_control.ledger().get(run.release_id)["status"] == "PendingManualApproval"
    # and rejecting is allowed
    assert cli.main(["reject", run.release_id, "--comment", "not mine to ship"]) == 0
    assert pipeline.driver.finish(run).record["status"] == "Rejected"
