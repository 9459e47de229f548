"""The S3 archive against a real SeaweedFS S3 server (``weed mini``, see tests/s3_server.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from tests import frames
from tests.s3_server import SeaweedS3
from tripwire.archive import ArchiveSettings, S3Settings, frame_key, open_archive
from tripwire.archive.s3 import RULE_IDS, S3Archive
from tripwire.errors import ArchiveError, ArchiveUnavailable

CAPTURE_NS = 1_700_000_000_123_456_789
KEY = frame_key("cam-1", CAPTURE_NS, 42, "image/jpeg")


@pytest.fixture
def s3_server(seaweed_s3: SeaweedS3) -> SeaweedS3:
    """The session's server; each test uses a bucket of its own."""
    return seaweed_s3


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return frames.jpeg(frames.background(320, 240))


def s3_settings(server: SeaweedS3, bucket: str, **overrides: Any) -> S3Settings:
    values = {
        "endpoint": server.endpoint,
        "bucket": bucket,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "secure": False,
    }
    return S3Settings.model_validate({**values, **overrides})


@pytest.fixture
async def archive(s3_server: SeaweedS3, unique: str) -> AsyncIterator[S3Archive]:
    archive = S3Archive(s3_settings(s3_server, f"t-{unique}"), retry_max_s=5)
    await archive.ensure()
    yield archive
    await archive.close()


async def test_repr_hides_the_secret(archive: S3Archive) -> None:
    assert archive.settings.secret_key.get_secret_value() not in repr(archive)


async def test_bucket_created_when_missing(s3_server: SeaweedS3, unique: str) -> None:
    bucket = f"fresh-{unique}"
    raw = s3_server.client()
    assert not raw.bucket_exists(bucket)
    archive = S3Archive(s3_settings(s3_server, bucket))
    try:
        await archive.ensure()
        assert raw.bucket_exists(bucket)
        await archive.ensure()  # idempotent: an existing bucket is fine
    finally:
        await archive.close()


async def test_metadata_goes_to_object_headers(
    archive: S3Archive, s3_server: SeaweedS3, jpeg: bytes
) -> None:
    # The round trip itself is in test_archive_contract.py.
    await archive.put(KEY, jpeg, "image/jpeg", {"Tripwire-Camera": "cam-1", "Tripwire-Seq": "42"})
    stat = s3_server.client().stat_object(archive.bucket, KEY)
    assert stat.metadata is not None
    assert stat.content_type == "image/jpeg"
    assert stat.size == len(jpeg)
    assert stat.metadata["x-amz-meta-tripwire-camera"] == "cam-1"
    assert stat.metadata["x-amz-meta-tripwire-seq"] == "42"


async def test_overwrite_leaves_one_version(archive: S3Archive, s3_server: SeaweedS3) -> None:
    await archive.put(KEY, b"first", "image/jpeg", {"seq": "1"})
    await archive.put(KEY, b"second", "image/png", {"seq": "2"})

    raw = s3_server.client()
    objects = list(raw.list_objects(archive.bucket, recursive=True, include_version=True))
    assert [o.object_name for o in objects] == [KEY]
    stat = raw.stat_object(archive.bucket, KEY)
    assert stat.metadata is not None
    assert (stat.content_type, stat.metadata["x-amz-meta-seq"]) == ("image/png", "2")


async def test_missing_object_is_permanent(archive: S3Archive) -> None:
    with pytest.raises(ArchiveError, match=f"bucket {archive.bucket} key {KEY}: get: NoSuchKey"):
        await archive.get(KEY)


async def test_deleted_bucket_is_permanent(archive: S3Archive, s3_server: SeaweedS3) -> None:
    s3_server.client().remove_bucket(archive.bucket)
    with pytest.raises(ArchiveError, match=r"NoSuchBucket.*was it deleted") as caught:
        await archive.get(KEY)
    assert not isinstance(caught.value, ArchiveUnavailable)


async def test_wrong_secret_is_permanent(s3_server: SeaweedS3, unique: str) -> None:
    wrong = "wrong-secret-" + unique
    # A first retry would wait 4-6 s: well above one refused request, however busy the machine.
    archive = S3Archive(
        s3_settings(s3_server, f"t-{unique}", secret_key=wrong), retry_backoff_s=5.0
    )
    try:
        started = time.monotonic()
        with pytest.raises(ArchiveError, match="SignatureDoesNotMatch") as caught:
            await archive.put(KEY, b"x", "image/jpeg", {})
        assert time.monotonic() - started < 4  # refused at once, not retried
        assert not isinstance(caught.value, ArchiveUnavailable)
        assert wrong not in str(caught.value)
    finally:
        await archive.close()


