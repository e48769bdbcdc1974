"""Approval links nobody can fake: signed, expiring, single use, bound to a named approver,
GET decides nothing, four eyes, revocable at once.

The handler tests send real Lambda Function URL events (events/approval_callback/*.json)
through functions/approval_callback/app.py, with the ledger in moto and a fake Step
Functions client that records what it was asked to do.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import string
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError

from modelgate.approval import identity, keys, links
from modelgate.errors import ConfigurationError
from modelgate.ledger import Ledger
from modelgate.observability import logger
from modelgate.pipeline import deps
from modelgate.settings import ApprovalCallbackSettings, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "functions" / "approval_callback" / "app.py"
EVENTS = ROOT / "events" / "approval_callback"
# The key the sample events are signed with (documentation only; never deployed).
EXAMPLE_KEY = b"example-signing-key-for-sample-events-only-0123456789"
KEY = b"k" * 32 + b"-current-signing-key"
OLD_KEY = b"o" * 32 + b"-previous-signing-key"
RELEASE = "support-bot-ce04089f73fa-ed9c1e7291"  # the release the sample events name
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, the sample events' day
TASK_TOKEN = "AQCEAAAA-task-token-that-must-never-leave-the-ledger=="
NONCE = "n" * 22
ALICE, BOB = "alice@example.com", "bob@example.com"


# --------------------------------------------------------------------------- helpers
def token(decision: str = "approve", *, key: bytes = KEY, expires_at: int = T0 + 3600, nonce: str = NONCE,
          release_id: str = RELEASE, approver: str | None = ALICE) -> str:
    return links.sign_link(key, release_id=release_id, decision=decision, expires_at=expires_at, nonce=nonce,
                           approver=approver)


def flipped(text: str, position: int) -> str:
    """The text with one url-safe base64 character replaced by another."""
    alphabet = string.ascii_letters + string.digits + "-_"
    old = text[position]
    new = alphabet[(alphabet.index(old) + 1) % len(alphabet)]
    return text[:position] + new + text[position + 1:]


class FakeStepFunctions:
    """Records SendTask* calls; can be told to answer like a task that already timed out."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.error_code: str | None = None

    def _call(self, name: str, kwargs: dict) -> dict:
        if self.error_code:
            raise ClientError({"Error": {"Code": self.error_code, "Message": "task gone"}}, name)
        self.calls.append((name, kwargs))
        return {}

    def send_task_success(self, **kwargs: Any) -> dict:
        return self._call("send_task_success", kwargs)

    def send_task_failure(self, **kwargs: Any) -> dict:
        return self._call("send_task_failure", kwargs)


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    keys.clear_key_cache()
    yield
    keys.clear_key_cache()


# --------------------------------------------------------------------------- signing
def test_a_signed_link_verifies_to_what_was_signed():
    # Given a link signed for one decision / When it is verified before it expires
    claims = links.verify_link(KEY, token("reject"), now=T0)
    # Then it says exactly that
    assert claims == links.LinkClaims(release_id=RELEASE, decision="reject", expires_at=T0 + 3600, nonce=NONCE,
                                      approver=ALICE)
    # and a reject link may be bound to nobody (anyone may reject)
    assert links.verify_link(KEY, token("reject", approver=None), now=T0).approver is None


def test_a_version_1_link_with_no_approver_is_refused():
    # Given a link in the old format (the approver typed their own name on the page), genuinely signed
    payload = "\n".join(("1", RELEASE, "approve", str(T0 + 3600), NONCE)).encode()
    old = f"{links._b64encode(payload)}.{links._b64encode(links._mac(KEY, payload))}"
    # When verified / Then it is refused: who approves must be what the signature says
    with pytest.raises(links.LinkInvalid, match="unknown format"):
        links.verify_link(KEY, old, now=T0)


@pytest.mark.parametrize("part", ["payload", "signature"])
def test_every_single_character_change_is_refused(part):
    # Given a genuine link
    genuine = token()
    payload, signature = genuine.split(".")
    start, text = (0, payload) if part == "payload" else (len(payload) + 1, signature)
    # When any one character of its payload / signature is changed
    for i in range(len(text)):
        tampered = flipped(genuine, start + i)
        # Then it is refused as invalid (never as merely expired, never accepted)
        with pytest.raises(links.LinkInvalid):
            links.verify_link(KEY, tampered, now=T0)


