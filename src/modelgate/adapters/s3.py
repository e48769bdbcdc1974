"""Adapter over S3 reads and writes of the artefact bucket (pinned versions, named errors)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from modelgate.errors import error_code

MISSING_CODES = frozenset({"NoSuchKey", "404"})


def _get(s3: Any, bucket: str, key: str, version: str | None) -> tuple[bytes, str]:
    obj = s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
    return obj["Body"].read(), obj.get("VersionId") or "null"


def read_current(
    s3: Any, bucket: str, key: str, version: str | None = None, *, error: type[Exception], what: str
) -> tuple[bytes, str]:
    """The object's bytes (``version``, else the current one) and the version id that pins
    them ("null" in an unversioned bucket); a failure is ``error`` saying which object and why."""
    try:
        return _get(s3, bucket, key, version)
    except ClientError as exc:
        raise error(
            f"{what} (s3://{bucket}/{key}{f' version {version}' if version else ''}) can't be read: {error_code(exc)}"
        ) from exc


def read_object(
    s3: Any, bucket: str, key: str, version: str | None, *, error: type[Exception], what: str
) -> bytes:
    """Read one (pinned) object; a failure is ``error`` saying which object and why."""
    return read_current(s3, bucket, key, version, error=error, what=what)[0]


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
