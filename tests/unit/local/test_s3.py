"""S3 bucket policies on the embedded AWS: conditions evaluated, not counted as met (modelgate_emulator.s3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from modelgate_emulator import LocalAWS
from modelgate_emulator.s3 import condition_holds


def test_a_secure_transport_bucket_policy_allows_local_requests(fixture_template: Path) -> None:
    # moto counts the DenyInsecureTransport condition as met; the local runtime doesn't
    with LocalAWS(fixture_template, stack_name="policy") as local:
        s3 = local.client("s3")
        bucket = local.stack.physical_id("Bucket")
        s3.put_object(Bucket=bucket, Key="k", Body=b"v")
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
        # and a policy that denies unconditionally still denies
        s3.put_bucket_policy(
            Bucket=bucket,
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
                    ],
                }
            ),
        )
        with pytest.raises(Exception, match="403|Forbidden"):
            s3.get_object(Bucket=bucket, Key="k")


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        ({"Bool": {"aws:SecureTransport": "false"}}, False),  # DenyInsecureTransport: not for local requests
        ({"Bool": {"aws:SecureTransport": ["true"]}}, True),
        ({"StringEquals": {"aws:SecureTransport": "true"}}, True),
        ({"StringNotEquals": {"aws:SourceVpce": "vpce-1"}}, True),  # a key the local request lacks
        ({"StringEquals": {"aws:SourceVpce": "vpce-1"}}, False),
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, None),  # can't be evaluated: left out, logged
    ],
)
def test_conditions_are_evaluated_against_the_local_request(condition: dict[str, Any], holds: bool | None) -> None:
    assert condition_holds(condition) is holds
