"""Approval links nobody can fake: signed, expiring, single-use, four eyes.

Why links at all: approvers read mail, not consoles. Why signed: the Function URL that
serves them has no AWS auth (AuthType NONE), so the link's HMAC *is* the authorisation;
the task token never leaves the ledger. Why a confirmation page: mail scanners open
every link in a message, so opening a link (GET) must decide nothing; only the POST from
that page does, and the POST carries the signed token itself (no cookie, so nothing for a
cross-site request to ride on).

Token format (version 2)::

    b64url(payload) "." b64url(HMAC-SHA256(key, DOMAIN + payload))
    payload = "2" \\n release_id \\n decision \\n expires_at \\n nonce \\n approver

Per-approver links: ``approver`` is one of the approvers the service's policy names (an
email), or ``-`` for a reject link bound to nobody (anyone may reject). An approve link is
always bound: it approves as its approver and as nobody else, and only while that approver
is still named in the release's policy. The confirmation form asks for no name: who
decides is what the signature says, never what someone types. Each named approver gets
their own mail (SNS message attribute ``approver``; subscribe each with a filter policy
on it, see README "How to approve"), so holding the link is being that approver.
Version 1 links (self-declared email) are refused.

Every field is checked against a strict alphabet before signing, so the newline-joined
payload is canonical. The MAC is checked (constant time, against each key: current and
previous) *before* the payload is parsed; only then is expiry looked at, so a tampered
token is always "invalid", never "expired".

Single use: the decision is recorded by the ledger's conditional write (the release must
still be PendingManualApproval); the link's nonce is claimed with a conditional put as
well, so the same link can't be replayed even if a release ever waited again.

Four eyes: when the release's policy asks for it, the release's author (the verified
uploader, never a manifest field) can't approve it (rejecting is always allowed);
``modelgate.approval.identity`` says who is who.

Revoking a leaked key: :func:`modelgate.approval.keys.revoke_signing_keys` gives the secret a new value and takes
the previous one out of service (no AWSPREVIOUS stage), and a decision (the POST) always
verifies against keys read from Secrets Manager at that moment, so every link signed
before the revocation fails at once, in warm containers too.
"""

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple
from urllib.parse import urlencode

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelgate.approval.identity import check_four_eyes
from modelgate.approval.keys import MIN_KEY_BYTES
from modelgate.errors import ConfigurationError, DecisionConflict, ModelgateError, error_code
from modelgate.policy import APPROVER_EMAIL

Decision = Literal["approve", "reject"]
DECISIONS: tuple[str, ...] = ("approve", "reject")
LINK_VERSION = "2"
UNBOUND = "-"  # the approver field of a reject link bound to nobody
# Domain separation: this key signs approval links and nothing else we might add later.
_DOMAIN = b"modelgate/approval-link\n"
# No link lives longer than a day, whatever the approval timeout: a mail sits in inboxes
# (and forwards) long after its decision mattered.
MAX_LINK_TTL_SECONDS = 86_400
_CLOCK_SKEW_SECONDS = 300
DECIDE_PATH = "/decide"
WAITING_STATUS = "PendingManualApproval"

_RELEASE_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")  # a Step Functions execution name
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
# A named approver: a lower-case ASCII email (what the policy's ``approvers`` holds).
APPROVER = APPROVER_EMAIL


# ---------------------------------------------------------------------- errors
class LinkInvalid(ModelgateError):
    """The approval link is garbled, tampered with or signed with a key we don't hold."""


class LinkExpired(ModelgateError):
    """The approval link was genuine but its time is up."""


class LinkUsed(DecisionConflict):
    """This approval link was used before: a link decides once."""


class ReleaseNotFound(ModelgateError):
    """The link names a release the ledger doesn't know."""


class ApprovalFormInvalid(ModelgateError):
    """The confirmation form came back incomplete or malformed (the message names the field)."""


