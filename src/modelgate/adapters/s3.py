"""Adapter over S3 reads and writes of the artefact bucket (pinned versions, named errors)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from modelgate.errors import error_code


def read_object(
    s3: Any, bucket: str, key: str, version: str | None, *, error: type[Exception], what: str
) -> bytes:
    """Read one (pinned) object; a failure is ``error`` saying which object and why."""
    try:
        return s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))["Body"].read()
    except ClientError as exc:
        raise error(
            f"{what} (s3://{bucket}/{key}{f' version {version}' if version else ''}) can't be read: {error_code(exc)}"
        ) from exc


MISSING_CODES = frozenset({"NoSuchKey", "404"})


def read_current(s3: Any, bucket: str, key: str, *, error: type[Exception], what: str) -> tuple[bytes, str]:
    """The object's current bytes and the version id that pins them ("null" in an
    unversioned bucket); a failure is ``error`` saying which object and why."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        raise error(f"{what} (s3://{bucket}/{key}) can't be read: {error_code(exc)}") from exc
    return obj["Body"].read(), obj.get("VersionId") or "null"


def read_if_present(s3: Any, bucket: str, key: str) -> tuple[bytes, str] | None:
    """Like ``read_current``, but None when the object does not exist (other errors raise)."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in MISSING_CODES:
            return None
        raise
    return obj["Body"].read(), obj.get("VersionId") or "null"


def put_json(s3: Any, bucket: str, key: str, body: Any) -> str | None:
    """Write a JSON document; its new version id."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    put = s3.put_object(
        Bucket=bucket, Key=key, Body=data.encode() if isinstance(data, str) else data, ContentType="application/json"
    )
    return put.get("VersionId")


def put_html(s3: Any, bucket: str, key: str, html: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=html.encode(), ContentType="text/html; charset=utf-8")
