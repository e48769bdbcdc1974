"""Approval: register the release, ask approvers (signed links over SNS), hand their
decision to the waiting task. What approvers read lives in ``modelgate.approval.page``."""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from modelgate.approval import keys as signing_keys
from modelgate.approval import links as approval_links
from modelgate.approval.identity import check_four_eyes, resolve, same_person
from modelgate.approval.page import approval_message
from modelgate.contract import Approval, ReleaseContext
from modelgate.errors import TASK_GONE_CODES, DecisionConflict, error_code
from modelgate.observability import logger
from modelgate.pipeline.deps import Deps
from modelgate.pipeline.model_registry import register_package
from modelgate.settings import ApprovalRequestSettings
from modelgate.text import one_line

AUTO_APPROVAL = Approval(decision="approve", approver="policy:auto")


def register(deps: Deps, ctx: ReleaseContext) -> ReleaseContext:
    """Record the evaluated release (and, per policy, register it in SageMaker Model Registry:
    ``model_registry``); approval "auto" approves it here, by policy."""
    assert ctx.policy is not None
    ctx = register_package(deps, ctx)
    if ctx.policy.approval == "auto":
        deps.ledger.record(
            ctx.release_id,
            "Approved",
            "approved by policy (approval: auto)",
            approval=AUTO_APPROVAL,
        )
        return ctx.model_copy(update={"approval": AUTO_APPROVAL})
    deps.ledger.record(
        ctx.release_id,
        "PendingManualApproval",
        "registered; waiting for an approver",
        evaluation=ctx.evaluation,
        four_eyes=ctx.policy.four_eyes,  # read by decide: the policy as it was when asked
        approvers=list(ctx.policy.approvers),  # who a link may approve as (links.check_named_approver)
        identities=dict(ctx.policy.identities),  # which email a login or IAM name is (four eyes)
    )
    return ctx


def request_approval(deps: Deps[ApprovalRequestSettings], ctx: ReleaseContext, task_token: str) -> dict:
    """Keep the token in the ledger (never in the message) and mail signed links to the approvers.

    One message per named approver, carrying links bound to them and the message attribute
    ``approver`` (each approver's subscription filters on it: README "How to approve"); the
    author, under four eyes, gets a reject link only. With no approver named, one message
    with a reject link for anyone (approving is then `modelgate approve`, through IAM).
    """
    author = ctx.author
    mails = approval_links_for(deps, ctx, author=author)  # first: a misconfiguration fails before anything is kept
    report_url = report_link(deps, ctx)
    deps.ledger.put_token(ctx.release_id, "approval", task_token)
    for recipient, links in mails.items():
        attributes = {
            "service": {"DataType": "String", "StringValue": ctx.service},
            "release_id": {"DataType": "String", "StringValue": ctx.release_id},
        }
        if recipient:
            attributes["approver"] = {"DataType": "String", "StringValue": recipient}
        deps.sns.publish(
            TopicArn=deps.settings.approval_topic_arn,
            Subject=one_line(f"Modelgate: approve {ctx.service} release {ctx.commit[:12]}?", 100),
            Message=approval_message(ctx, links, author=author, recipient=recipient, report_url=report_url),
            MessageAttributes=attributes,
        )
    logger.info("approval requested", extra={"release_id": ctx.release_id, "messages": len(mails)})
    return {"release_id": ctx.release_id, "requested": True}


# A presigned URL lives at most as long as the credentials that signed it: the function's role
# session, hours ("Why does my Amazon S3 presigned URL expire before the expiration time that I
# specified?", AWS re:Post Knowledge Center, https://repost.aws/knowledge-center/presigned-url-s3-bucket-expiration).
# The confirmation page signs a fresh one each time it is opened.
REPORT_LINK_SECONDS = 12 * 3600


def report_link(deps: Deps[ApprovalRequestSettings], ctx: ReleaseContext) -> str | None:
    """A presigned HTTPS GET of the release's HTML evaluation report, for the mail (an ``s3://``
    address opens nothing in a mail client). Signed locally, no AWS call ("Sharing objects with
    presigned URLs", Amazon S3 User Guide,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/ShareObjectPreSignedURL.html); it works
    because this function's role may read ``reports/``. None without an HTML report."""
    key = ctx.evaluation.report_html_key if ctx.evaluation else None
    if not key:
        return None
    expires = min(REPORT_LINK_SECONDS, ctx.policy.approval_timeout_seconds if ctx.policy else REPORT_LINK_SECONDS)
    return str(deps.s3.generate_presigned_url(
        "get_object", Params={"Bucket": deps.settings.artifact_bucket, "Key": key}, ExpiresIn=max(60, expires)
    ))


