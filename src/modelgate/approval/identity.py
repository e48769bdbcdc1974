"""Who is who: author and approver identities compared, and the four-eyes rule.

Where each identity comes from (none of them is a field of the manifest a developer writes):

- **Approver, by link**: ``link:<email>``, the named approver (policy ``approvers``) the
  signed link is bound to; each approver is mailed their own link, so the signature, not a
  typed name, says who approves (``modelgate.approval.links``).
- **Approver, through IAM** (``modelgate approve``): the caller's ARN from STS
  ``GetCallerIdentity``, which AWS authenticates (an IAM user, or an assumed-role / SSO
  session whose session name is the person).
- **Author**: who uploaded the release, as the uploader states it in the manifest object's
  metadata (:data:`AUTHOR_METADATA`): the CI actor the CI system authenticated
  (``GITHUB_ACTOR`` on GitHub Actions) or, when a person uploads by hand, their own caller
  ARN. Only the CI principal may write under ``releases/`` (IAM, ``CiPolicyArn``), so this is
  as trustworthy as CI itself, unlike ``source.author`` in model-config.json, which anyone
  editing the folder writes and which four eyes ignores. S3's own event can't say it:
  ``requester`` in the EventBridge "Object Created" event is only the "AWS account ID or
  AWS service principal of requester" ("EventBridge event message structure",
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html).

:func:`parse_identity` brings each to an email and/or a name, :func:`same_person` compares
two, and :func:`check_four_eyes` refuses an approval by the author when the release's
policy asks for four eyes (rejecting is always allowed).

**One person, two names.** The author is usually a GitHub login (``alice-dev``), an approver
an email (``alice@example.com``) or an IAM session. The policy's ``identities`` map says which
email another name belongs to (``{"alice-dev": "alice@example.com"}``); :func:`resolve` applies
it before anything is compared. Names compare case-insensitively and without surrounding
whitespace (GitHub logins and email addresses are case-insensitive in practice; IAM names
are ASCII). Under four eyes an approval needs both sides resolved to an email (an email
itself, or a name the map holds): a bare name we can't place is refused with that reason,
not guessed at, since a wrong "different person" would let an author approve their own
release. Look-alike characters (homoglyphs such as a Cyrillic "а") are out of scope: author
metadata and policy emails are ASCII-only (:data:`_AUTHOR`, ``policy.APPROVER_EMAIL``), so
they can't be written at all, but ASCII confusables (``rn`` / ``m``) are not detected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from modelgate.errors import ModelgateError


class FourEyesViolation(ModelgateError):
    """The release's policy asks for four eyes and the approver is the release's author."""


class AuthorInvalid(ModelgateError):
    """The upload's author metadata is missing where required, or not an identity we can compare."""


# S3 user metadata (x-amz-meta-<name>) on the manifest object, written by `modelgate submit`.
AUTHOR_METADATA = "modelgate-author"
AUTHOR_SOURCE_METADATA = "modelgate-author-source"
AUTHOR_SOURCES = ("ci", "uploader")
# An identity as CI systems and IAM spell them: ASCII letters, digits and IAM's name
# punctuation, no spaces or control characters (nothing that can forge a line of a mail).
_AUTHOR = re.compile(r"^[A-Za-z0-9@._:/+=,-]{1,256}$")


def verified_author(metadata: Mapping[str, str] | None) -> tuple[str | None, str | None]:
    """(author, source) from the manifest object's user metadata; (None, None) when it has none.

    AuthorInvalid when the metadata is there but malformed (it is never cleaned up into
    something else: a wrong name must not pass for a right one).
    """
    meta = {str(k).lower(): str(v) for k, v in (metadata or {}).items()}
    author = meta.get(AUTHOR_METADATA)
    if author is None:
        return None, None
    if not _AUTHOR.match(author):
        raise AuthorInvalid(
            f"the upload's {AUTHOR_METADATA} metadata ({len(author)} characters) is not an identity: "
            "1-256 ASCII letters, digits or @._:/+=,-"
        )
    source = meta.get(AUTHOR_SOURCE_METADATA, "uploader")
    if source not in AUTHOR_SOURCES:
        raise AuthorInvalid(f"the upload's {AUTHOR_SOURCE_METADATA} metadata must be one of {AUTHOR_SOURCES}")
    return author, source


_ARN = re.compile(r"^arn:[^:]+:(iam|sts)::\d*:(.+)$")
_NAME_EMAIL = re.compile(r"<([^<>]+)>\s*$")
_GITHUB_NOREPLY = re.compile(r"^(?:\d+\+)?([^@]+)@users\.noreply\.github\.com$")