@pytest.mark.parametrize(
    "garbled",
    ["", "nodot", "a.b.c", "abc.%%%", token() + "=", token().replace(".", ". "), "é." + token().split(".")[1]],
)
def test_garbled_links_are_refused(garbled):
    with pytest.raises(links.LinkInvalid):
        links.verify_link(KEY, garbled, now=T0)


def test_a_link_signed_with_another_key_is_refused():
    with pytest.raises(links.LinkInvalid, match="signature"):
        links.verify_link(KEY, token(key=b"x" * 40), now=T0)


def test_an_expired_link_is_refused_as_expired_but_a_tampered_expired_one_as_invalid():
    # Given a link that expired a second ago
    expired = token(expires_at=T0 - 1)
    # When / Then it is refused as expired
    with pytest.raises(links.LinkExpired, match="expired at 2025-12-31 23:59:59 UTC"):
        links.verify_link(KEY, expired, now=T0)
    # and at its expiry second itself
    with pytest.raises(links.LinkExpired):
        links.verify_link(KEY, token(expires_at=T0), now=T0)
    # and altered, it is invalid: the signature is checked before anything is believed
    with pytest.raises(links.LinkInvalid):
        links.verify_link(KEY, flipped(expired, 3), now=T0)


def test_a_link_claiming_to_live_longer_than_any_link_we_sign_is_refused():
    with pytest.raises(links.LinkInvalid, match="longer"):
        links.verify_link(KEY, token(expires_at=T0 + 30 * 86_400), now=T0)


def test_after_a_rotation_links_signed_with_the_previous_key_still_verify():
    # Given a link mailed before the key was rotated
    before = token(key=OLD_KEY)
    # When verified with [current, previous] / Then it verifies; with the current key alone it doesn't
    assert links.verify_link([KEY, OLD_KEY], before, now=T0).release_id == RELEASE
    with pytest.raises(links.LinkInvalid):
        links.verify_link([KEY], before, now=T0)
    # and a link signed with the new key verifies with the same pair
    assert links.verify_link([KEY, OLD_KEY], token(key=KEY), now=T0).nonce == NONCE


def test_a_verifier_with_stale_keys_rereads_them_once_on_a_miss():
    # Given a warm verifier that read its keys before a rotation
    reads: list[bool] = []

    def keys(refresh: bool) -> list[bytes]:
        reads.append(refresh)
        return [KEY, OLD_KEY] if refresh else [OLD_KEY]

    # When a link signed with the new key arrives / Then it re-reads the keys and verifies it
    assert links.verify_with(keys, token(key=KEY), now=T0).decision == "approve"
    assert reads == [False, True]


def test_short_keys_are_a_configuration_error():
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        links.sign_link(b"short", release_id=RELEASE, decision="approve", expires_at=T0, nonce=NONCE, approver=ALICE)


@pytest.mark.parametrize(
    "kwargs",
    [{"release_id": "bad\nid"}, {"decision": "maybe"}, {"nonce": "short"}, {"expires_at": 0}, {"expires_at": True},
     {"approver": None}, {"approver": "Alice@Example.com"}, {"approver": "alice@example.com\nbob@example.com"},
     {"approver": "-"}, {"approver": "alice"}],
)
def test_nothing_ambiguous_can_be_signed(kwargs):
    args = {"release_id": RELEASE, "decision": "approve", "expires_at": T0, "nonce": NONCE, "approver": ALICE, **kwargs}
    with pytest.raises(ValueError):
        links.sign_link(KEY, **args)


def test_approval_links_are_one_per_decision_each_with_its_own_nonce_and_capped_at_a_day():
    # Given an approval that may wait a week
    urls = links.approval_links("https://abc.lambda-url.us-east-1.on.aws/", KEY, RELEASE, 7 * 86_400, T0, approver=BOB)
    # Then there is one link per decision, to /decide, and each lives one day
    claims = {}
    for decision, url in urls.items():
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc, parts.path) == ("https", "abc.lambda-url.us-east-1.on.aws", "/decide")
        claims[decision] = links.verify_link(KEY, parse_qs(parts.query)["t"][0], now=T0)
        assert claims[decision].decision == decision and claims[decision].expires_at == T0 + 86_400
        assert claims[decision].approver == BOB
    assert claims["approve"].nonce != claims["reject"].nonce
    # and without an approver only a reject link (for anyone) can be made
    anyone = links.approval_links(
        "https://abc.lambda-url.us-east-1.on.aws/", KEY, RELEASE, 600, T0, decisions=("reject",)
    )
    assert list(anyone) == ["reject"]
    with pytest.raises(ValueError, match="bound to a named approver"):
        links.approval_links("https://abc.lambda-url.us-east-1.on.aws/", KEY, RELEASE, 600, T0)
    # and a short approval timeout gives short links
    assert links.link_ttl(600) == 600