def approval_links_for(
    deps: Deps[ApprovalRequestSettings], ctx: ReleaseContext, *, author: str | None = None
) -> dict[str | None, dict[str, str]]:
    """{named approver (None: anyone): their signed links}; links live as long as the approval
    waits, at most a day. Under four eyes the author's copy has no approve link."""
    settings = deps.settings
    assert ctx.policy is not None
    key = signing_keys.load_signing_keys(deps.secretsmanager, settings.signing_secret_arn)[0]
    now, ttl = time.time(), ctx.policy.approval_timeout_seconds
    if not ctx.policy.approvers:
        return {None: approval_links.approval_links(
            settings.approval_base_url, key, ctx.release_id, ttl, now, decisions=("reject",)
        )}
    mails: dict[str | None, dict[str, str]] = {}
    for approver in ctx.policy.approvers:
        is_author = ctx.policy.four_eyes and bool(author) and same_person(
            str(author), f"link:{approver}", ctx.policy.identities
        )
        mails[approver] = approval_links.approval_links(
            settings.approval_base_url, key, ctx.release_id, ttl, now, approver=approver,
            decisions=("reject",) if is_author else approval_links.DECISIONS,
        )
    return mails


def decide_as_caller(deps: Deps, release_id: str, decision: str, caller_arn: str, comment: str = "") -> dict:
    """A decision through IAM (the decision URL, ``AuthType: AWS_IAM``): ``caller_arn`` is the
    identity AWS authenticated (the URL's ``requestContext.authorizer.iam.userArn``).

    When the release's policy names approvers, only one of them may approve: the caller must
    be one of those emails, or a name the policy's ``identities`` maps to one (an SSO session
    is usually named by the person's email). Anyone who may call the URL may reject. Then
    :func:`decide` (four eyes, the ledger's conditional write, the task token).
    """
    current = deps.ledger.get(release_id)
    if current is None:
        raise DecisionConflict(f"release {release_id} is not in the ledger")
    named = [str(a).lower() for a in current.get("approvers") or []]
    if decision == "approve" and named:
        email = resolve(caller_arn, current.get("identities") or {}).email
        if email not in named:
            shown = email or resolve(caller_arn).name
            raise approval_links.NotAnApprover(
                f"{shown[:120]} is not among the approvers this release's policy names (map an IAM name to its "
                "approver's email with the policy's identities); nothing was decided"
            )
    return decide(deps, release_id, decision, caller_arn, comment)


def decide(
    deps: Deps, release_id: str, decision: str, approver: str, comment: str = ""
) -> dict:
    """An approver's decision: recorded once in the ledger, then handed to the waiting task.

    Four eyes holds for every way in (links and `modelgate approve` alike): the approver is
    compared with the release's verified author the validate step recorded.
    """
    current = deps.ledger.get(release_id)
    if current is None or deps.ledger.get_token(release_id, "approval") is None:
        status = current["status"] if current else "no such release"
        raise DecisionConflict(
            f"release {release_id} has no approval request waiting (status: {status})"
        )
    check_four_eyes(
        four_eyes=bool(current.get("four_eyes")), author=current.get("author"), approver=approver, decision=decision,
        identities=current.get("identities") or {},
    )
    record = deps.ledger.decide(release_id, decision, approver, comment)
    # Read, not taken yet: the token is removed only once the task got the decision (below),
    # so a refused call leaves the release waiting with its token (approvers may not write it).
    token = deps.ledger.get_token(release_id, "approval")
    if token is None:  # the timeout's outcome took it between our two reads
        raise DecisionConflict(f"release {release_id} stopped waiting for approval")
    try:
        if decision == "approve":
            deps.sfn.send_task_success(
                taskToken=token,
                output=Approval(decision="approve", approver=approver, comment=comment).model_dump_json(exclude_none=True),
            )
        else:
            deps.sfn.send_task_failure(
                taskToken=token,
                error="ApprovalRejected",
                cause=f"rejected by {approver}" + (f": {comment}" if comment else ""),
            )
    except ClientError as exc:
        if error_code(exc) not in TASK_GONE_CODES:
            # The decision did not reach the task (AccessDenied, throttled...): the task still
            # waits, so the ledger must too: the decision is taken back (the token stays), so
            # the ledger never says Approved for a release that is still waiting.
            deps.ledger.undo_decision(release_id, decision, approver, error_code(exc))
            raise
        deps.ledger.take_token(release_id, "approval")
        raise DecisionConflict(
            f"release {release_id} stopped waiting for approval before the decision reached it"
        ) from exc
    deps.ledger.take_token(release_id, "approval")  # used: nobody sends with it again
    return record
