"""S3 Lifecycle expiration on the embedded AWS, in nominal time: captured records expire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from modelgate_emulator.clock import ManualClock
from modelgate_emulator.s3_lifecycle import LifecycleRunner, next_midnight, nominal_timestamps
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from modelgate.monitor.capture import CaptureBuffer, read_window
from modelgate.monitor.policy import CapturePolicy

REGION = "us-east-1"
# "if an object was created on 1/15/2014 10:30 AM UTC and you specify 3 days in a transition rule, then the
# transition date of the object would be calculated as 1/19/2014 00:00 UTC" (Lifecycle configuration elements)
CREATED = datetime(2030, 1, 15, 10, 30, tzinfo=UTC)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, ManualClock, LifecycleRunner]]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    clock = ManualClock(CREATED)
    with mock_aws(), nominal_timestamps(clock):
        yield boto3.client("s3", region_name=REGION), clock, LifecycleRunner(account_id=DEFAULT_ACCOUNT_ID,
                                                                            clock=clock)


def move_to(clock: ManualClock, moment: datetime) -> None:
    clock.advance(moment.timestamp() - clock.now())


def test_expiry_is_rounded_up_to_the_next_midnight_utc():
    day = 86_400
    assert next_midnight(CREATED.timestamp() + 3 * day) == datetime(2030, 1, 19, tzinfo=UTC).timestamp()
    assert next_midnight(datetime(2030, 1, 19, tzinfo=UTC).timestamp()) == datetime(2030, 1, 19, tzinfo=UTC).timestamp()


def test_a_nonversioned_bucket_removes_the_object_at_the_rounded_midnight_and_only_what_the_filter_names(s3):
    client, clock, runner = s3
    client.create_bucket(Bucket="plain")
    client.put_bucket_lifecycle_configuration(Bucket="plain", LifecycleConfiguration={"Rules": [
        {"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 3}},
        {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "keep/"}, "Expiration": {"Days": 1}},
        {"ID": "tagged", "Status": "Enabled", "Filter": {"Tag": {"Key": "class", "Value": "scratch"}},
         "Expiration": {"Days": 3}},
    ]})
    client.put_object(Bucket="plain", Key="tmp/a", Body=b"a")
    client.put_object(Bucket="plain", Key="keep/b", Body=b"b")
    client.put_object(Bucket="plain", Key="other/c", Body=b"c", Tagging="class=scratch")
    client.put_object(Bucket="plain", Key="other/d", Body=b"d", Tagging="class=kept")
    # objects carry the nominal time as LastModified
    assert client.head_object(Bucket="plain", Key="tmp/a")["LastModified"] == CREATED
    move_to(clock, datetime(2030, 1, 18, 23, 59, 59, tzinfo=UTC))  # three days passed, not the rounded midnight
    assert runner.run_once() == 0
    move_to(clock, datetime(2030, 1, 19, tzinfo=UTC))
    assert runner.run_once() == 2
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="plain")["Contents"])
    assert keys == ["keep/b", "other/d"]  # the disabled rule and the other tag leave theirs alone


def test_captured_records_expire_with_a_delete_marker_then_their_old_versions_go(s3):
    client, clock, runner = s3
    client.create_bucket(Bucket="artefacts")
    client.put_bucket_versioning(Bucket="artefacts", VersioningConfiguration={"Status": "Enabled"})
    # the template's rule for the artefact bucket
    client.put_bucket_lifecycle_configuration(Bucket="artefacts", LifecycleConfiguration={"Rules": [
        {"ID": "ExpireCapturedTraffic", "Status": "Enabled", "Prefix": "capture/", "Expiration": {"Days": 30},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
    client.put_object(Bucket="artefacts", Key="releases/support-bot/v1/model-config.json", Body=b"{}")
    policy = CapturePolicy(enabled=True, sample_rate=1.0, batch_records=10)
    buffer = CaptureBuffer()
    for i in range(10):
        record = {"ts": (CREATED + timedelta(seconds=i)).isoformat(), "service": "support-bot", "version": "3",
                  "inputs": {"question": f"q{i}"}, "output": "a", "latency_ms": 5.0}
        buffer.add(policy, record, client, "artefacts", CREATED)
    [key] = [o["Key"] for o in client.list_objects_v2(Bucket="artefacts", Prefix="capture/")["Contents"]]
    window = (CREATED - timedelta(hours=1), CREATED + timedelta(hours=1))

    def captured() -> list[dict]:
        return read_window(client, "artefacts", "support-bot", *window)

    assert len(captured()) == 10
    # day 30 at 10:30 is not yet the rounded midnight: the records are still there
    move_to(clock, datetime(2030, 2, 14, 12, tzinfo=UTC))
    runner.run_once()
    assert len(captured()) == 10
    # at midnight after day 30 the current version gets a delete marker: the records are gone from listings
    move_to(clock, datetime(2030, 2, 15, tzinfo=UTC))
    runner.run_once()
    assert captured() == []
    listing = client.list_object_versions(Bucket="artefacts", Prefix="capture/")
    assert [v["IsLatest"] for v in listing["Versions"]] == [False]
    old_version = listing["Versions"][0]["VersionId"]
    assert [m["IsLatest"] for m in listing["DeleteMarkers"]] == [True]
    # the old version became noncurrent at that midnight; one day later (a midnight) it is removed for good
    move_to(clock, datetime(2030, 2, 15, 23, tzinfo=UTC))
    runner.run_once()
    assert len(client.list_object_versions(Bucket="artefacts", Prefix="capture/").get("Versions", [])) == 1
    move_to(clock, datetime(2030, 2, 16, tzinfo=UTC))
    runner.run_once()
    listing = client.list_object_versions(Bucket="artefacts", Prefix="capture/")
    assert "Versions" not in listing and len(listing["DeleteMarkers"]) == 1
    # what is outside the rule's prefix is untouched, and every step was noted
    assert json.loads(client.get_object(Bucket="artefacts", Key="releases/support-bot/v1/model-config.json")["Body"]
                      .read()) == {}
    assert runner.expired == [
        ("artefacts", key, "expired (ExpireCapturedTraffic): delete marker added"),
        ("artefacts", key, f"noncurrent version {old_version} removed (ExpireCapturedTraffic)")]


def test_an_expired_delete_marker_with_no_versions_left_is_removed_when_the_rule_says_so(s3):
    client, clock, runner = s3
    client.create_bucket(Bucket="markers")
    client.put_bucket_versioning(Bucket="markers", VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_lifecycle_configuration(Bucket="markers", LifecycleConfiguration={"Rules": [
        {"ID": "versions", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
        {"ID": "markers", "Status": "Enabled", "Filter": {"Prefix": ""},
         "Expiration": {"ExpiredObjectDeleteMarker": True}}]})
    client.put_object(Bucket="markers", Key="k", Body=b"1")
    client.delete_object(Bucket="markers", Key="k")  # a delete marker over one noncurrent version
    move_to(clock, datetime(2030, 1, 17, tzinfo=UTC))
    runner.run_once()
    assert client.list_object_versions(Bucket="markers").get("DeleteMarkers") is None
    assert client.list_object_versions(Bucket="markers").get("Versions") is None


def test_the_embedded_aws_stamps_s3_objects_in_nominal_time_and_runs_lifecycle_each_midnight(tmp_path: Path) -> None:
    from modelgate_emulator.runtime import LocalAWS

    template = tmp_path / "template.yaml"
    template.write_text('AWSTemplateFormatVersion: "2010-09-09"\nResources:\n  Bucket:\n    Type: AWS::S3::Bucket\n'
                        "    Properties:\n      LifecycleConfiguration:\n        Rules:\n          - Status: Enabled\n"
                        "            Prefix: tmp/\n            ExpirationInDays: 1\n")
    with LocalAWS(template, echo_logs=False) as local:
        s3 = local.client("s3")
        bucket = local.stack.resources["Bucket"].physical_id
        before = local.clock.now()
        s3.put_object(Bucket=bucket, Key="tmp/x", Body=b"x")
        after = local.clock.now()
        stamped = s3.head_object(Bucket=bucket, Key="tmp/x")["LastModified"].timestamp()
        assert before - 1 <= stamped <= after  # nominal time (LastModified has whole seconds), not the real clock
        assert local.s3_lifecycle is not None and local.s3_lifecycle.run_once() == 0