# --------------------------------------------------------------------------- keys in Secrets Manager
def test_signing_keys_come_from_the_secret_current_then_previous_and_are_cached(aws_env):
    # Given the signing secret, as the template's GenerateSecretString creates it
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(Name="approval-signing", SecretString="a" * 64)["ARN"]
    clock = [100.0]
    load = lambda **kw: keys.load_signing_keys(sm, arn, clock=lambda: clock[0], **kw)  # noqa: E731
    assert load() == [b"a" * 64]
    # When it is rotated (a new value: AWSCURRENT moves, the old one becomes AWSPREVIOUS)
    sm.put_secret_value(SecretId=arn, SecretString="b" * 64)
    # Then a warm container keeps its keys (no call per request) ...
    assert load() == [b"a" * 64]
    # ... a refresh soon after a read is refused (garbage links can't force reads) ...
    clock[0] += 5
    assert load(refresh=True) == [b"a" * 64]
    # ... and a later refresh reads [current, previous]
    clock[0] += 60
    assert load(refresh=True) == [b"b" * 64, b"a" * 64]


def test_revoking_the_key_refuses_every_earlier_link_at_once_even_in_a_warm_container(aws_env):
    # Given the signing secret, rotated once (so a previous key is still accepted), and a link of each key
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(Name="approval-signing", SecretString="a" * 64)["ARN"]
    sm.put_secret_value(SecretId=arn, SecretString="b" * 64)
    older, leaked = token(key=b"a" * 64), token(key=b"b" * 64, nonce="m" * 22)
    cached = lambda refresh: keys.load_signing_keys(sm, arn, refresh=refresh)  # noqa: E731
    fresh = lambda: keys.load_signing_keys(sm, arn, fresh=True)  # noqa: E731
    assert links.verify_now(cached, fresh, older, now=T0).nonce == NONCE  # a warm container now holds both keys
    # When an operator revokes the keys (`modelgate revoke-signing-key`)
    keys.revoke_signing_keys(sm, arn)
    # Then the secret holds one key, neither of the old ones ...
    assert keys.fetch_signing_keys(sm, arn) not in ([b"b" * 64], [b"a" * 64])
    assert len(keys.fetch_signing_keys(sm, arn)) == 1
    # ... a decision refuses both old links at once, though the cache still holds their keys
    for old in (older, leaked):
        assert links.verify_with(lambda refresh: [b"b" * 64, b"a" * 64], old, now=T0)  # the cache alone would pass
        with pytest.raises(links.LinkInvalid, match="signature"):
            links.verify_now(lambda refresh: [b"b" * 64, b"a" * 64], fresh, old, now=T0)
    # ... and a link signed with the new key verifies
    [new_key] = keys.fetch_signing_keys(sm, arn)
    assert links.verify_now(cached, fresh, token(key=new_key), now=T0).approver == ALICE


def test_a_weak_signing_secret_is_a_configuration_error(aws_env):
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="weak", SecretString="too-short")
    with pytest.raises(ConfigurationError, match="at least 32"):
        keys.fetch_signing_keys(sm, "weak")


def test_the_secret_arn_has_no_default():
    # The callback's settings name it (the pipeline's common variables are all there)
    common = {"LEDGER_TABLE": "l", "ARTIFACT_BUCKET": "b", "SERVICES_PREFIX": "/p/", "APPROVAL_TOPIC_ARN": "t",
              "STACK_NAME": "s"}
    with pytest.raises(ConfigurationError, match="SIGNING_SECRET_ARN"):
        load_settings(common, ApprovalCallbackSettings)


