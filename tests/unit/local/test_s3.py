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


# ------------------------------------------------------------------ Signature Version 2
def _presigned(s3: Any, bucket: str, key: str) -> str:
    return str(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300))


def _v2_and_v4_clients(**kwargs: Any) -> tuple[Any, Any]:
    import boto3
    from botocore.config import Config

    return (
        boto3.client("s3", region_name="us-east-1", config=Config(signature_version="s3"), **kwargs),
        boto3.client("s3", region_name="us-east-1", config=Config(signature_version="s3v4"), **kwargs),
    )


def test_a_sigv2_presigned_get_is_refused_as_a_new_bucket_refuses_it(local_aws: LocalAWS) -> None:
    import requests

    bucket = local_aws.stack.physical_id("Bucket")
    local_aws.client("s3").put_object(Bucket=bucket, Key="reports/r.html", Body=b"<p>report</p>")
    v2, v4 = _v2_and_v4_clients()
    url = _presigned(v2, bucket, "reports/r.html")
    assert "AWSAccessKeyId=" in url and "Signature=" in url and "Expires=" in url
    # When a browser opens the SigV2 link (moto's in-process mock answers the request)
    refused = requests.get(url, timeout=10)
    # Then S3's answer for a signature version the bucket doesn't support
    assert refused.status_code == 400
    assert "<Code>InvalidRequest</Code>" in refused.text
    assert "<Message>The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.</Message>" in refused.text
    # And the same object through a SigV4 link is served
    served = requests.get(_presigned(v4, bucket, "reports/r.html"), timeout=10)
    assert (served.status_code, served.content) == (200, b"<p>report</p>")


def test_a_sigv2_signed_api_call_is_refused_too(local_aws: LocalAWS) -> None:
    from botocore.exceptions import ClientError

    bucket = local_aws.stack.physical_id("Bucket")
    v2, _ = _v2_and_v4_clients()
    with pytest.raises(ClientError) as exc:
        v2.list_objects_v2(Bucket=bucket)
    assert exc.value.response["Error"]["Code"] == "InvalidRequest"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_an_s3_error_is_answered_after_s3_calls_made_before_it(local_aws: LocalAWS) -> None:
    """moto finds an S3 error's action in URI regexes it builds once per process from a new
    client's service model; botocore rewrites S3 request URIs in its model on a client's first
    call, so that model must be the new client's own (runtime._shared_model_loader)."""
    from botocore.exceptions import ClientError
    from moto.core import responses

    bucket = local_aws.stack.physical_id("Bucket")
    # Given S3 calls made (botocore strips "/{Bucket}" from these operations' request URIs)
    local_aws.client("s3").list_objects_v2(Bucket=bucket)
    # and a process whose first S3 error comes only now
    responses._get_method_urls.cache_clear()
    v2, _ = _v2_and_v4_clients()
    # When S3 answers with an error, it is S3's error (not a regex that fails to compile)
    with pytest.raises(ClientError) as exc:
        v2.list_objects_v2(Bucket=bucket)
    assert exc.value.response["Error"]["Code"] == "InvalidRequest"


@pytest.mark.enable_socket
def test_sigv2_is_refused_through_the_http_server_of_modelgate_local_up(local_aws: LocalAWS) -> None:
    """`modelgate local up` serves the embedded AWS through moto's HTTP server (same backends,
    same patches): what a browser on the approval page would reach."""
    import socket
    import urllib.error
    import urllib.request

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        bucket = local_aws.stack.physical_id("Bucket")
        local_aws.client("s3").put_object(Bucket=bucket, Key="reports/served.html", Body=b"ok")
        v2, v4 = _v2_and_v4_clients(endpoint_url=f"http://127.0.0.1:{port}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(_presigned(v2, bucket, "reports/served.html"), timeout=10)
        assert refused.value.code == 400
        assert b"<Code>InvalidRequest</Code>" in refused.value.read()
        with urllib.request.urlopen(_presigned(v4, bucket, "reports/served.html"), timeout=10) as served:
            assert served.read() == b"ok"
    finally:
        server.stop()
