"""The approval links' signing keys: read from Secrets Manager (cached), rotated, revoked.

Rotating = putting a new secret value: Secrets Manager moves AWSCURRENT to it and
AWSPREVIOUS to the old one, so links mailed before keep working until they expire.
Revoking (a key leaked) = :func:`revoke_signing_keys`: a new value and no AWSPREVIOUS, so
no link signed before verifies any more.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from modelgate.errors import ConfigurationError, error_code

MIN_KEY_BYTES = 32

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


class _Cached(NamedTuple):
    loaded_at: float
    keys: tuple[bytes, ...]


_cache: dict[str, _Cached] = {}
_cache_lock = threading.Lock()


def load_signing_keys(
    secretsmanager: Any,
    secret_id: str,
    *,
    refresh: bool = False,
    fresh: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> list[bytes]:
    """The signing keys, read once per cold start and kept for up to 15 minutes.

    Not a bare ``lru_cache``: after a rotation, a warm verifier must learn the new key
    (it is asked to ``refresh`` when a link doesn't verify), and a warm signer must not
    sign with a key two rotations old. A refresh re-reads at most every 30 s, so garbage
    links can't turn into a stream of Secrets Manager calls. ``fresh`` always re-reads
    (a decision, after its link verified: a revoked key must not live on in a cache).
    """
    now = clock()
    with _cache_lock:
        cached = None if fresh else _cache.get(secret_id)
        fresh_enough = cached is not None and (
            now - cached.loaded_at < (KEY_MIN_REFRESH_SECONDS if refresh else KEY_MAX_AGE_SECONDS)
        )
        if cached is not None and fresh_enough:
            return list(cached.keys)
        keys = tuple(fetch_signing_keys(secretsmanager, secret_id))
        _cache[secret_id] = _Cached(now, keys)
        return list(keys)


def revoke_signing_keys(secretsmanager: Any, secret_id: str, *, new_key: str | None = None) -> str:
    """Revoke every approval link signed so far, at once (a key leaked): the new key's version id.

    Puts a new value in the secret (``PutSecretValue`` moves AWSCURRENT to it and
    AWSPREVIOUS to the value it replaces), then removes the AWSPREVIOUS stage
    (``UpdateSecretVersionStage`` with ``RemoveFromVersionId``), so neither the leaked key
    nor the one before it verifies any more. A version without staging labels is deprecated
    and no longer returned by ``GetSecretValue`` for a stage ("Secrets Manager concepts:
    Version", https://docs.aws.amazon.com/secretsmanager/latest/userguide/whats-in-a-secret.html;
    API_PutSecretValue.html, API_UpdateSecretVersionStage.html). Decisions verify against keys
    read at that moment (:func:`decide_by_link`), so warm approval callbacks refuse old links
    too. Links mailed for releases still waiting die with the key: approvers decide with
    ``modelgate approve|reject`` instead.
    """
    key = new_key if new_key is not None else secrets.token_urlsafe(48)
    if len(key.encode("utf-8")) < MIN_KEY_BYTES:
        raise ConfigurationError(f"a new approval signing key must be at least {MIN_KEY_BYTES} bytes")
    put = secretsmanager.put_secret_value(SecretId=secret_id, SecretString=key)
    stages = secretsmanager.describe_secret(SecretId=secret_id).get("VersionIdsToStages") or {}
    for version_id, labels in stages.items():
        if "AWSPREVIOUS" in labels:
            secretsmanager.update_secret_version_stage(
                SecretId=secret_id, VersionStage="AWSPREVIOUS", RemoveFromVersionId=version_id
            )
    clear_key_cache()
    return str(put["VersionId"])


def clear_key_cache() -> None:
    """Forget cached keys (tests; the local runtime when it starts a new stack)."""
    with _cache_lock:
        _cache.clear()
