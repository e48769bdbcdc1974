"""Who is who: author and approver identities compared, and the four-eyes rule.

An approver reaches a release through a signed link (``link:<email>``, self-declared) or
through IAM (an ARN); the commit's author is a git author string. :func:`parse_identity`
brings each to an email and/or a name, :func:`same_person` compares two, and
:func:`check_four_eyes` refuses an approval by the commit's author when the release's
policy asks for four eyes (rejecting is always allowed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelgate.errors import ModelgateError


class FourEyesViolation(ModelgateError):
    """The release's policy asks for four eyes and the approver is the commit's author."""


_ARN = re.compile(r"^arn:[^:]+:(iam|sts)::\d*:(.+)$")
_NAME_EMAIL = re.compile(r"<([^<>]+)>\s*$")
_GITHUB_NOREPLY = re.compile(r"^(?:\d+\+)?([^@]+)@users\.noreply\.github\.com$")


@dataclass(frozen=True)
class Identity:
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


def same_person(a: str, b: str) -> bool:
    """Do two identity strings name the same person?

    Two emails compare whole (``alice@a.com`` is not ``alice@b.com``); when either side
    has no email (an IAM user or session name, a GitHub user name), names compare with
    the other side's email local part. Deliberately simple and strict in one direction:
    a false "same" only blocks an approval (the approver can ask a colleague), a false
    "different" would let an author approve their own change.
    """
    x, y = parse_identity(a), parse_identity(b)
    if not x.name or not y.name:
        return False
    if x.email and y.email:
        return x.email == y.email
    return x.name == y.name


def check_four_eyes(*, four_eyes: bool, author: str | None, approver: str, decision: str) -> None:
    """Raise FourEyesViolation when the policy asks for four eyes and the author approves.

    Rejecting is always allowed (anyone may stop a release, its author included). With no
    author on record four eyes can't be checked, so an approval is refused: leaving the
    author out of a manifest must not be a way around the policy.
    """
    if not four_eyes or decision != "approve":
        return
    if not author or not author.strip():
        raise FourEyesViolation(
            "this service's policy asks for four eyes, but the release names no commit author: "
            "it can't be approved (reject it, or release again with source.author set)"
        )
    if same_person(author, approver):
        raise FourEyesViolation(
            f"this service's policy asks for four eyes: {approver} is the commit's author "
            "and can't approve it (rejecting is allowed); ask another approver"
        )
