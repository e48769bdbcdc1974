"""Approval links on the real stack: the mail carries signed links, GET shows, POST decides."""

from __future__ import annotations

import base64
import json
import re
import shutil
from urllib.parse import parse_qs, urlencode, urlsplit

from modelgate_harness.polling import wait_until


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


def test_mailed_links_decide_once_with_four_eyes(pipeline, tmp_path):
    local, control = pipeline.local, pipeline.control
    pipeline.set_policy(approval="manual", four_eyes=True)
    sqs, sns = control.client("sqs"), control.client("sns")
    queue = sqs.create_queue(QueueName="approver-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=control.outputs["ApprovalTopicArn"], Protocol="sqs", Endpoint=arn,
                  Attributes={"RawMessageDelivery": "true"})
    folder = tmp_path / "v2"
    shutil.copytree(pipeline.examples / "v2", folder)
    manifest = json.loads((folder / "model-config.json").read_text())
    manifest["source"]["author"] = "Bob Example <bob@example.com>"
    (folder / "model-config.json").write_text(json.dumps(manifest))

    run = pipeline.driver.submit(folder, commit=pipeline.commit_for("links"))
    assert pipeline.driver.wait_for_decision_point(run)
    message = wait_until(lambda: sqs.receive_message(QueueUrl=queue).get("Messages"), 10, "the approval mail")[0]["Body"]
    token = control.ledger().get_token(run.release_id, "approval")
    assert token and token not in message
    approve = re.search(r"Approve:\s+(\S+)", message).group(1)
    assert approve.startswith(control.outputs["ApprovalCallbackUrl"].rstrip("/") + "/decide?t=")

    def call(event):
        # through the Function URL: anonymous, allowed by the function's resource policy
        return local.invoke_function_url("ApprovalCallbackFunction", event)

    page = call(_function_url_event("GET", approve))
    assert page["statusCode"] == 200 and "Opening this page decided nothing" in page["body"]
    assert control.ledger().get(run.release_id)["status"] == "PendingManualApproval"
    t = parse_qs(urlsplit(approve).query)["t"][0]
    bob = call(_function_url_event("POST", approve.split("?")[0], {"t": t, "email": "bob@example.com"}))
    assert bob["statusCode"] == 403
    alice = call(_function_url_event("POST", approve.split("?")[0], {"t": t, "email": "alice@example.com", "comment": "ok"}))
    assert alice["statusCode"] == 200, alice["body"]
    replay = call(_function_url_event("POST", approve.split("?")[0], {"t": t, "email": "alice@example.com"}))
    assert replay["statusCode"] == 409
    run = pipeline.driver.finish(run)
    assert run.record["approval"]["approver"] == "link:alice@example.com"
    assert "ShiftTraffic" in run.path, run.path
