"""The boto3 clients every function uses (modelgate.adapters.clients)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from modelgate.adapters import clients


def test_s3_presigned_urls_are_signature_version_4(aws_env):
    # Given the functions' S3 client (the approval page presigns the report link with it)
    clients.reset_clients()
    try:
        url = clients.client("s3").generate_presigned_url(
            "get_object", Params={"Bucket": "artefacts", "Key": "reports/r/evaluation.html"}, ExpiresIn=900
        )
    finally:
        clients.reset_clients()
    # Then it is SigV4 (what a bucket created after June 2020 accepts), not SigV2
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["900"]
    assert "AWSAccessKeyId" not in query and "Signature" not in query


def test_clients_keep_the_standard_retry_mode(aws_env):
    clients.reset_clients()
    try:
        for service in ("s3", "lambda", "stepfunctions"):
            config = clients.client(service).meta.config
            assert config.retries["mode"] == "standard", service
            assert config.retries.get("total_max_attempts", config.retries.get("max_attempts")) >= 5, service
    finally:
        clients.reset_clients()


LAMBDA_MAX_TIMEOUT_SECONDS = 900  # Lambda's longest function timeout (Lambda quotas)


def test_calls_that_wait_for_generation_outlast_the_longest_invocation(aws_env):
    # Given the clients that wait on a model: Invoke of a service function, Bedrock Converse
    clients.reset_clients()
    try:
        lambda_timeout = clients.client("lambda").meta.config.read_timeout
        bedrock_timeout = clients.client("bedrock-runtime").meta.config.read_timeout
        other_timeout = clients.client("stepfunctions").meta.config.read_timeout
    finally:
        clients.reset_clients()
    # Then neither gives up (and retries, generating twice) while a function may still run,
    # whatever timeout a service function has; other calls keep a short read timeout
    assert lambda_timeout > LAMBDA_MAX_TIMEOUT_SECONDS
    assert bedrock_timeout > LAMBDA_MAX_TIMEOUT_SECONDS
    assert other_timeout == 60
