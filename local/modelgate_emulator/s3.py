"""S3 bucket policies for the embedded AWS.

moto 5.2.1 (``FakeBucket.get_permission`` in ``moto/s3/models.py``) evaluates bucket
policies with every ``Condition`` operator but ``StringEquals`` counted as satisfied, and
a statement whose condition is *not* met counts as a Deny. So the template's
``DenyInsecureTransport`` statement (``Bool aws:SecureTransport false``) denies every
object operation locally. :func:`bucket_policy_conditions` evaluates
``Bool``/``String(Not)Equals`` conditions against the local request context (TLS: boto3
talks https) and leaves out statements whose conditions it can't evaluate, logging each.

:func:`signature_v2_refused` makes every bucket refuse Signature Version 2 - a presigned
URL (``?AWSAccessKeyId=...&Signature=...&Expires=...``) or an ``Authorization: AWS
AKID:signature`` header - as S3 refuses it on buckets created after June 24, 2020 (every
bucket of the embedded AWS is new): HTTP 400, ``InvalidRequest`` "The authorization
mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256." Sources: "AWS
Signature Version 2 turned off (deprecated) for Amazon S3"
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingAWSSDK.html#UsingAWSSDK-sig2-deprecation),
the S3 API reference's "Appendix: Authenticating requests (AWS signature version 2)"
(https://docs.aws.amazon.com/AmazonS3/latest/API/Appendix-Sigv2.html: "Amazon S3 will only
accept API requests that are signed using Signature Version 4"), and AWS's announcement of
the revised plan (https://repost.aws/questions/QU5OKPZ-HnS1SHXX6dUbGi2w: "Any new buckets
created after June 24, 2020 will not support SigV2 signed requests"). The error code and
message are S3's answer to a SigV2 request where SigV2 is not supported.
moto 5.2.1 accepts any signature. It applies in process and through moto's HTTP server
(``modelgate local up``): both dispatch through ``S3Response``.
Test: tests/unit/local/test_s3.py.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any
from unittest import mock

LOG = logging.getLogger(__name__)

# The request context every local S3 request has (boto3 uses https endpoints).
LOCAL_REQUEST_CONTEXT = {"aws:securetransport": "true"}


def condition_holds(condition: Mapping[str, Any]) -> bool | None:
    """True/False for a statement's Condition block, None if it can't be evaluated."""
    for operator, entries in condition.items():
        for key, expected in entries.items():
            values = [str(v) for v in (expected if isinstance(expected, list) else [expected])]
            actual = LOCAL_REQUEST_CONTEXT.get(str(key).lower())
            if operator == "Bool":
                holds = actual is not None and actual.lower() in [v.lower() for v in values]
            elif operator == "StringEquals":
                holds = actual is not None and actual in values
            elif operator == "StringNotEquals":
                holds = actual is None or actual not in values
            else:
                return None
            if not holds:
                return False
    return True


@contextlib.contextmanager
def bucket_policy_conditions() -> Iterator[None]:
    """While active, bucket policies are evaluated with their conditions as described above."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(bucket: Any, action: str, resource: str) -> Any:
        if bucket.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(bucket.policy.decode())
        statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
        applicable = []
        for statement in statements:
            condition = statement.get("Condition")
            holds = True if not condition else condition_holds(condition)
            if holds is None:
                LOG.warning(
                    "bucket %s: policy statement %s has a condition not evaluated locally; ignored",
                    bucket.name,
                    statement.get("Sid", "?"),
                )
            elif holds:
                applicable.append({k: v for k, v in statement.items() if k != "Condition"})
        if not applicable:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({"Version": "2012-10-17", "Statement": applicable})).is_action_permitted(
            action, resource
        )

    with mock.patch.object(FakeBucket, "get_permission", get_permission):
        yield


SIGV2_MESSAGE = "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."


def uses_signature_v2(query: Mapping[str, Any], authorization: str | None) -> bool:
    """Whether a request is signed with Signature Version 2 (query string or header)."""
    if "Signature" in query and "AWSAccessKeyId" in query:
        return True
    return bool(authorization) and str(authorization).startswith("AWS ") and ":" in str(authorization)


@contextlib.contextmanager
def signature_v2_refused() -> Iterator[None]:
    """While active, S3 refuses SigV2-signed requests as described in the module docstring."""
    from urllib.parse import parse_qs, urlparse

    from moto.s3.exceptions import S3ClientError
    from moto.s3.responses import S3Response

    class SignatureVersion2Refused(S3ClientError):
        code = "InvalidRequest"
        status_code = 400

        def __init__(self) -> None:
            super().__init__("InvalidRequest", SIGV2_MESSAGE)

    def refusing(original: Any) -> Any:
        @functools.wraps(original)
        def checked(response: Any, request: Any, full_url: str) -> Any:
            query = parse_qs(urlparse(full_url).query, keep_blank_values=True)
            if uses_signature_v2(query, request.headers.get("Authorization")):
                raise SignatureVersion2Refused()
            return original(response, request, full_url)

        return checked

    with (
        mock.patch.object(S3Response, "_key_response", refusing(S3Response._key_response)),
        mock.patch.object(S3Response, "_bucket_response", refusing(S3Response._bucket_response)),
    ):
        yield
