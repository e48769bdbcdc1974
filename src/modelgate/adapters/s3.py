"""Adapter over S3 reads and writes of the artefact bucket (pinned versions, named errors)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from modelgate.errors import error_code

MISSING_CODES = frozenset({"NoSuchKey", "404"})


# What a step reads into memory from the artefact bucket, at most (HeadObject first, like the
# manifest's own cap, modelgate.manifest.MAX_MANIFEST_BYTES). A dataset is what an operator
# uploads; 32 MiB of JSONL is tens of thousands of cases, which PlanEvaluation (1024 MB) parses
# with room to spare. Shard results and the evaluation report are the pipeline's own writes,
# one result per case with both sides' outputs: 64 MiB each.
MAX_DATASET_BYTES = 32 * 1024 * 1024
MAX_RESULTS_BYTES = 64 * 1024 * 1024
# The monitoring data, also the stack's own writes. A capture batch is one PutObject of the
# inference function's buffer (capture.py): ``batch_records`` records (default 50) whose texts
# are cut to ``max_field_chars`` (default 2,000), a few hundred KB at the defaults; 16 MiB
# leaves room for a policy that raises both. A baseline.json is a drift profile: at most
# SAMPLE_CAP (5,000) values per numeric feature, category counts and a centroid, under 1 MiB in
# practice: 8 MiB.
MAX_CAPTURE_BATCH_BYTES = 16 * 1024 * 1024
MAX_BASELINE_BYTES = 8 * 1024 * 1024


def _where(bucket: str, key: str, version: str | None) -> str:
    return f"s3://{bucket}/{key}{f' version {version}' if version and version != 'null' else ''}"


def read_current(
    s3: Any, bucket: str, key: str, version: str | None = None, *, error: type[Exception], what: str, max_bytes: int
) -> tuple[bytes, str]:
    """The object's bytes (``version``, else the current one) and the version id that pins
    them ("null" in an unversioned bucket); a failure is ``error`` saying which object and why.

    Its size is checked before a byte of it is read: HeadObject's ``ContentLength`` ("HeadObject",
    Amazon S3 API Reference, https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html),
    and an object above ``max_bytes`` is ``error`` naming its size and the cap. The GetObject that
    follows reads at most ``max_bytes`` + 1 bytes, so a newer, bigger upload landing between the
    two calls (when no version was asked for: the current object is read without
    ``s3:GetObjectVersion``) is refused all the same; the version returned is the one read."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
        size, pinned = int(head["ContentLength"]), head.get("VersionId") or "null"
        if size > max_bytes:
            raise error(
                f"{what} ({_where(bucket, key, pinned)}) is {size:,} bytes; at most {max_bytes:,} are read: "
                "nothing of it was read"
            )
        obj = s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
        data, pinned = obj["Body"].read(max_bytes + 1), obj.get("VersionId") or "null"
    except ClientError as exc:
        # a HEAD response has no body, so S3's "NoSuchKey" arrives as the bare status "404"
        code = "NoSuchKey" if error_code(exc) == "404" else error_code(exc)
        raise error(f"{what} ({_where(bucket, key, version)}) can't be read: {code}") from exc
    if len(data) > max_bytes:  # a newer upload after HeadObject (a pinned version never grows)
        raise error(
            f"{what} ({_where(bucket, key, pinned)}) is over {max_bytes:,} bytes (replaced while it was read); "
            f"at most {max_bytes:,} are read"
        )
    return data, pinned


def read_object(
    s3: Any, bucket: str, key: str, version: str | None, *, error: type[Exception], what: str, max_bytes: int
) -> bytes:
    """Read one (pinned) object of at most ``max_bytes``; a failure is ``error`` saying which object and why."""
    return read_current(s3, bucket, key, version, error=error, what=what, max_bytes=max_bytes)[0]


def object_metadata(
    s3: Any, bucket: str, key: str, version: str | None, *, error: type[Exception], what: str
) -> dict[str, str]:
    """The user metadata (``x-amz-meta-*``, names lower-case, prefix removed) of one (pinned) object."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
    except ClientError as exc:
        raise error(
            f"{what} (s3://{bucket}/{key}{f' version {version}' if version else ''}) can't be read: {error_code(exc)}"
        ) from exc
    return {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}


def object_size(s3: Any, bucket: str, key: str, version: str | None = None) -> tuple[int, str] | None:
    """HeadObject: the object's size in bytes (``ContentLength``) and the version id that
    pins it, read before any of its bytes ("HeadObject", Amazon S3 API Reference,
    docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html); None when it does not exist."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
    except ClientError as exc:
        if error_code(exc) in MISSING_CODES:
            return None
        raise
    return int(head["ContentLength"]), head.get("VersionId") or "null"


def read_sized(s3: Any, bucket: str, key: str, version: str, size: int) -> bytes:
    """GetObject of one pinned version whose size HeadObject gave: at most ``size`` bytes
    are read into memory (a version never changes, so this is only the belt to the braces)."""
    obj = s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version} if version != "null" else {}))
    return obj["Body"].read(size + 1)


def put_json(s3: Any, bucket: str, key: str, body: Any) -> str | None:
    """Write a JSON document; its new version id."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    put = s3.put_object(
        Bucket=bucket, Key=key, Body=data.encode() if isinstance(data, str) else data, ContentType="application/json"
    )
    return put.get("VersionId")


def put_html(s3: Any, bucket: str, key: str, html: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=html.encode(), ContentType="text/html; charset=utf-8")
