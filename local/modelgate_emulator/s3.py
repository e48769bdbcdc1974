"""S3 bucket policies for the embedded AWS.

moto 5.2.1 (``FakeBucket.get_permission`` in ``moto/s3/models.py``) evaluates bucket
policies with every ``Condition`` operator but ``StringEquals`` counted as satisfied, and
a statement whose condition is *not* met counts as a Deny. So the template's
``DenyInsecureTransport`` statement (``Bool aws:SecureTransport false``) denies every
object operation locally. :func:`bucket_policy_conditions` evaluates
``Bool``/``String(Not)Equals`` conditions against the local request context (TLS: boto3
talks https) and leaves out statements whose conditions it can't evaluate, logging each.
Test: tests/unit/local/test_s3.py.
"""

from __future__ import annotations

import contextlib
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