# --------------------------------------------------------------------------- identities / four eyes
@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Bob Example <Bob@Example.com>", "link:bob@example.com", True),
        ("bob@example.com", "link:bob+approvals@example.com", True),
        ("bob@example.com", "link:bob@other.org", False),
        ("bob@example.com", "link:alice@example.com", False),
        ("12345+bob@users.noreply.github.com", "arn:aws:iam::123456789012:user/bob", True),
        ("bob.smith@example.com", "arn:aws:iam::123456789012:user/engineers/bob.smith", True),
        ("bob@example.com", "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Release_1a2b/bob@example.com", True),
        ("bob@example.com", "arn:aws:sts::123456789012:assumed-role/Deployer/ci-session", False),
        ("bob@example.com", "arn:aws:sts::123456789012:federated-user/bob", True),
        ("alice", "arn:aws:iam::123456789012:user/bob", False),
        ("", "link:bob@example.com", False),
    ],
)
def test_identities_compare_by_email_or_by_name_against_the_local_part(a, b, same):
    assert identity.same_person(a, b) is same


def test_four_eyes_refuses_the_author_and_admits_others_and_any_rejection():
    author = "Bob Example <bob@example.com>"
    with pytest.raises(identity.FourEyesViolation, match="release's author"):
        identity.check_four_eyes(four_eyes=True, author=author, approver="link:bob@example.com", decision="approve")
    identity.check_four_eyes(four_eyes=True, author=author, approver="link:alice@example.com", decision="approve")
    identity.check_four_eyes(four_eyes=True, author=author, approver="link:bob@example.com", decision="reject")
    identity.check_four_eyes(four_eyes=False, author=author, approver="link:bob@example.com", decision="approve")


@pytest.mark.parametrize(
    ("author", "approver"),
    [
        ("alice-dev", "link:alice@example.com"),  # GitHub login -> approver email
        ("Alice-Dev", "link:alice@example.com"),  # logins compare case-insensitively
        ("  alice-dev ", "link:alice@example.com"),  # and without surrounding whitespace
        ("12345+Alice-Dev@users.noreply.github.com", "link:alice@example.com"),  # GitHub's noreply address
        ("alice-dev", "arn:aws:iam::123456789012:user/asmith"),  # both sides mapped: an IAM user name too
        ("alice@example.com", "arn:aws:iam::123456789012:user/asmith"),  # the other direction
        ("Alice@Example.com", "link:alice@example.com"),  # emails compare in lower case
        ("alice@example.com", "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Release/Alice@Example.COM"),
    ],
)
def test_the_identity_map_makes_a_login_and_an_email_one_person(author, approver):
    identities = {"alice-dev": "alice@example.com", "asmith": "alice@example.com", "bob-dev": "bob@example.com"}
    assert identity.same_person(author, approver, identities)
    with pytest.raises(identity.FourEyesViolation, match="release's author"):
        identity.check_four_eyes(four_eyes=True, author=author, approver=approver, decision="approve",
                                 identities=identities)
    # and someone else may approve: Bob, under his login or his email
    for other in ("link:bob@example.com", "arn:aws:iam::123456789012:user/bob-dev"):
        assert not identity.same_person(author, other, identities)
        identity.check_four_eyes(four_eyes=True, author=author, approver=other, decision="approve",
                                 identities=identities)


def test_without_the_map_a_login_that_differs_from_the_email_is_not_placed_and_four_eyes_refuses():
    # "asmith" and "alice@example.com" look like different people; a guess would let Alice approve
    # her own release, so under four eyes both an unplaced author and an unplaced approver are refused
    assert not identity.same_person("asmith", "link:alice@example.com")
    with pytest.raises(identity.FourEyesViolation, match="author 'asmith' is not an email"):
        identity.check_four_eyes(four_eyes=True, author="asmith", approver="link:alice@example.com", decision="approve")
    with pytest.raises(identity.FourEyesViolation, match="approver 'asmith' is not an email"):
        identity.check_four_eyes(four_eyes=True, author="bob@example.com",
                                 approver="arn:aws:iam::123456789012:user/asmith", decision="approve")
    # rejecting needs no identity, and without four eyes nothing is compared
    identity.check_four_eyes(four_eyes=True, author="asmith", approver="link:alice@example.com", decision="reject")
    identity.check_four_eyes(four_eyes=False, author="asmith", approver="link:alice@example.com", decision="approve")


