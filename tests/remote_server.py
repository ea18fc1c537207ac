"""A real S3 server for the tests: moto's ``ThreadedMotoServer`` on 127.0.0.1.

``S3Server`` serves on a free port, chosen at the first ``start()``, until
``stop()``. ``pause()`` stops serving: the listening socket is closed and
every open connection shut down, so clients see "connection refused", as
with an endpoint that went down; ``resume()`` serves again on the same port
with the data kept (moto's backends live in the process, not in the server:
``test_remote_lib`` checks it). ``stop()`` leaves no thread and no port.

Fixtures (``tests/integration/conftest.py`` imports them):

- ``s3_server``: one server for the session, always stopped at its end;
- ``s3``: that server for one test, with the environment of the test process
  set to ``env()`` (fake keys, region us-east-1; no shared files, no other
  ``AWS_*``), so that ``daemon.remote.make_client`` works in-process; at the
  end of the test a paused server is resumed. Tests take a bucket of their
  own with ``s3.fresh_url()``.

Opt-in real endpoint: with ``TRAINING_ARCHIVER_S3_URL=s3://BUCKET/PREFIX``
(and ``TRAINING_ARCHIVER_S3_ENDPOINT=https://...`` for a non-AWS server) the
fixtures give a ``RealEndpoint`` of the same interface instead. Credentials
come from the runner's own AWS environment (``env()`` passes its ``AWS_*``
variables on). ``fresh_url()`` gives a new folder under PREFIX, emptied at
the end of the session; ``pause()``/``resume()`` and ``make_bucket()`` of
another bucket skip the test, saying why.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

URL_VAR = "TRAINING_ARCHIVER_S3_URL"
ENDPOINT_VAR = "TRAINING_ARCHIVER_S3_ENDPOINT"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}
DRAIN_S = 10.0
"""How long ``pause``/``stop`` wait for the server's threads to end."""
_CHECKS = Config(
    request_checksum_calculation="when_required", response_checksum_validation="when_required"
)


@functools.cache
def _moto_server_class() -> type[Any]:
    """moto's threaded server, adapted; imported on first use (moto takes a second)."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import ThreadedWSGIServer

    class QuietHandler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass  # werkzeug prints every request to stderr otherwise

    class TrackingServer(ThreadedWSGIServer):
        """Knows its open connections and live handler threads, so a pause can end them
        (keep-alive connections otherwise go on being served after ``shutdown()``)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.live: set[socket.socket] = set()
            self.threads = 0
            self.handlers: set[threading.Thread] = set()
            self.changed = threading.Condition()

        def process_request(self, request: Any, client_address: Any) -> None:
            with self.changed:
                self.live.add(request)
                self.threads += 1
            try:
                super().process_request(request, client_address)
            except BaseException:
                with self.changed:
                    self.threads -= 1
                    self.changed.notify_all()
                raise

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            with self.changed:
                self.handlers.add(threading.current_thread())
            try:
                super().process_request_thread(request, client_address)
            finally:
                with self.changed:
                    self.live.discard(request)
                    self.threads -= 1
                    self.changed.notify_all()

        def end_connections(self, timeout: float) -> None:
            with self.changed:
                for sock in list(self.live):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # closed meanwhile
                ended = self.changed.wait_for(lambda: self.threads == 0, timeout)
                handlers, self.handlers = self.handlers, set()
            assert ended, f"{self.threads} moto request threads still running"
            for thread in handlers:  # past their last line: join returns at once
                thread.join(timeout)

    class Server(ThreadedMotoServer):
        """moto's threaded server with the tracking server above and a real close."""

        bind_error: BaseException | None = None

        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            try:
                self._server = TrackingServer(
                    self._ip_address, self._port, app, handler=QuietHandler
                )
            except (OSError, SystemExit) as e:  # werkzeug exits when the port is taken
                self.bind_error = OSError(f"port {self._port} taken while paused ({e})")
                self._server_ready_event.set()
                return
            self._server_ready_event.set()
            self._server.serve_forever(poll_interval=0.05)  # stop() waits one interval

        def stop(self) -> None:
            server = self._server
            super().stop()  # ends serve_forever and joins its thread
            if isinstance(server, TrackingServer):
                server.server_close()  # moto leaves the listening socket open
                server.end_connections(DRAIN_S)

    return Server