class Identity(NamedTuple):
    """One person as we can compare them: an email (lower-case, no +tag) and/or a name."""

    email: str | None
    name: str  # the email's local part, an IAM user / session name, or the bare string


def parse_identity(raw: str) -> Identity:
    """Normalise an author or approver string.

    - ``link:alice@example.com`` (a link approver), ``Alice <alice@example.com>`` (a git
      author), ``alice@example.com``: the email, lower-case, ``+tag`` removed.
    - GitHub's ``123+alice@users.noreply.github.com``: the user name ``alice`` (no email).
    - IAM ARNs: ``...:user/path/alice`` → ``alice``; ``...:assumed-role/Role/session`` → the
      session name (SSO sessions are usually the person's email); ``federated-user/x`` → x.
    - anything else: the string itself, lower-case.
    """
    text = raw.strip()
    for prefix in ("link:", "iam:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):].strip()
    if (m := _ARN.match(text)) is not None:
        resource = m.group(2)
        kind, _, rest = resource.partition("/")
        text = rest.rsplit("/", 1)[-1] if kind in ("user", "assumed-role", "federated-user") and rest else kind
    elif (m := _NAME_EMAIL.search(text)) is not None:
        text = m.group(1)
    text = text.strip().lower()
    if (m := _GITHUB_NOREPLY.match(text)) is not None:
        return Identity(email=None, name=m.group(1))
    if "@" in text:
        local, _, domain = text.rpartition("@")
        local = local.split("+", 1)[0]
        return Identity(email=f"{local}@{domain}", name=local)
    return Identity(email=None, name=text)


Identities = Mapping[str, str]  # another name of a person (lower case) -> their email (policy `identities`)


def resolve(raw: str, identities: Identities | None = None) -> Identity:
    """:func:`parse_identity`, then a name without an email looked up in ``identities``
    (the policy's map, keys lower case): ``alice-dev`` → ``alice@example.com``."""
    found = parse_identity(raw)
    if found.email is None and identities:
        email = identities.get(found.name)
        if email:
            return parse_identity(email)
    return found


def same_person(a: str, b: str, identities: Identities | None = None) -> bool:
    """Do two identity strings name the same person?

    Each is first resolved through ``identities`` (:func:`resolve`). Two emails compare
    whole (``alice@a.com`` is not ``alice@b.com``); when either side still has no email (an
    IAM user or session name, a GitHub user name the map doesn't hold), names compare with
    the other side's email local part. Deliberately simple and strict in one direction:
    a false "same" only blocks an approval (the approver can ask a colleague), a false
    "different" would let an author approve their own change (which is why
    :func:`check_four_eyes` refuses a name it can't resolve).
    """
    x, y = resolve(a, identities), resolve(b, identities)
    if not x.name or not y.name:
        return False
    if x.email and y.email:
        return x.email == y.email
    return x.name == y.name


def check_four_eyes(
    *, four_eyes: bool, author: str | None, approver: str, decision: str, identities: Identities | None = None
) -> None:
    """Raise FourEyesViolation when the policy asks for four eyes and the author approves.

    ``author`` is the verified uploader the validate step recorded (see the module doc).
    Rejecting is always allowed (anyone may stop a release, its author included). With no
    author on record four eyes can't be checked, so an approval is refused: an upload
    without its author must not be a way around the policy. Likewise an author or an
    approver that is neither an email nor a name the policy's ``identities`` maps to one:
    comparing a bare GitHub login with an email would be a guess.
    """
    if not four_eyes or decision != "approve":
        return
    if not author or not author.strip():
        raise FourEyesViolation(
            "this service's policy asks for four eyes, but the release has no verified author: "
            "it can't be approved (reject it, and release again with `modelgate submit`)"
        )
    for role, raw in (("author", author), ("approver", approver)):
        if resolve(raw, identities).email is None:
            name = parse_identity(raw).name[:80]
            raise FourEyesViolation(
                f"this service's policy asks for four eyes, but the release's {role} {name!r} is not an email and "
                f"the policy's identities don't map it to one, so four eyes can't tell whether the approver is the "
                f"author: add it to the policy (\"identities\": {{\"{name}\": \"<their email>\"}}); "
                "nothing was decided"
            )
    if same_person(author, approver, identities):
        raise FourEyesViolation(
            f"this service's policy asks for four eyes: {approver} is the release's author "
            "and can't approve it (rejecting is allowed); ask another approver"
        )
