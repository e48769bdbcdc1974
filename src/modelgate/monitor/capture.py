"""Data capture: a sampled share of live requests and answers, written to the artefact bucket.

Layout: ``capture/<service>/<version>/<yyyy>/<mm>/<dd>/<hh>/<yyyymmddThhmmssZ>-<id>.jsonl``,
one JSON record per line (the hour is the first record's, UTC), so the drift check lists
only the hours of its window; the bucket's lifecycle rule expires ``capture/`` (template.yaml).

No noticeable latency: a request appends its record to its execution environment's buffer
(no I/O); the request that fills the buffer to ``batch_records`` (or finds its oldest
record ``flush_seconds`` old) writes the whole batch with one PutObject. So at most one
request in ``batch_records`` pays one S3 call (bench figures in the README). Records still
buffered when Lambda retires an idle environment are lost: capture is a sample, and the
drift check never treats missing data as "no drift".

A record: ``ts``, ``service``, ``version``, ``inputs`` (each value cut to
``max_field_chars``; names in ``redact`` replaced by ``"[redacted]"``), ``output`` (cut),
``latency_ms``, ``input_tokens``, ``output_tokens``, ``cost_usd``, ``refusal``,
``schema_valid`` (when the service declares an output schema), ``error`` (the error type of
a failed request, which has no output).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from modelgate.adapters.s3 import MAX_CAPTURE_BATCH_BYTES, read_object
from modelgate.errors import ModelgateError
from modelgate.monitor.policy import CapturePolicy

PREFIX = "capture"
REDACTED = "[redacted]"


class CaptureUnreadable(ModelgateError):
    """A captured batch can't be read: missing, or larger than ``MAX_CAPTURE_BATCH_BYTES``."""


def capture_prefix(service: str, version: str | None = None) -> str:
    return f"{PREFIX}/{service}/" + (f"{version}/" if version else "")


def capture_key(service: str, version: str, when: datetime) -> str:
    when = when.astimezone(UTC)
    return (f"{capture_prefix(service, version)}{when:%Y/%m/%d/%H}/{when:%Y%m%dT%H%M%SZ}-"
            f"{uuid.uuid4().hex[:12]}.jsonl")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]


def build_record(
    policy: CapturePolicy,
    *,
    service: str,
    version: str,
    when: datetime,
    event: Any,
    response: Mapping[str, Any] | None,
    latency_ms: float,
    refusal: bool | None,
    schema_valid: bool | None,
    error: str | None,
) -> dict[str, Any]:
    raw = event.get("inputs") if isinstance(event, Mapping) else None
    inputs = {
        str(k): REDACTED if k in policy.redact else _cut(str(v), policy.max_field_chars)
        for k, v in (raw.items() if isinstance(raw, Mapping) else [])
    }
    usage = (response or {}).get("usage") or {}
    return {
        "ts": when.astimezone(UTC).isoformat(),
        "service": service,
        "version": version,
        "inputs": inputs,
        "output": _cut(str(response.get("output") or ""), policy.max_field_chars) if response else None,
        "latency_ms": round(latency_ms, 3),
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "cost_usd": (response or {}).get("cost_usd"),
        "refusal": refusal,
        "schema_valid": schema_valid,
        "error": error,
    }