class S3Server:
    """moto's S3 on 127.0.0.1 and a free port (``with S3Server() as s3:`` starts, stops)."""

    can_pause = True

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def endpoint_url(self) -> str:
        assert self.port, "start() first"
        return f"http://{self.host}:{self.port}"

    def start(self) -> S3Server:
        """Serve (on the port of the last start, or a free one the first time)."""
        if self._server is None:
            server = _moto_server_class()(ip_address=self.host, port=self.port, verbose=False)
            server.start()
            if server.bind_error is not None:
                server._thread.join()
                raise server.bind_error
            self.port = server.get_host_and_port()[1]
            self._server, self._thread = server, server._thread
        return self

    def stop(self) -> None:
        """Stop serving and close the port; no thread of the server is left."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            assert self._thread is not None and not self._thread.is_alive()

    def pause(self) -> None:
        """Stop serving (connections refused), keeping the port and the data."""
        assert self._server is not None, "not serving"
        self.stop()

    def resume(self) -> None:
        """Serve again on the same port, with the data it had."""
        assert self.port and self._server is None, "not paused"
        self.start()

    def env(self) -> dict[str, str]:
        """The AWS environment for daemon subprocesses: fake keys and the region, only."""
        return dict(FAKE_ENV)

    def client(self) -> S3Client:
        """A boto3 client for checks in tests (independent of the environment)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=FAKE_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=FAKE_ENV["AWS_DEFAULT_REGION"],
            config=_CHECKS,
        )

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def fresh_url(self, prefix: str = "archives") -> str:
        """``s3://BUCKET/PREFIX`` in a new bucket of its own."""
        bucket = self.make_bucket(f"test-{uuid.uuid4().hex[:16]}")
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"

    def incomplete_uploads(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys of the multipart uploads begun and neither completed nor aborted."""
        return _incomplete_uploads(self.client(), bucket, prefix)

    def put_many(self, bucket: str, objects: dict[str, bytes]) -> None:
        """Store many small objects fast: straight into moto's store, the objects a PUT
        would make (1,000 PUTs over HTTP take moto about 7 s)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        for key, body in objects.items():
            backend.put_object(bucket, key, body)


class RealEndpoint:
    """The opt-in real bucket (``TRAINING_ARCHIVER_S3_URL``), with ``S3Server``'s interface."""

    can_pause = False
    SKIP = f"needs the local moto server: {URL_VAR} points the tests at a real endpoint"

    def __init__(self, url: str, endpoint_url: str | None) -> None:
        rest = url.removeprefix("s3://")
        self.bucket, _, prefix = rest.partition("/")
        self.prefix = prefix.strip("/")
        self._endpoint_url = endpoint_url
        self.issued: list[str] = []

    def __enter__(self) -> RealEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str | None:
        return self._endpoint_url

    def start(self) -> RealEndpoint:
        return self

    def stop(self) -> None:
        """Delete what the tests left under the folders they were given."""
        client = self.client()
        for prefix in self.issued:
            for key, upload_id in _uploads(client, self.bucket, prefix):
                client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                for item in page.get("Contents", []):
                    client.delete_object(Bucket=self.bucket, Key=item["Key"])
        self.issued.clear()

    def pause(self) -> None:
        pytest.skip(self.SKIP)

    def resume(self) -> None:
        pytest.skip(self.SKIP)

    def env(self) -> dict[str, str]:
        """The runner's own AWS variables (its credentials), for daemon subprocesses."""
        return {k: v for k, v in os.environ.items() if k.startswith("AWS_")}

    def client(self) -> S3Client:
        return boto3.client("s3", endpoint_url=self._endpoint_url, config=_CHECKS)

    def make_bucket(self, name: str) -> str:
        if name != self.bucket:
            pytest.skip(f"cannot make bucket {name!r} on the real endpoint ({URL_VAR} is set)")
        return name

    def fresh_url(self, prefix: str = "archives") -> str:
        """``PREFIX/test-<random>/<prefix>`` under the configured prefix; everything under
        ``PREFIX/test-<random>/`` (siblings of ``<prefix>`` too) goes when the session ends."""
        unique = "/".join(p for p in (self.prefix, f"test-{uuid.uuid4().hex[:16]}") if p)
        self.issued.append(unique + "/")
        return f"s3://{self.bucket}/{unique}/{prefix}" if prefix else f"s3://{self.bucket}/{unique}"

    def incomplete_uploads(self, bucket: str, prefix: str = "") -> list[str]:
        return _incomplete_uploads(self.client(), bucket, prefix)

    def put_many(self, bucket: str, objects: dict[str, bytes]) -> None:
        client = self.client()
        with ThreadPoolExecutor(16) as pool:
            for _ in pool.map(
                lambda item: client.put_object(Bucket=bucket, Key=item[0], Body=item[1]),
                objects.items(),
            ):
                pass


def _uploads(client: S3Client, bucket: str, prefix: str) -> list[tuple[str, str]]:
    """(key, upload id) of every multipart upload begun and neither completed nor aborted."""
    found = []
    for page in client.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, Prefix=prefix
    ):
        found += [(u.get("Key", ""), u.get("UploadId", "")) for u in page.get("Uploads", [])]
    return sorted(found)


def _incomplete_uploads(client: S3Client, bucket: str, prefix: str) -> list[str]:
    return [key for key, _ in _uploads(client, bucket, prefix)]


def port_refuses(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (the connection is refused)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server | RealEndpoint]:
    """One S3 endpoint for the session: moto's, or the opt-in real one; always stopped."""
    url = os.environ.get(URL_VAR)
    server: S3Server | RealEndpoint = (
        RealEndpoint(url, os.environ.get(ENDPOINT_VAR) or None) if url else S3Server()
    )
    with server:
        yield server


@pytest.fixture
def s3(
    s3_server: S3Server | RealEndpoint, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any
) -> Iterator[S3Server | RealEndpoint]:
    """The session's S3 endpoint for one test, the test process's AWS environment set to
    it (moto: ``env()`` only, no shared files); a server paused by the test is resumed."""
    if isinstance(s3_server, S3Server):
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            monkeypatch.delenv(name)
        for name, value in s3_server.env().items():
            monkeypatch.setenv(name, value)
        empty = tmp_path_factory.mktemp("aws") / "none"
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    yield s3_server
    if isinstance(s3_server, S3Server) and not s3_server.running:
        s3_server.resume()
