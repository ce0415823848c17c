"""A real S3 endpoint for the object-storage tests: moto's server on 127.0.0.1, started once per
test session, with credentials and the endpoint in the environment where boto, s3fs and fsspec
look for them (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), as a user's would be.

Use the ``s3`` fixture (registered in ``tests/conftest.py``): it gives a fresh, empty bucket for
each test and the server's handle (``s3.url("key")`` is ``s3://BUCKET/key``; ``s3.stop()`` and
``s3.start()`` cut the connection and bring it back).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


class Server:
    """moto's threaded server, on a free loopback port that stays the same across restarts."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._cls = ThreadedMotoServer
        self._server: Any = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        self.host, self.port = self._server.get_host_and_port()
        self.endpoint = f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.stop()

    def start(self) -> None:
        """Start again on the same port (moto keeps no state across a restart)."""
        self._server = self._cls(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()


@dataclass
class Bucket:
    server: Server
    name: str

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def url(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}" if key else f"s3://{self.name}"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def filesystem(self) -> Any:
        """A fresh s3fs filesystem (no listing cache shared with the code under test)."""
        import s3fs

        return s3fs.S3FileSystem(
            client_kwargs={"endpoint_url": self.endpoint}, skip_instance_cache=True
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Server]:
    saved = {k: os.environ.get(k) for k in (*ENV, "AWS_ENDPOINT_URL")}
    os.environ.update(ENV)
    server = Server()
    os.environ["AWS_ENDPOINT_URL"] = server.endpoint
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3(s3_server: Server) -> Bucket:
    bucket = Bucket(s3_server, f"test-{uuid.uuid4().hex[:12]}")
    bucket.client().create_bucket(Bucket=bucket.name)
    return bucket