def test_four_eyes_without_a_recorded_author_refuses_every_approval():
    # An upload without its author must not be a way around the policy.
    with pytest.raises(identity.FourEyesViolation, match="no verified author"):
        identity.check_four_eyes(four_eyes=True, author=None, approver="link:alice@example.com", decision="approve")


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, (None, None)),
        ({"modelgate-author": "octocat", "modelgate-author-source": "ci"}, ("octocat", "ci")),
        ({"Modelgate-Author": "arn:aws:sts::123456789012:assumed-role/Dev/bob@example.com"},
         ("arn:aws:sts::123456789012:assumed-role/Dev/bob@example.com", "uploader")),
    ],
)
def test_the_author_is_read_from_the_uploads_metadata(metadata, expected):
    assert identity.verified_author(metadata) == expected


@pytest.mark.parametrize(
    "metadata",
    [{"modelgate-author": "bob\nApprove: https://evil"}, {"modelgate-author": "bob smith"},
     {"modelgate-author": "x" * 257}, {"modelgate-author": ""}, {"modelgate-author": "\x1b[2Jbob"},
     {"modelgate-author": "bob", "modelgate-author-source": "manifest"}],
)
def test_an_author_that_is_not_an_identity_is_refused_not_cleaned(metadata):
    with pytest.raises(identity.AuthorInvalid):
        identity.verified_author(metadata)


# --------------------------------------------------------------------------- the handler
@pytest.fixture
def ledger(ledger_table) -> Ledger:
    return Ledger(ledger_table)


def seed_waiting_release(ledger: Ledger, *, four_eyes: bool = False, author: str | None = "bob@example.com",
                         approvers: tuple[str, ...] = (ALICE, BOB), identities: dict | None = None) -> None:
    """A release as validate / gate / register / request_approval leave it."""
    waiting = json.loads((ROOT / "events" / "request_approval" / "waiting.json").read_text())["release"]
    ledger.receive(RELEASE, "manifest uploaded", service="support-bot", commit=waiting["commit"])
    ledger.record(RELEASE, "Validated", "ok", branch="main", author=author, model_id="local.retrieval-small-v1:0")
    ledger.record(RELEASE, "CandidatePublished", "v3", candidate_version="3", live_version="2")
    ledger.record(RELEASE, "PendingManualApproval", "waiting", evaluation=waiting["evaluation"], four_eyes=four_eyes,
                  approvers=list(approvers), identities=identities or {})
    ledger.put_token(RELEASE, "approval", TASK_TOKEN)


def ledger_items(ledger: Ledger) -> list[dict]:
    return sorted(ledger.table.scan()["Items"], key=lambda i: (i["pk"], i["sk"]))


