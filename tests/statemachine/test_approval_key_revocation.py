"""A revoked approval signing key kills every mailed link at once (the approval links' end to
end tests are in test_approval_links_e2e.py).

A module of its own: it revokes the stack's signing key, and a warm RequestApproval keeps
signing with its cached key for up to 15 minutes (modelgate.approval.keys), so the mails of
tests sharing its stack would carry links that no longer verify; and a fresh stack cannot be
built in a process while a module's shared stack is up.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from modelgate_harness import cli
from test_approval_links_e2e import ALICE, _cli_on, _function_url_event, _inbox, _link, _mail, _waiting_release


def test_a_revoked_signing_key_kills_every_mailed_link_at_once(pipeline, tmp_path, monkeypatch, capsys):
    _cli_on(pipeline, monkeypatch)
    local, control = pipeline.local, pipeline.control
    inbox = _inbox(control, ALICE, "revoked")
    run = _waiting_release(pipeline, tmp_path, author="bob", label="revoked", approvers=[ALICE])
    approve = _link(_mail(control, inbox), "approve")
    # Given the approval callback opened the link (a warm container caching the key)
    opened = local.invoke_function_url("ApprovalCallbackFunction", _function_url_event("GET", approve))
    assert opened["statusCode"] == 200
    # When an operator revokes the signing key (the mail leaked)
    assert cli.main(["revoke-signing-key"]) == 0
    assert "approval links revoked" in capsys.readouterr().out
    # Then the mailed link decides nothing
    t = parse_qs(urlsplit(approve).query)["t"][0]
    response = local.invoke_function_url("ApprovalCallbackFunction",
                                         _function_url_event("POST", approve.split("?")[0], {"t": t}))
    assert response["statusCode"] == 403 and "not valid" in response["body"]
    assert control.ledger().get(run.release_id)["status"] == "PendingManualApproval"
    # and CI cannot revoke (only the operator's policy grants it)
    assert cli.main(["--as", "ci", "revoke-signing-key"]) == 2
    assert "AccessDenied" in capsys.readouterr().err
    # and the release is still decided through IAM
    assert cli.main(["approve", run.release_id, "--comment", "checked by hand"]) == 0
    run = pipeline.driver.finish(run)
    assert run.record["approval"]["approver"].startswith("arn:aws:sts::") and "ShiftTraffic" in run.path, run.path
