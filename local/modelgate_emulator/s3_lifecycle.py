"""S3 Lifecycle expiration for the embedded AWS, in nominal time.

moto 5.2.1 stores a bucket's lifecycle configuration and never applies it, and stamps objects
with the real clock. Here:

- :func:`nominal_timestamps` makes moto's S3 stamp objects and delete markers (``LastModified``)
  with the runtime's nominal clock, so an object's age is counted in the same time as
  everything else;
- :class:`LifecycleRunner` applies every bucket's Enabled expiration rules once per nominal day,
  at midnight UTC, as S3 does asynchronously.

What is modelled (Amazon S3 User Guide, "Expiring objects",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-expire-general-considerations.html,
and "Lifecycle configuration elements",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/intro-lifecycle-rules.html):

- the rule's filter: ``Prefix`` (top level or in ``Filter``), a ``Tag``, or ``And`` of a prefix
  and tags;
- ``Expiration`` ``Days``: "Amazon S3 calculates the time by adding the number of days specified
  in the rule to the object creation time and rounding the resulting time to the next day
  midnight UTC"; ``Date``: from that midnight UTC on. In a nonversioned bucket the object is
  removed; in a versioning-enabled one "Amazon S3 adds a delete marker with a unique version
  ID. This makes the current version noncurrent, and the delete marker the current version";
  a current delete marker is left alone ("Amazon S3 doesn't take any action if there are one
  or more object versions and the delete marker is the current version");
- ``ExpiredObjectDeleteMarker``: a delete marker with no noncurrent version left is removed;
- ``NoncurrentVersionExpiration`` ``NoncurrentDays``: a noncurrent version (delete markers
  included) is removed permanently that many days after it became noncurrent (when the next
  newer version was written), rounded to the next midnight UTC the same way.

Not modelled: transitions (one storage class here), ``NewerNoncurrentVersions``, size filters,
abort of incomplete multipart uploads. Each expiration is logged. Test:
tests/unit/local/test_s3_lifecycle.py.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from modelgate_emulator.background import BackgroundLoop

logger = logging.getLogger(__name__)

DAY = 86_400.0


def next_midnight(moment: float) -> float:
    """``moment`` rounded up to midnight UTC (a moment at midnight stays)."""
    return math.ceil(moment / DAY) * DAY


@contextlib.contextmanager
def nominal_timestamps(clock: Any) -> Iterator[None]:
    """moto's S3 stamps objects, delete markers and buckets with ``clock``'s nominal time."""
    import moto.s3.models

    def now() -> datetime:
        return datetime.fromtimestamp(clock.now(), UTC).replace(tzinfo=None)

    with mock.patch.object(moto.s3.models, "utcnow", now):
        yield


class LifecycleRunner(BackgroundLoop):
    """Applies the account's buckets' lifecycle expiration on ``clock``, each midnight UTC, until :meth:`stop`."""

    thread_name = "modelgate-s3-lifecycle"

    def __init__(self, *, account_id: str, clock: Any) -> None:
        self.account_id = account_id
        self.clock = clock
        self._init_loop()
        self.expired: list[tuple[str, str, str]] = []  # (bucket, key, what happened), in order

    def _run(self) -> None:
        while not self._stopping.is_set():
            midnight = next_midnight(self.clock.now() + 1e-6)
            if self.clock.wait_for_moment(self._stopping, midnight):
                return
            try:
                self.run_once()
            except Exception:  # one bad pass must not end lifecycle for the run
                logger.exception("s3 lifecycle: a pass over the buckets failed")

    # ------------------------------------------------------------------ one pass
    def run_once(self) -> int:
        """Apply every Enabled expiration rule as of now (nominal); how many versions or objects it touched."""
        from moto.s3.models import s3_backends

        backend = s3_backends[self.account_id]["aws"]
        now = self.clock.now()
        done = 0
        for bucket in list(backend.buckets.values()):
            rules = [r for r in getattr(bucket, "rules", []) or [] if str(r.status) == "Enabled"]
            if rules:
                done += self._bucket(backend, bucket, rules, now)
        return done

    def _bucket(self, backend: Any, bucket: Any, rules: list[Any], now: float) -> int:
        done = 0
        for name in list(bucket.keys):
            versions = list(bucket.keys.getlist(name, []))
            if not versions:
                continue
            for rule in rules:
                if not _matches(backend, rule, name, versions[-1]):
                    continue
                done += self._noncurrent(backend, bucket, rule, name, versions, now)
                versions = list(bucket.keys.getlist(name, []))
                if versions:
                    done += self._current(backend, bucket, rule, name, versions, now)
        return done

    def _current(self, backend: Any, bucket: Any, rule: Any, name: str, versions: list[Any], now: float) -> int:
        current = versions[-1]
        if _is_delete_marker(current):
            if len(versions) == 1 and _true(rule.expired_object_delete_marker):
                backend.delete_object(bucket.name, name, version_id=current.version_id)
                self._note(bucket.name, name, f"expired delete marker {current.version_id} removed ({rule.id})")
                return 1
            return 0
        due = _expiration(rule, _epoch(current.last_modified))
        if due is None or due > now:
            return 0
        backend.delete_object(bucket.name, name)  # versioned: a delete marker; nonversioned: removed
        what = "delete marker added" if bucket.is_versioned else "removed"
        self._note(bucket.name, name, f"expired ({rule.id}): {what}")
        return 1

    def _noncurrent(self, backend: Any, bucket: Any, rule: Any, name: str, versions: list[Any], now: float) -> int:
        days = rule.nve_noncurrent_days
        if not days or len(versions) < 2:
            return 0
        done = 0
        for older, newer in itertools.pairwise(versions):
            if next_midnight(_epoch(newer.last_modified) + int(days) * DAY) <= now:
                backend.delete_object(bucket.name, name, version_id=older.version_id)
                self._note(bucket.name, name, f"noncurrent version {older.version_id} removed ({rule.id})")
                done += 1
        return done

    def _note(self, bucket: str, key: str, what: str) -> None:
        logger.info("s3 lifecycle: s3://%s/%s %s", bucket, key, what)
        self.expired.append((bucket, key, what))


def _expiration(rule: Any, created: float) -> float | None:
    """When the current version created at ``created`` expires under ``rule`` (None: the rule does not expire it)."""
    if rule.expiration_days:
        return next_midnight(created + int(rule.expiration_days) * DAY)
    if rule.expiration_date:
        return next_midnight(datetime.fromisoformat(str(rule.expiration_date)).timestamp())
    return None


def _matches(backend: Any, rule: Any, name: str, current: Any) -> bool:
    prefix: str | None = rule.prefix
    tags: dict[str, str] = {}
    lc_filter = rule.filter
    if lc_filter is not None:
        if lc_filter.prefix is not None:
            prefix = lc_filter.prefix
        elif lc_filter.tag_key:
            tags = {lc_filter.tag_key: lc_filter.tag_value or ""}
        elif lc_filter.and_filter is not None:
            prefix, tags = lc_filter.and_filter.prefix, dict(lc_filter.and_filter.tags)
    if prefix and not name.startswith(prefix):
        return False
    if tags:
        if _is_delete_marker(current):
            return False
        held = backend.tagger.get_tag_dict_for_resource(current.arn)
        return all(held.get(k) == v for k, v in tags.items())
    return True


def _is_delete_marker(version: Any) -> bool:
    from moto.s3.models import FakeDeleteMarker

    return isinstance(version, FakeDeleteMarker)


def _true(value: Any) -> bool:
    return str(value).lower() == "true"


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
