"""Approval links nobody can fake: signed, expiring, single-use, four eyes.

Why links at all: approvers read mail, not consoles. Why signed: the Function URL that
serves them has no AWS auth (AuthType NONE), so the link's HMAC *is* the authorisation;
the task token never leaves the ledger. Why a confirmation page: mail scanners open
every link in a message, so opening a link (GET) must decide nothing; only the POST from
that page does, and the POST carries the signed token itself (no cookie, so nothing for a
cross-site request to ride on).

Token format (version 1)::

    b64url(payload) "." b64url(HMAC-SHA256(key, DOMAIN + payload))
    payload = "1" \\n release_id \\n decision \\n expires_at \\n nonce

Every field is checked against a strict alphabet before signing, so the newline-joined
payload is canonical. The MAC is checked (constant time, against each key: current and
previous) *before* the payload is parsed; only then is expiry looked at, so a tampered
token is always "invalid", never "expired".

Single use: the decision is recorded by the ledger's conditional write (the release must
still be PendingManualApproval); the link's nonce is claimed with a conditional put as
well, so the same link can't be replayed even if a release ever waited again.

Four eyes: when the release's policy asks for it, the commit's author can't approve it
(rejecting is always allowed); ``modelgate.approval.identity`` says who is who.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelgate.approval.identity import check_four_eyes
from modelgate.errors import ConfigurationError, DecisionConflict, ModelgateError, error_code

Decision = Literal["approve", "reject"]
DECISIONS: tuple[str, ...] = ("approve", "reject")
LINK_VERSION = "1"
# Domain separation: this key signs approval links and nothing else we might add later.
_DOMAIN = b"modelgate/approval-link\n"
# No link lives longer than a day, whatever the approval timeout: a mail sits in inboxes
# (and forwards) long after its decision mattered.
MAX_LINK_TTL_SECONDS = 86_400
_CLOCK_SKEW_SECONDS = 300
MIN_KEY_BYTES = 32
DECIDE_PATH = "/decide"
WAITING_STATUS = "PendingManualApproval"

_RELEASE_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")  # a Step Functions execution name
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_EMAIL = re.compile(r"^[^@\s<>\"'(),;:\\\[\]]+@[^@\s<>\"'(),;:\\\[\]]+\.[^@\s<>\"'(),;:\\\[\]]+$")


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
@dataclass(frozen=True)
class LinkClaims:
    """What a verified link says. Its nonce may be logged; the token it came from may not."""

    release_id: str
    decision: Decision
    expires_at: int
    nonce: str
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


def sign_link(key: bytes, *, release_id: str, decision: str, expires_at: int, nonce: str) -> str:
    """A url-safe token saying "<decision> release <id>, until <expires_at>", once (nonce)."""
    if not _RELEASE_ID.match(release_id):
        raise ValueError(f"release id {release_id!r} can't be put in an approval link")
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    if not _NONCE.match(nonce):
        raise ValueError("nonce must be 16-64 url-safe characters")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or expires_at <= 0:
        raise ValueError(f"expires_at must be a positive epoch second, got {expires_at!r}")
    payload = "\n".join((LINK_VERSION, release_id, decision, str(expires_at), nonce)).encode("ascii")
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
    if len(fields) != 5 or fields[0] != LINK_VERSION:
        raise LinkInvalid(f"the link has an unknown format (version {fields[0]!r})")
    _, release_id, decision, expires_text, nonce = fields
    if not (_RELEASE_ID.match(release_id) and decision in DECISIONS and expires_text.isdigit() and _NONCE.match(nonce)):
        raise LinkInvalid("the link's content is malformed")
    expires_at = int(expires_text)
    if expires_at > now + MAX_LINK_TTL_SECONDS + _CLOCK_SKEW_SECONDS:
        raise LinkInvalid("the link claims to live longer than any link we sign")
    if now >= expires_at:
        raise LinkExpired(
            f"this {decision} link for release {release_id} expired at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(expires_at))}"
        )
    return LinkClaims(release_id=release_id, decision=decision, expires_at=expires_at, nonce=nonce)  # type: ignore[arg-type]


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
    new_nonce: Callable[[], str] = lambda: secrets.token_urlsafe(18),
) -> dict[str, str]:
    """{"approve": url, "reject": url}: one signed link per decision, each with its own nonce."""
    if not base_url.startswith(("https://", "http://")):
        raise ConfigurationError(f"approval base URL {base_url!r} is not an http(s) URL")
    expires_at = int(now) + link_ttl(ttl_seconds)
    return {
        decision: base_url.rstrip("/")
        + DECIDE_PATH
        + "?"
        + urlencode({"t": sign_link(key, release_id=release_id, decision=decision, expires_at=expires_at, nonce=new_nonce())})
        for decision in DECISIONS
    }


# ---------------------------------------------------------------------- keys
KEY_MAX_AGE_SECONDS = 900.0
KEY_MIN_REFRESH_SECONDS = 30.0


def fetch_signing_keys(secretsmanager: Any, secret_id: str) -> list[bytes]:
    """[current, previous?] from the secret's AWSCURRENT and AWSPREVIOUS versions.

    Rotating = putting a new secret value: Secrets Manager moves AWSCURRENT to it and
    AWSPREVIOUS to the old one, so links mailed before the rotation keep working until
    they expire, and the key before that is refused.
    """
    keys = []
    for stage in ("AWSCURRENT", "AWSPREVIOUS"):
        try:
            value = secretsmanager.get_secret_value(SecretId=secret_id, VersionStage=stage)
        except ClientError as exc:
            if stage == "AWSPREVIOUS" and error_code(exc) == "ResourceNotFoundException":
                break  # never rotated
            raise
        raw = value["SecretString"].encode("utf-8") if "SecretString" in value else bytes(value["SecretBinary"])
        if len(raw) < MIN_KEY_BYTES:
            raise ConfigurationError(
                f"approval signing secret ({stage}) is {len(raw)} bytes; it must be at least {MIN_KEY_BYTES}"
            )
        keys.append(raw)
    return keys


@dataclass
class _Cached:
    loaded_at: float
    keys: tuple[bytes, ...]


_cache: dict[str, _Cached] = {}
_cache_lock = threading.Lock()


def load_signing_keys(
    secretsmanager: Any,
    secret_id: str,
    *,
    refresh: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> list[bytes]:
    """The signing keys, read once per cold start and kept for up to 15 minutes.

    Not a bare ``lru_cache``: after a rotation, a warm verifier must learn the new key
    (it is asked to ``refresh`` when a link doesn't verify), and a warm signer must not
    sign with a key two rotations old. A refresh re-reads at most every 30 s, so garbage
    links can't turn into a stream of Secrets Manager calls.
    """
    now = clock()
    with _cache_lock:
        cached = _cache.get(secret_id)
        fresh_enough = cached is not None and (
            now - cached.loaded_at < (KEY_MIN_REFRESH_SECONDS if refresh else KEY_MAX_AGE_SECONDS)
        )
        if cached is not None and fresh_enough:
            return list(cached.keys)
        keys = tuple(fetch_signing_keys(secretsmanager, secret_id))
        _cache[secret_id] = _Cached(now, keys)
        return list(keys)


def clear_key_cache() -> None:
    """Forget cached keys (tests; the local runtime when it starts a new stack)."""
    with _cache_lock:
        _cache.clear()


KeySource = Callable[[bool], Sequence[bytes]]
"""``keys(refresh)``: the signing keys, current first; ``refresh=True`` after a miss."""


def verify_with(keys: KeySource, token: str, *, now: float) -> LinkClaims:
    """verify_link with cached keys, re-reading them once when the link doesn't verify
    (it may be signed with a key rotated in after this container read its keys)."""
    try:
        return verify_link(keys(False), token, now=now)
    except LinkInvalid:
        return verify_link(keys(True), token, now=now)


# ---------------------------------------------------------------------- the confirmation form
class ApprovalForm(BaseModel):
    """What the confirmation page POSTs back: the signed token, who, and why."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    t: str = Field(min_length=1, max_length=1024)
    email: str = Field(min_length=3, max_length=254)
    comment: str = Field(default="", max_length=2000)


_FIELD_NAMES = {"t": "the signed link (t)", "email": "your email (email)", "comment": "the comment (comment)"}


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
    if not _EMAIL.match(form.email):
        raise ApprovalFormInvalid(f"your email (email): {form.email!r} is not an email address")
    return form


def link_approver(email: str) -> str:
    """How a link approver is recorded: ``link:<email>`` (self-declared, so marked as such)."""
    return f"link:{email.strip().lower()}"


# ---------------------------------------------------------------------- ledger: link use
def claim_link(
    ledger: Any, claims: LinkClaims, *, approver: str, source_ip: str, user_agent: str, at: str
) -> None:
    """Mark the link's nonce used (ledger item RELEASE#<id> / LINK#<nonce>), once.

    The item also records who used it and from where (source IP, user agent): a link
    approver's identity is self-declared, so this is what an audit can follow up.
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
) -> tuple[LinkClaims, dict]:
    """POST: verify again, check four eyes, claim the link, then decide through ``decide``
    (``pipeline.decide`` bound to its deps: ledger conditional write + SendTask*).

    The decision comes from the signed token only; the form can't change it.
    """
    claims = verify_with(keys, form.t, now=now)
    record = ledger.get(claims.release_id)
    if record is None:
        raise ReleaseNotFound(f"release {claims.release_id} is not in the ledger")
    if record.get("status") != WAITING_STATUS:
        raise DecisionConflict(_not_waiting(claims.release_id, record))
    approver = link_approver(form.email)
    # Before claiming: an author turned away must not use up the link for a colleague.
    check_four_eyes(
        four_eyes=bool(record.get("four_eyes", False)),
        author=record.get("author"),
        approver=approver,
        decision=claims.decision,
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


def _not_waiting(release_id: str, record: Mapping[str, Any]) -> str:
    status = record.get("status", "unknown")
    approval = record.get("approval") or {}
    who = f" by {approval['approver']}" if approval.get("approver") and status in ("Approved", "Rejected") else ""
    return f"release {release_id} no longer waits for a decision: it is {status}{who}"
