"""boto3 clients, built lazily and once (never at import time, so tests need not dodge them).

Standard retry mode with more attempts: throttling and transient faults are retried by
botocore with backoff, so handlers don't hand-roll retry loops.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)
# S3 presigned URLs (the approval page's report link) must be Signature Version 4: botocore
# still presigns with SigV2 by default in us-east-1, and S3 refuses SigV2 on buckets created
# after 24 June 2020 ("Amazon S3 will no longer support SigV2 for new buckets", S3 User
# Guide, "Authenticating requests (AWS Signature Version 4)").
# Calls that wait for generation get a read timeout above the longest call they can make, so
# botocore never abandons (and retries: a second generation, paid twice) a call still running:
# - lambda: a synchronous Invoke of a service function lasts up to its timeout, at most
#   Lambda's 900 s ("set the SDK's read timeout longer than the function's timeout", AWS
#   re:Post Knowledge Center, lambda-function-retry-timeout-sdk);
# - bedrock-runtime: Converse returns when the whole completion is generated; large models
#   "can take more than sixty seconds" (botocore's default read timeout), AWS re:Post
#   Knowledge Center, bedrock-large-model-read-timeouts.
# The calling function's own timeout still bounds the wait.
LONG_CALL_READ_TIMEOUT_SECONDS = 910
_PER_SERVICE = {
    "s3": _CONFIG.merge(Config(signature_version="s3v4")),
    "lambda": _CONFIG.merge(Config(read_timeout=LONG_CALL_READ_TIMEOUT_SECONDS)),
    "bedrock-runtime": _CONFIG.merge(Config(read_timeout=LONG_CALL_READ_TIMEOUT_SECONDS)),
}


@lru_cache(maxsize=32)
def client(service: str) -> Any:
    return boto3.client(service, config=_PER_SERVICE.get(service, _CONFIG))


def reset_clients() -> None:
    """Forget cached clients and tables (the local runtime calls this when it starts or stops)."""
    client.cache_clear()
    table.cache_clear()


@lru_cache(maxsize=8)
def table(name: str) -> Any:
    """A DynamoDB resource Table (floats in as Decimals: see ledger.to_dynamo)."""
    return boto3.resource("dynamodb", config=_CONFIG).Table(name)
