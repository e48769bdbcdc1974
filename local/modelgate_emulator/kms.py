"""KMS Sign as AWS runs it: ``MessageType=DIGEST`` and the 4096-byte limit on a raw message.

moto 5.2.1 (``KmsResponse.sign`` in ``moto/kms/responses.py``) reads ``MessageType`` and
ignores it: a digest is hashed again before it is signed, so the signature does not verify
against the digest with the key's real public key (its ``Verify`` is documented there as
not implementing DIGEST either). It also signs a raw message of any size.

AWS documents ("Sign", AWS KMS API Reference,
https://docs.aws.amazon.com/kms/latest/APIReference/API_Sign.html): "Messages can be 0-4096
bytes. To sign a larger message, provide a message digest"; "If you provide a message
digest, use the DIGEST value of MessageType to prevent the digest from being hashed again
while signing"; with DIGEST "the length of the Message value must match the length of
hashed messages for the specified signing algorithm" (32 bytes for the *_SHA_256 ones).
:func:`digest_signing` restores that: a DIGEST message of the right length is signed as a
prehashed digest (ECDSA over it as is), a wrong length or a raw message over 4096 bytes is
refused with ``ValidationException``. moto's signatures are real (``cryptography`` keys
behind every asymmetric key; ``GetPublicKey`` returns the DER SubjectPublicKeyInfo), so
nothing else needs changing. Test: tests/unit/local/test_kms.py.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

MAX_RAW_MESSAGE_BYTES = 4096
_DIGEST_BYTES = {"SHA_256": 32, "SHA_384": 48, "SHA_512": 64}


def _digest_length(algorithm: str) -> int | None:
    return next((n for suffix, n in _DIGEST_BYTES.items() if algorithm.endswith(suffix)), None)


@contextlib.contextmanager
def digest_signing() -> Iterator[None]:
    """While active, KMS Sign honours MessageType DIGEST and the raw message limit."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from moto.kms.exceptions import ValidationException
    from moto.kms.responses import KmsResponse
    from moto.kms.utils import ECDSAPrivateKey

    original = KmsResponse.sign
    hash_of = {"ECDSA_SHA_256": hashes.SHA256(), "ECDSA_SHA_384": hashes.SHA384(), "ECDSA_SHA_512": hashes.SHA512()}

    @functools.wraps(original)
    def sign(self: Any) -> str:
        message_type = self._get_param("MessageType") or "RAW"
        message = self._get_param("Message")
        if isinstance(message, str):
            message = message.encode()
        algorithm = str(self._get_param("SigningAlgorithm") or "")
        if message_type == "RAW":
            if message is not None and len(message) > MAX_RAW_MESSAGE_BYTES:
                raise ValidationException(
                    f"1 validation error detected: Value at 'Message' failed to satisfy constraint: "
                    f"Member must have length less than or equal to {MAX_RAW_MESSAGE_BYTES}"
                )
            return original(self)
        if message_type != "DIGEST":
            raise ValidationException(f"MessageType {message_type!r} is not supported by the embedded KMS")
        expected = _digest_length(algorithm)
        if expected is None or message is None or len(message) != expected:
            raise ValidationException(
                f"Digest is invalid length for algorithm {algorithm}: {len(message or b'')} bytes, "
                f"{expected} expected"
            )
        key = self.kms_backend.describe_key(self._get_param("KeyId"))
        if key.key_usage != "SIGN_VERIFY":
            raise ValidationException(f"key {key.arn} has KeyUsage {key.key_usage}, not SIGN_VERIFY: it can't sign")
        private = getattr(key, "private_key", None)
        if not isinstance(private, ECDSAPrivateKey) or algorithm not in hash_of:
            raise ValidationException(
                f"the embedded KMS signs digests with ECC keys only; key {key.id} is {key.key_spec}"
            )
        if algorithm not in key.signing_algorithms:
            raise ValidationException(
                f"1 validation error detected: Value '{algorithm}' at 'SigningAlgorithm' failed to satisfy "
                f"constraint: Member must satisfy enum value set: {key.signing_algorithms}"
            )
        signature = private.private_key.sign(message, ec.ECDSA(Prehashed(hash_of[algorithm])))
        return json.dumps(
            {"KeyId": key.arn, "Signature": base64.b64encode(signature).decode(), "SigningAlgorithm": algorithm}
        )

    with mock.patch.object(KmsResponse, "sign", sign):
        yield