class CaptureBuffer:
    """One execution environment's buffered records, per (service, version)."""

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._oldest: dict[tuple[str, str], float] = {}
        self.puts = 0

    def sampled(self, policy: CapturePolicy) -> bool:
        """Whether this request is captured (the policy's rate, a per-request draw)."""
        return policy.enabled and policy.sample_rate > 0 and self._rng.random() < policy.sample_rate

    def add(self, policy: CapturePolicy, record: dict[str, Any], s3: Any, bucket: str, when: datetime) -> str | None:
        """Buffer ``record``; write the batch when it is full or old. Returns the key written, if any."""
        key = (record["service"], record["version"])
        with self._lock:
            batch = self._records.setdefault(key, [])
            batch.append(record)
            self._oldest.setdefault(key, time.monotonic())
            due = len(batch) >= policy.batch_records or time.monotonic() - self._oldest[key] >= policy.flush_seconds
            if not due:
                return None
            self._records[key], written = [], batch
            del self._oldest[key]
        return self._put(s3, bucket, key, written, when)

    def flush(self, s3: Any, bucket: str, when: datetime) -> list[str]:
        """Write every buffered batch now (tests, benchmarks, an environment shutting down)."""
        with self._lock:
            batches, self._records, self._oldest = self._records, {}, {}
        return [self._put(s3, bucket, key, batch, when) for key, batch in batches.items() if batch]

    def pending(self) -> int:
        with self._lock:
            return sum(len(b) for b in self._records.values())

    def _put(self, s3: Any, bucket: str, key: tuple[str, str], batch: list[dict[str, Any]], when: datetime) -> str:
        first = datetime.fromisoformat(batch[0]["ts"]) if batch else when
        object_key = capture_key(key[0], key[1], first)
        body = "\n".join(json.dumps(r, separators=(",", ":")) for r in batch) + "\n"
        s3.put_object(Bucket=bucket, Key=object_key, Body=body.encode("utf-8"), ContentType="application/x-ndjson")
        self.puts += 1
        return object_key


def _hours(start: datetime, end: datetime) -> Iterator[datetime]:
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour <= end:
        yield hour
        hour += timedelta(hours=1)


def versions(s3: Any, bucket: str, service: str) -> list[str]:
    """The versions with captured records."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=capture_prefix(service),
                                                             Delimiter="/"):
        found += [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in page.get("CommonPrefixes", [])]
    return found


def read_window(
    s3: Any, bucket: str, service: str, start: datetime, end: datetime, *, version: str | None = None,
    max_records: int = 200_000,
) -> list[dict[str, Any]]:
    """Captured records of ``service`` (one ``version``, or all) with ``start <= ts < end``,
    at most ``max_records`` (the newest objects' first).

    Each batch's size is checked (HeadObject) before it is read, and at most
    ``MAX_CAPTURE_BATCH_BYTES`` of it are read (``adapters.s3.read_current``): a larger one is
    :class:`CaptureUnreadable` naming the object and the cap, never read into memory."""
    records: list[dict[str, Any]] = []
    for v in [version] if version else versions(s3, bucket, service):
        for hour in _hours(start - timedelta(hours=1), end):  # a batch is filed under its first record's hour
            prefix = f"{capture_prefix(service, v)}{hour:%Y/%m/%d/%H}/"
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    body = read_object(s3, bucket, item["Key"], None, error=CaptureUnreadable,
                                       what="a captured batch", max_bytes=MAX_CAPTURE_BATCH_BYTES).decode("utf-8")
                    for line in body.splitlines():
                        if not line.strip():
                            continue
                        record = json.loads(line)
                        if start <= datetime.fromisoformat(record["ts"]) < end:
                            records.append(record)
                    if len(records) >= max_records:
                        return records[:max_records]
    return records


class PolicyCache:
    """The service's monitoring policy as the inference function sees it: its registration
    (SSM) read at most once per ``ttl_seconds`` per execution environment, so a policy change
    reaches live within a minute and a request almost never pays the read."""

    def __init__(self, ttl_seconds: float = 60.0) -> None:
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[float, Any]] = {}

    def get(self, ssm: Any, parameter: str) -> Any:
        from modelgate.monitor.policy import MonitoringPolicy

        with self._lock:
            hit = self._cached.get(parameter)
            if hit is not None and time.monotonic() - hit[0] < self.ttl_seconds:
                return hit[1]
        value = json.loads(ssm.get_parameter(Name=parameter)["Parameter"]["Value"])
        policy = MonitoringPolicy.model_validate((value.get("policy") or {}).get("monitoring") or {})
        with self._lock:
            self._cached[parameter] = (time.monotonic(), policy)
        return policy