# ---------------------------------------------------------------------- signing
class LinkClaims(NamedTuple):
    """What a verified link says. Its nonce may be logged; the token it came from may not."""

    release_id: str
    decision: Decision
    expires_at: int
    nonce: str
    approver: str | None = None  # the named approver the link is bound to; None: a reject link for anyone
    version: str = LINK_VERSION


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict url-safe base64: only the alphabet, and only the canonical encoding.

    (The standard decoder drops stray characters and ignores padding bits, so several
    strings decode alike; a flipped character must never still verify.)
    """
    if not _B64URL.match(text):
        raise LinkInvalid("the link is garbled (not url-safe base64)")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise LinkInvalid("the link is garbled (not url-safe base64)") from exc
    if _b64encode(data) != text:
        raise LinkInvalid("the link is garbled (not canonical base64)")
    return data


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest()


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise ConfigurationError(f"approval link signing keys must be at least {MIN_KEY_BYTES} bytes")
    return key


def sign_link(
    key: bytes, *, release_id: str, decision: str, expires_at: int, nonce: str, approver: str | None = None
) -> str:
    """A url-safe token saying "<approver> may <decision> release <id>, until <expires_at>", once (nonce).

    An approve link must name its approver (a named approver's email); a reject link may
    name nobody (``approver=None``): anyone may reject.
    """
    if not _RELEASE_ID.match(release_id):
        raise ValueError(f"release id {release_id!r} can't be put in an approval link")
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    if not _NONCE.match(nonce):
        raise ValueError("nonce must be 16-64 url-safe characters")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or expires_at <= 0:
        raise ValueError(f"expires_at must be a positive epoch second, got {expires_at!r}")
    if approver is None and decision == "approve":
        raise ValueError("an approve link must be bound to a named approver")
    if approver is not None and not APPROVER.match(approver):
        raise ValueError(f"approver {approver!r} is not a lower-case email address")
    bound = approver if approver is not None else UNBOUND
    payload = "\n".join((LINK_VERSION, release_id, decision, str(expires_at), nonce, bound)).encode("ascii")
    return f"{_b64encode(payload)}.{_b64encode(_mac(_check_key(key), payload))}"


def verify_link(keys: bytes | Sequence[bytes], token: str, *, now: float) -> LinkClaims:
    """The claims of a genuine, unexpired token; LinkInvalid or LinkExpired otherwise.

    ``keys``: the current signing key first, then previous ones (rotation); a token
    signed with any of them is genuine.
    """
    candidates = [keys] if isinstance(keys, bytes) else list(keys)
    if not candidates:
        raise ConfigurationError("no approval link signing key is configured")
    if not isinstance(token, str) or len(token) > 1024 or token.count(".") != 1:
        raise LinkInvalid("the link is garbled (expected <payload>.<signature>)")
    encoded_payload, encoded_mac = token.split(".")
    payload, mac = _b64decode(encoded_payload), _b64decode(encoded_mac)
    genuine = False
    for key in candidates:  # every key, no early exit: timing says nothing about which
        genuine |= hmac.compare_digest(_mac(_check_key(key), payload), mac)
    if not genuine:
        raise LinkInvalid("the link's signature doesn't match: it was altered or isn't ours")

    fields = payload.decode("ascii", errors="replace").split("\n")
    if len(fields) != 6 or fields[0] != LINK_VERSION:
        raise LinkInvalid(
            f"the link has an unknown format (version {fields[0][:8]!r}); use the links from the latest Modelgate mail"
        )
    _, release_id, decision, expires_text, nonce, bound = fields
    if not (_RELEASE_ID.match(release_id) and decision in DECISIONS and expires_text.isdigit() and _NONCE.match(nonce)):
        raise LinkInvalid("the link's content is malformed")
    approver = None if bound == UNBOUND else bound
    if (approver is None and decision == "approve") or (approver is not None and not APPROVER.match(approver)):
        raise LinkInvalid("the link's approver is malformed")
    expires_at = int(expires_text)
    if expires_at > now + MAX_LINK_TTL_SECONDS + _CLOCK_SKEW_SECONDS:
        raise LinkInvalid("the link claims to live longer than any link we sign")
    if now >= expires_at:
        raise LinkExpired(
            f"this {decision} link for release {release_id} expired at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(expires_at))}"
        )
    return LinkClaims(  # type: ignore[arg-type]
        release_id=release_id, decision=decision, expires_at=expires_at, nonce=nonce, approver=approver
    )


def link_ttl(approval_timeout_seconds: int) -> int:
    """A link lives as long as the approval waits, but never longer than a day."""
    return max(1, min(int(approval_timeout_seconds), MAX_LINK_TTL_SECONDS))


def approval_links(
    base_url: str,
    key: bytes,
    release_id: str,
    ttl_seconds: int,
    now: float,
    *,
    approver: str | None = None,
    decisions: Sequence[str] = DECISIONS,
    new_nonce: Callable[[], str] = lambda: secrets.token_urlsafe(18),
) -> dict[str, str]:
    """{decision: url}: one signed link per decision (each with its own nonce), bound to
    ``approver``; without an approver only a reject link can be made (anyone may reject)."""
    if not base_url.startswith(("https://", "http://")):
        raise ConfigurationError(f"approval base URL {base_url!r} is not an http(s) URL")
    expires_at = int(now) + link_ttl(ttl_seconds)
    return {
        decision: base_url.rstrip("/")
        + DECIDE_PATH
        + "?"
        + urlencode({"t": sign_link(
            key, release_id=release_id, decision=decision, expires_at=expires_at, nonce=new_nonce(), approver=approver
        )})
        for decision in decisions
    }


# ---------------------------------------------------------------------- keys (modelgate.approval.keys)
KeySource = Callable[[bool], Sequence[bytes]]
"""``keys(refresh)``: the signing keys, current first; ``refresh=True`` after a miss."""


def verify_now(
    keys: KeySource, fresh_keys: Callable[[], Sequence[bytes]] | None, token: str, *, now: float
) -> LinkClaims:
    """verify_with, then (for a link that verified) once more against keys read just now, so
    a key revoked a moment ago is refused even by a container that still caches it. A garbage
    link is refused by the first check and costs no extra Secrets Manager call."""
    claims = verify_with(keys, token, now=now)
    if fresh_keys is not None:
        claims = verify_link(fresh_keys(), token, now=now)
    return claims


def verify_with(keys: KeySource, token: str, *, now: float) -> LinkClaims:
    """verify_link with cached keys, re-reading them once when the link doesn't verify
    (it may be signed with a key rotated in after this container read its keys)."""
    try:
        return verify_link(keys(False), token, now=now)
    except LinkInvalid:
        return verify_link(keys(True), token, now=now)


# ---------------------------------------------------------------------- the confirmation form
class ApprovalForm(BaseModel):
    """What the confirmation page POSTs back: the signed token and why. Who decides is the
    token's approver, so a field naming someone (``email``, as version 1 forms sent) is ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    t: str = Field(min_length=1, max_length=1024)
    comment: str = Field(default="", max_length=2000)


_FIELD_NAMES = {"t": "the signed link (t)", "comment": "the comment (comment)"}


def parse_form(fields: Mapping[str, str]) -> ApprovalForm:
    """Validate the posted form; ApprovalFormInvalid names each field that is wrong."""
    try:
        form = ApprovalForm.model_validate(dict(fields))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "form"
            problems.append(f"{_FIELD_NAMES.get(field, field)}: {error['msg'].lower()}")
        raise ApprovalFormInvalid("; ".join(problems)) from exc
    return form


ANYONE = "link:anyone"


def link_approver(claims: LinkClaims) -> str:
    """How a link's decider is recorded: ``link:<the approver it is bound to>``, or
    ``link:anyone`` for a reject link bound to nobody (the claim also records source IP
    and user agent)."""
    return f"link:{claims.approver}" if claims.approver else ANYONE


# ---------------------------------------------------------------------- ledger: link use
def claim_link(
    ledger: Any, claims: LinkClaims, *, approver: str, source_ip: str, user_agent: str, at: str
) -> None:
    """Mark the link's nonce used (ledger item RELEASE#<id> / LINK#<nonce>), once.

    The item also records who used it and from where (source IP, user agent): what an
    audit can follow up if a named approver's link was forwarded or leaked.
    """
    try:
        ledger.table.put_item(
            Item={
                "pk": f"RELEASE#{claims.release_id}",
                "sk": f"LINK#{claims.nonce}",
                "decision": claims.decision,
                "approver": approver,
                "source_ip": source_ip[:64],
                "user_agent": user_agent[:512],
                "at": at,
                "expires_at": claims.expires_at,
            },
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            raise LinkUsed(f"this link was already used to {claims.decision} release {claims.release_id}") from exc
        raise


def unclaim_link(ledger: Any, claims: LinkClaims) -> None:
    """Give a link back when recording its decision failed for a reason other than a conflict."""
    ledger.table.delete_item(Key={"pk": f"RELEASE#{claims.release_id}", "sk": f"LINK#{claims.nonce}"})


# ---------------------------------------------------------------------- the two requests
def open_link(token: str, *, keys: KeySource, ledger: Any, now: float) -> tuple[LinkClaims, dict]:
    """GET: verify the link and read the release. Decides nothing, writes nothing.

    Raises LinkInvalid, LinkExpired, ReleaseNotFound, or DecisionConflict when the release
    no longer waits for a decision (the page then says what happened instead).
    """
    claims = verify_with(keys, token, now=now)
    record = ledger.get(claims.release_id)
    if record is None:
        raise ReleaseNotFound(f"release {claims.release_id} is not in the ledger")
    if record.get("status") != WAITING_STATUS:
        raise DecisionConflict(_not_waiting(claims.release_id, record))
    return claims, record


def decide_by_link(
    form: ApprovalForm,
    *,
    source_ip: str,
    user_agent: str,
    keys: KeySource,
    ledger: Any,
    decide: Callable[[str, str, str, str], dict],
    now: float,
    at: str,
    fresh_keys: Callable[[], Sequence[bytes]] | None = None,
) -> tuple[LinkClaims, dict]:
    """POST: verify again (against ``fresh_keys`` too: a revoked key fails at once), check
    the link's approver is named by the release's policy, check four eyes, claim the link,
    then decide through ``decide`` (``pipeline.decide`` bound to its deps: ledger
    conditional write + SendTask*).

    The decision and who takes it come from the signed token only; the form can't change them.
    """
    claims = verify_now(keys, fresh_keys, form.t, now=now)
    record = ledger.get(claims.release_id)
    if record is None:
        raise ReleaseNotFound(f"release {claims.release_id} is not in the ledger")
    if record.get("status") != WAITING_STATUS:
        raise DecisionConflict(_not_waiting(claims.release_id, record))
    check_named_approver(claims, record)
    approver = link_approver(claims)
    # Before claiming: an author turned away must not use up the link for a colleague.
    check_four_eyes(
        four_eyes=bool(record.get("four_eyes", False)),
        author=record.get("author"),
        approver=approver,
        decision=claims.decision,
        identities=record.get("identities") or {},
    )
    claim_link(ledger, claims, approver=approver, source_ip=source_ip, user_agent=user_agent, at=at)
    try:
        decided = decide(claims.release_id, claims.decision, approver, form.comment)
    except DecisionConflict:
        raise  # the release was decided (or stopped waiting) meanwhile: the link stays used
    except Exception:
        unclaim_link(ledger, claims)
        raise
    return claims, decided


class NotAnApprover(ModelgateError):
    """The link's approver is not (or no longer) one the release's policy names."""


def check_named_approver(claims: LinkClaims, record: Mapping[str, Any]) -> None:
    """An approve link approves only as an approver the release's policy named when it asked."""
    if claims.decision != "approve":
        return
    named = [str(a).lower() for a in record.get("approvers") or []]
    if claims.approver not in named:
        raise NotAnApprover(
            f"{claims.approver} is not among the approvers this release's policy names; nothing was decided"
        )


def _not_waiting(release_id: str, record: Mapping[str, Any]) -> str:
    status = record.get("status", "unknown")
    approval = record.get("approval") or {}
    who = f" by {approval['approver']}" if approval.get("approver") and status in ("Approved", "Rejected") else ""
    return f"release {release_id} no longer waits for a decision: it is {status}{who}"
