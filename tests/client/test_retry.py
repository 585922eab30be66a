"""Retries on 429 and 503 honouring Retry-After, the backoff rule, and wait_for_job, against a small stub
server (scripted answers) and, for a real 429, the live server with its push throttle turned down."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from relabel_client import (
    Client,
    InvalidRequest,
    JobTimeout,
    RetryPolicy,
    Throttled,
    TransportError,
    Unavailable,
)
from relabel_client.retry import parse_retry_after
from rest_framework.throttling import ScopedRateThrottle

from annotator.models import Project


class Stub:
    """An HTTP server that answers each request with the next scripted (status, headers, body)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], Any]] = []
        self.clients: list[Client] = []
        self.requests: list[tuple[str, str, bytes]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                stub.requests.append((self.command, self.path, self.rfile.read(length)))
                status, headers, body = stub.script.pop(0) if stub.script else (500, {}, {"errors": []})
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def client(self, **options: Any) -> Client:
        client = Client(self.url, token="t", **options)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.close()


def stub_client(stub: Stub, sleeps: list[float], **policy: Any) -> Client:
    return stub.client(sleep=sleeps.append, retry=RetryPolicy(**{"backoff": 0.5, "jitter": 0, **policy}))


OK_IMPORT = {"created": 1, "unchanged": 0, "updated": 0, "ids": [7]}


def test_a_429_with_retry_after_is_retried_after_the_wait_the_server_asked_for(stub: Stub) -> None:
    # Given a server that throttles twice, asking for 3 s and then 1 s
    stub.script = [(429, {"Retry-After": "3"}, {"errors": [{"message": "slow down"}]}),
                   (429, {"Retry-After": "1"}, {"errors": [{"message": "slow down"}]}),
                   (201, {}, OK_IMPORT)]
    sleeps: list[float] = []

    # When a batch is imported
    result = stub_client(stub, sleeps).import_examples(1, [{"text": "x"}])

    # Then the client waited as told and sent the same request three times
    assert result["ids"] == [7]
    assert sleeps == [3.0, 1.0]
    assert [r[:2] for r in stub.requests] == [("POST", "/api/v1/projects/1/examples/")] * 3
    assert len({r[2] for r in stub.requests}) == 1


def test_a_503_without_retry_after_backs_off_exponentially_then_raises(stub: Stub) -> None:
    stub.script = [(503, {}, {"errors": [{"message": "the database connection was lost"}]})] * 4
    sleeps: list[float] = []

    with pytest.raises(Unavailable) as raised:
        stub_client(stub, sleeps, max_retries=3).get_project(1)

    assert sleeps == [0.5, 1.0, 2.0]
    assert len(stub.requests) == 4
    assert raised.value.status == 503 and "connection was lost" in raised.value.message


def test_a_retry_after_date_is_honoured_and_a_wait_too_long_is_not_retried(stub: Stub) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    stub.script = [(503, {"Retry-After": later}, {"errors": [{"message": "busy"}]}), (200, {}, {"id": 1})]
    sleeps: list[float] = []
    assert stub_client(stub, sleeps).get_project(1) == {"id": 1}
    assert 25 < sleeps[0] <= 30

    stub.script = [(429, {"Retry-After": "3600"}, {"errors": [{"message": "come back in an hour"}]})]
    sleeps = []
    with pytest.raises(Throttled) as raised:
        stub_client(stub, sleeps, max_retry_after=60).get_project(1)
    assert sleeps == [] and raised.value.retry_after == 3600


def test_other_errors_are_not_retried(stub: Stub) -> None:
    stub.script = [(400, {}, {"errors": [{"index": 0, "field": "text", "message": "text is required"}]})]
    sleeps: list[float] = []
    with pytest.raises(InvalidRequest) as raised:
        stub_client(stub, sleeps).import_examples(1, [{"external_id": "x"}])
    assert raised.value.status == 400 and raised.value.field == "text" and sleeps == []
    assert len(stub.requests) == 1


def test_an_unreachable_server_is_a_transport_error_after_retrying_reads() -> None:
    sleeps: list[float] = []
    with Client("http://127.0.0.1:9", token="t", sleep=sleeps.append, timeout=2,
                retry=RetryPolicy(max_retries=2, backoff=0.1, jitter=0)) as client:
        with pytest.raises(TransportError):
            client.get_project(1)
        assert sleeps == [0.1, 0.2]
        with pytest.raises(TransportError):
            client.import_examples(1, ["x"])  # a write is not sent twice
        assert sleeps == [0.1, 0.2]


def test_backoff_rule_and_retry_after_parsing() -> None:
    policy = RetryPolicy(max_retries=4, backoff=1, max_backoff=5, jitter=0)
    assert [policy.delay(n) for n in range(5)] == [1, 2, 4, 5, None]
    assert policy.delay(0, {"Retry-After": "7"}) == 7
    jittered = RetryPolicy(backoff=1, jitter=0.5)
    assert all(4 <= jittered.delay(2) <= 6 for _ in range(20))
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after("Wed, 01 Jan 2025 00:00:10 GMT", now=now) == 10
    assert parse_retry_after("Tue, 31 Dec 2024 00:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after(" 2.5 ") == 2.5


def test_wait_for_job_polls_until_the_job_ends(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    # Given a job that runs through two stages and succeeds
    states = [{"id": 5, "status": "queued", "progress": 0, "stage": ""},
              {"id": 5, "status": "running", "progress": 0.4, "stage": "training"},
              {"id": 5, "status": "running", "progress": 0.9, "stage": "scoring"},
              {"id": 5, "status": "succeeded", "progress": 1.0, "stage": "done",
               "result": {"model_version": 1, "promoted": True}}]
    stub.script = [(200, {}, state) for state in states]
    sleeps: list[float] = []

    # When the client waits for it with a progress bar
    final = stub_client(stub, sleeps).wait_for_job(5, poll_interval=0.25, progress=True)

    # Then it polled until the end, returned the last state, and drew the bar on stderr
    assert final["result"] == {"model_version": 1, "promoted": True}
    assert sleeps == [0.25, 0.25, 0.25]
    assert "job 5" in capsys.readouterr().err


def test_wait_for_job_gives_up_after_its_timeout(stub: Stub) -> None:
    stub.script = [(200, {}, {"id": 5, "status": "running", "progress": 0.5, "stage": "training"})] * 3
    with pytest.raises(JobTimeout) as raised:
        stub.client().wait_for_job(5, poll_interval=0.05, timeout=0.01, progress=False)
    assert raised.value.job["stage"] == "training"


@pytest.fixture
def push_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # DRF reads the rates into the class when it is imported; a test changes them there.
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {**ScopedRateThrottle.THROTTLE_RATES, "push": "2/min"})


def test_the_servers_own_429_is_raised_with_its_retry_after_when_the_wait_is_too_long(
    push_limit: None, client_for: Any, reviewer: Any, project: Project,
) -> None:
    sleeps: list[float] = []
    client = client_for(reviewer.username, sleep=sleeps.append, retry=RetryPolicy(max_retry_after=1))
    client.push_samples(project.id, ["one"])
    client.push_samples(project.id, ["two"])

    with pytest.raises(Throttled) as raised:
        client.push_samples(project.id, ["three"])

    assert raised.value.status == 429 and raised.value.retry_after and raised.value.retry_after > 1
    assert sleeps == []