@pytest.fixture
def sfn() -> FakeStepFunctions:
    return FakeStepFunctions()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything the handler logs."""
    buffer = io.StringIO()
    handler = logger.registered_handler
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


@pytest.fixture
def callback(ledger, sfn, monkeypatch, log_output):
    """invoke(event, now=...) → the Function URL response of the real handler module."""
    spec = importlib.util.spec_from_file_location("approval_callback_app_under_test", APP)
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, app)  # as the Lambda runtime does
    spec.loader.exec_module(app)
    settings = Settings.model_validate({
        "LEDGER_TABLE": "ledger", "ARTIFACT_BUCKET": "artefacts", "SERVICES_PREFIX": "/modelgate/test/services/",
        "APPROVAL_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:approvals", "STACK_NAME": "modelgate-test",
    })
    clients = {"s3": boto3.client("s3"), "stepfunctions": sfn}
    pipeline_deps = deps.Deps(settings=settings, client=clients.__getitem__, ledger=ledger)
    clock = {"now": float(T0 + 300)}
    monkeypatch.setattr(app, "build_deps", lambda: app.CallbackDeps(
        pipeline=pipeline_deps, keys=lambda refresh: [KEY, EXAMPLE_KEY], clock=lambda: clock["now"]))
    context = SimpleNamespace(function_name="approval-callback", function_version="$LATEST", memory_limit_in_mb=256,
                              invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:approval-callback",
                              aws_request_id="req-1")

    def invoke(event: dict, *, now: float | None = None) -> dict:
        if now is not None:
            clock["now"] = now
        return app.lambda_handler(event, context)

    return invoke


def get_event(t: str | None) -> dict:
    """The sample GET event (what Lambda sends when a browser opens the link), for token t."""
    event = json.loads((EVENTS / "get-confirm.json").read_text())
    event["queryStringParameters"] = {"t": t} if t is not None else None
    event["rawQueryString"] = urlencode({"t": t}) if t is not None else ""
    if t is None:
        del event["queryStringParameters"]
    return event


def post_event(fields: dict[str, str], *, content_type: str = "application/x-www-form-urlencoded",
               source_ip: str = "203.0.113.42") -> dict:
    """The sample POST event (the confirmation form submitted), with these form fields."""
    event = json.loads((EVENTS / "post-approve.json").read_text())
    body = urlencode(fields)
    event["body"] = base64.b64encode(body.encode()).decode()
    event["headers"]["content-type"] = content_type
    event["headers"]["content-length"] = str(len(body))
    event["requestContext"]["http"]["sourceIp"] = source_ip
    return event


def test_the_sample_events_open_and_approve_the_sample_release(callback, ledger, sfn):
    # Given the release the sample events name, waiting for approval
    seed_waiting_release(ledger)
    # When the sample GET and then the sample POST arrive (as `sam local invoke -e` sends them)
    get = json.loads((EVENTS / "get-confirm.json").read_text())
    post = json.loads((EVENTS / "post-approve.json").read_text())
    assert callback(get)["statusCode"] == 200
    response = callback(post)
    # Then the release is approved by the approver the link is bound to
    assert response["statusCode"] == 200, response["body"]
    assert ledger.get(RELEASE)["approval"]["approver"] == "link:bob@example.com"
    assert [name for name, _ in sfn.calls] == ["send_task_success"]


def test_opening_a_link_shows_the_release_and_decides_nothing(callback, ledger, sfn):
    # Given a release waiting for approval
    seed_waiting_release(ledger)
    before = ledger_items(ledger)
    link = token()
    # When the link is opened (a GET, as a person or a mail scanner would), twice
    responses = [callback(get_event(link)) for _ in range(2)]
    # Then a confirmation page shows what the release is, with a form that would POST the link
    page = responses[0]
    assert page["statusCode"] == 200 and page["headers"]["Content-Type"].startswith("text/html")
    html = page["body"]
    for text in ("support-bot", "ce04089f73fa33b83811a7303831a5d2a7ad8f8e", "0.861", "0.750", "accuracy_delta",
                 "reports/support-bot/", 'method="post"', "as <strong>alice@example.com</strong>",
                 "Opening this page decided nothing"):
        assert text in html, text
    assert f'name="t" value="{link}"' in html and 'name="email"' not in html  # nobody types who they are
    # and nothing changed anywhere: same ledger items, no Step Functions call, the link still unused
    assert ledger_items(ledger) == before
    assert sfn.calls == []
    assert responses[1]["statusCode"] == 200
    # and the page can't be framed, cached or leak the link in a Referer
    headers = page["headers"]
    assert headers["Referrer-Policy"] == "no-referrer" and headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    # and the task token is nowhere on it
    assert TASK_TOKEN not in html


@pytest.mark.parametrize(
    ("make_link", "status", "says"),
    [
        (lambda: flipped(token(), 10), 403, "not valid"),
        (lambda: flipped(token(), len(token()) - 5), 403, "not valid"),
        (lambda: token(expires_at=T0 + 60), 410, "expired"),
        (lambda: "", 400, "signed"),
        (lambda: token(release_id="support-bot-0000000000aa-0000000000"), 404, "not in the ledger"),
    ],
)
def test_a_bad_link_gets_a_page_saying_so_and_nothing_is_decided(callback, ledger, sfn, make_link, status, says):
    seed_waiting_release(ledger)
    before = ledger_items(ledger)
    # When a tampered / expired / missing / foreign link is opened or posted
    for event in (get_event(make_link() or None), post_event({"t": make_link()})):
        response = callback(event)
        # Then the answer is a 4xx page that says why
        assert response["statusCode"] == status, response["body"]
        assert says in response["body"]
        assert response["headers"]["Content-Type"].startswith("text/html")
    # and nothing was decided
    assert ledger_items(ledger) == before and sfn.calls == []


def test_a_link_approves_once_and_a_replay_is_refused(callback, ledger, sfn):
    # Given a release waiting for approval and its approve link
    seed_waiting_release(ledger)
    link = token("approve")
    form = {"t": link, "email": "mallory@example.com", "comment": "numbers <b>look</b> good"}
    # When the confirmation form is posted (with a name typed in, as an old form would send)
    response = callback(post_event(form))
    # Then the release is approved by the link's approver (the typed name counts for nothing),
    # with their comment (escaped on the page)
    assert response["statusCode"] == 200, response["body"]
    assert "numbers &lt;b&gt;look&lt;/b&gt; good" in response["body"]
    record = ledger.get(RELEASE)
    assert record["status"] == "Approved"
    assert record["approval"] == {**record["approval"], "decision": "approve", "approver": "link:alice@example.com",
                                  "comment": "numbers <b>look</b> good"}
    # and the waiting task got the token, once
    assert [(name, call["taskToken"]) for name, call in sfn.calls] == [("send_task_success", TASK_TOKEN)]
    assert json.loads(sfn.calls[0][1]["output"]) == {
        "decision": "approve", "approver": "link:alice@example.com", "comment": "numbers <b>look</b> good"}
    # and the link's use is on record with where it came from
    used = ledger.table.get_item(Key={"pk": f"RELEASE#{RELEASE}", "sk": f"LINK#{NONCE}"})["Item"]
    assert (used["approver"], used["source_ip"], used["decision"]) == ("link:alice@example.com", "203.0.113.42", "approve")
    assert used["user_agent"].startswith("Mozilla/5.0")
    # When the same POST is replayed, or the reject link used afterwards
    replay = callback(post_event(form, source_ip="198.51.100.7"))
    other = callback(post_event({"t": token("reject", nonce="r" * 22, approver=None)}))
    # Then both are refused and nothing more happens
    for refused in (replay, other):
        assert refused["statusCode"] == 409, refused["body"]
        assert "no longer waits for a decision: it is Approved by link:alice@example.com" in refused["body"]
    assert len(sfn.calls) == 1 and ledger.get(RELEASE)["status"] == "Approved"


def test_a_replayed_link_is_refused_even_if_the_release_waited_again(callback, ledger, sfn):
    # Given a link already used (its nonce claimed) on a release that waits for approval
    seed_waiting_release(ledger)
    link = token()
    links.claim_link(ledger, links.verify_link(KEY, link, now=T0), approver="link:x@example.com",
                     source_ip="198.51.100.7", user_agent="curl", at="2026-01-01T00:00:00Z")
    # When it is posted again / Then it is refused: a link decides once
    response = callback(post_event({"t": link}))
    assert response["statusCode"] == 409 and "already used" in response["body"]
    assert sfn.calls == [] and ledger.get(RELEASE)["status"] == "PendingManualApproval"


def test_a_reject_link_rejects(callback, ledger, sfn):
    seed_waiting_release(ledger)
    response = callback(post_event({"t": token("reject"), "comment": "too slow"}))
    assert response["statusCode"] == 200 and "rejected" in response["body"]
    assert ledger.get(RELEASE)["status"] == "Rejected"
    assert sfn.calls == [("send_task_failure", {"taskToken": TASK_TOKEN, "error": "ApprovalRejected",
                                                 "cause": "rejected by link:alice@example.com: too slow"})]


def test_a_reject_link_bound_to_nobody_rejects_as_anyone(callback, ledger, sfn):
    seed_waiting_release(ledger, approvers=())
    response = callback(post_event({"t": token("reject", approver=None), "email": "ceo@example.com"}))
    assert response["statusCode"] == 200, response["body"]
    assert ledger.get(RELEASE)["approval"]["approver"] == "link:anyone"


def test_an_approve_link_of_someone_the_policy_does_not_name_decides_nothing(callback, ledger, sfn):
    # Given a release whose policy names Alice only (Carol was removed, or never named)
    seed_waiting_release(ledger, approvers=(ALICE,))
    # When Carol's link (genuinely signed) is posted
    response = callback(post_event({"t": token(approver="carol@example.com")}))
    # Then nothing is decided and the link is not used up
    assert response["statusCode"] == 403 and "not among the approvers" in response["body"]
    assert ledger.get(RELEASE)["status"] == "PendingManualApproval" and sfn.calls == []


def test_four_eyes_the_authors_own_link_cannot_approve_but_another_approvers_can(callback, ledger, sfn):
    # Given a release whose policy asks for four eyes, uploaded for Bob (CI's actor, GitHub login "Bob-Dev",
    # which the policy's identities map to his email), both named approvers
    seed_waiting_release(ledger, four_eyes=True, author="Bob-Dev", identities={"bob-dev": BOB})
    # When Bob confirms an approve link bound to him, typing Alice's name in the form
    refused = callback(post_event({"t": token(approver=BOB), "email": ALICE}))
    # Then he is refused, nothing is decided, and the link is not used up
    assert refused["statusCode"] == 403 and "four eyes" in refused["body"].lower()
    assert ledger.get(RELEASE)["status"] == "PendingManualApproval" and sfn.calls == []
    assert "LINK#" not in str(ledger_items(ledger))
    # When Alice confirms her link / Then the release is approved, by her
    approved = callback(post_event({"t": token(approver=ALICE, nonce="a" * 22)}))
    assert approved["statusCode"] == 200, approved["body"]
    assert ledger.get(RELEASE)["approval"]["approver"] == "link:alice@example.com"
    assert [name for name, _ in sfn.calls] == ["send_task_success"]


def test_four_eyes_refuses_every_approval_of_a_release_whose_author_it_cannot_place(callback, ledger, sfn):
    # Given a four-eyes release uploaded by GitHub login "bsmith", which the policy's identities don't map
    seed_waiting_release(ledger, four_eyes=True, author="bsmith")
    # When Alice confirms her approve link / Then she is refused with the reason and the fix, link kept
    refused = callback(post_event({"t": token(approver=ALICE)}))
    assert refused["statusCode"] == 403 and "author &#x27;bsmith&#x27; is not an email" in refused["body"]
    assert "identities" in refused["body"] and ledger.get(RELEASE)["status"] == "PendingManualApproval"
    assert sfn.calls == [] and "LINK#" not in str(ledger_items(ledger))


def test_four_eyes_the_author_may_reject(callback, ledger, sfn):
    seed_waiting_release(ledger, four_eyes=True, author="bob@example.com")
    response = callback(post_event({"t": token("reject", approver=BOB), "comment": "found a bug"}))
    assert response["statusCode"] == 200, response["body"]
    assert ledger.get(RELEASE)["status"] == "Rejected"
    assert [name for name, _ in sfn.calls] == ["send_task_failure"]


@pytest.mark.parametrize(
    ("fields", "content_type", "says"),
    [
        ({"t": "set-below", "comment": "x" * 2001}, "application/x-www-form-urlencoded", "comment"),
        ({"comment": "ok"}, "application/x-www-form-urlencoded", "the signed link (t): field required"),
        ({"t": "set-below"}, "application/json", "expected a form post"),
    ],
)
def test_bad_form_input_gets_a_400_page_naming_the_problem(callback, ledger, sfn, fields, content_type, says):
    seed_waiting_release(ledger)
    before = ledger_items(ledger)
    fields = {k: (token() if v == "set-below" else v) for k, v in fields.items()}
    response = callback(post_event(fields, content_type=content_type))
    assert response["statusCode"] == 400
    assert says in response["body"]
    assert ledger_items(ledger) == before and sfn.calls == []


def test_a_form_field_sent_twice_is_refused(callback, ledger, sfn):
    seed_waiting_release(ledger)
    event = post_event({"t": token(), "comment": "ok"})
    body = base64.b64decode(event["body"]).decode() + "&comment=not+ok"
    event["body"] = base64.b64encode(body.encode()).decode()
    response = callback(event)
    assert response["statusCode"] == 400 and "more than once: comment" in response["body"]
    assert sfn.calls == []


def test_a_decision_after_the_task_timed_out_is_too_late(callback, ledger, sfn):
    # Given the waiting task timed out, but the timeout's outcome hasn't been recorded yet
    seed_waiting_release(ledger)
    sfn.error_code = "TaskTimedOut"
    # When the form is posted / Then the approver is told it came too late
    response = callback(post_event({"t": token()}))
    assert response["statusCode"] == 409 and "stopped waiting" in response["body"]


def test_neither_the_link_nor_the_task_token_is_ever_logged(callback, ledger, log_output):
    # Given a release and its link / When the link is opened, posted and replayed
    seed_waiting_release(ledger)
    link = token()
    callback(get_event(link))
    callback(post_event({"t": link}))
    callback(post_event({"t": flipped(link, 12)}))
    logs = log_output.getvalue()
    # Then the logs name the release and the nonce, never the link, its signature or the task token
    assert RELEASE in logs and NONCE in logs
    for secret in (link, link.split(".")[1], link.split(".")[0], TASK_TOKEN):
        assert secret not in logs


def test_other_paths_get_a_404_page(callback):
    event = get_event(token())
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/approve"
    response = callback(event)
    assert response["statusCode"] == 404 and "/decide" in response["body"]
