"""The S3 endpoint the object-storage tests run against behaves like S3 for what they rely on."""

from __future__ import annotations

import pytest

from tests.s3server import Bucket


def test_objects_round_trip_through_fsspec_with_credentials_from_the_environment(
    s3: Bucket,
) -> None:
    import fsspec

    with fsspec.open(s3.url("a/b.txt"), "wb") as f:
        f.write(b"hello")
    fs = s3.filesystem()
    assert fs.cat(s3.url("a/b.txt")) == b"hello"
    info = fs.info(s3.url("a/b.txt"))
    assert info["size"] == 5 and info["ETag"]


def test_a_stopped_server_refuses_connections_and_comes_back(s3: Bucket) -> None:
    fs = s3.filesystem()
    from botocore.exceptions import EndpointConnectionError

    fs.pipe(s3.url("x"), b"1")
    s3.server.stop()
    try:
        with pytest.raises((OSError, EndpointConnectionError)):
            s3.filesystem().cat(s3.url("x"))
    finally:
        s3.server.start()
    s3.client().create_bucket(Bucket=s3.name)
    fs = s3.filesystem()
    fs.pipe(s3.url("y"), b"2")
    assert fs.cat(s3.url("y")) == b"2"