async def test_lifecycle_rule(s3_server: SeaweedS3, unique: str) -> None:
    bucket = f"t-{unique}"
    raw = s3_server.client()
    raw.make_bucket(bucket)
    # A rule somebody else put on the bucket must survive ours.
    theirs = Rule(ENABLED, rule_filter=Filter(prefix="logs/"), rule_id="theirs",
                  expiration=Expiration(days=3))  # fmt: skip
    raw.set_bucket_lifecycle(bucket, LifecycleConfig([theirs]))
    archive = S3Archive(s3_settings(s3_server, bucket), retention_days=30)
    try:
        await archive.ensure()
        if archive.lifecycle_applied is False:
            reason = "this weed does not implement PutBucketLifecycleConfiguration"
            pytest.skip(f"{reason}; the adapter logged a warning and keeps objects")
        assert archive.lifecycle_applied is True
        await archive.ensure()  # already in place: nothing to change
        config = raw.get_bucket_lifecycle(bucket)
        assert config is not None
        rules = {r.rule_id: (r.rule_filter.prefix if r.rule_filter else None, r.expiration)
                 for r in config.rules}  # fmt: skip
        assert rules == {
            "theirs": ("logs/", Expiration(days=3)),
            RULE_IDS["frames/"]: ("frames/", Expiration(days=30)),
            RULE_IDS["detections/"]: ("detections/", Expiration(days=30)),
        }
    finally:
        await archive.close()


async def test_factory_opens_s3(s3_server: SeaweedS3, tmp_path: Path, unique: str) -> None:
    settings = ArchiveSettings(backend="s3", s3=s3_settings(s3_server, f"t-{unique}"))
    archive = open_archive(settings, tmp_path)
    try:
        assert isinstance(archive, S3Archive)
        await archive.ensure()
        await archive.put(KEY, b"x", "image/jpeg", {})
        assert await archive.get(KEY) == b"x"
    finally:
        await archive.close()


async def test_silent_server_times_out() -> None:
    """A server that accepts connections but never answers fails each attempt in seconds."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        settings = S3Settings.model_validate(
            {"endpoint": f"127.0.0.1:{port}", "access_key": "a", "secret_key": "never-shown",
             "secure": False, "read_timeout_s": 0.3}
        )  # fmt: skip
        archive = S3Archive(settings, retry_attempts=2, retry_backoff_s=0.05)
        try:
            started = time.monotonic()
            with pytest.raises(ArchiveUnavailable, match="ReadTimeoutError") as caught:
                await archive.put(KEY, b"x", "image/jpeg", {})
            assert time.monotonic() - started < 3
            assert "never-shown" not in str(caught.value)
        finally:
            await archive.close()


async def test_outage_and_recovery(tmp_path: Path, jpeg: bytes) -> None:
    """Stop S3: puts fail within the retry bound; restart it: the same adapter carries on."""
    with SeaweedS3.start(tmp_path / "seaweed") as server:
        archive = S3Archive(
            s3_settings(server, "outage", connect_timeout_s=0.5),
            retry_attempts=4, retry_max_s=2.0, retry_backoff_s=0.1,
        )  # fmt: skip
        try:
            await archive.ensure()
            before = frame_key("cam-1", CAPTURE_NS, 1, "image/jpeg")
            await archive.put(before, jpeg, "image/jpeg", {"seq": "1"})

            server.stop()
            started = time.monotonic()
            with pytest.raises(ArchiveUnavailable, match="gave up after") as caught:
                await archive.put(KEY, jpeg, "image/jpeg", {})
            # Bounded by the budget (2 s) and one attempt's connect timeout, not hung; the
            # margin is for a loaded machine.
            assert time.monotonic() - started < 2.0 + 0.5 + 5
            message = str(caught.value)
            assert server.secret_key not in message
            assert f"archive s3 {server.endpoint} bucket outage key {KEY}: put:" in message

            server.restart()
            after = frame_key("cam-1", CAPTURE_NS, 2, "image/jpeg")
            await archive.put(after, b"after", "image/jpeg", {"seq": "2"})
            assert await archive.list("frames/") == [before, after]
            assert await archive.get(before) == jpeg  # what was stored before the outage

            # An outage shorter than the retry budget is invisible to the caller.
            server.stop()
            patient = S3Archive(
                s3_settings(server, "outage"),
                retry_attempts=100, retry_max_s=30.0, retry_backoff_s=0.1,
            )  # fmt: skip
            try:
                put = asyncio.create_task(patient.put(KEY, b"late", "image/jpeg", {}))
                await asyncio.sleep(0.3)
                assert not put.done()
                await asyncio.to_thread(server.restart)
                await asyncio.wait_for(put, 30)
                assert await patient.get(KEY) == b"late"
            finally:
                await patient.close()
        finally:
            await archive.close()
