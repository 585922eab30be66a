"""A real HTTP receiver for webhook tests: ``http.server`` in a thread on 127.0.0.1, recording every request
and answering from a script (status, headers, a delay before answering)."""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (longer than the read timeout: a timeout)
    body: bytes = b"ok"


@dataclass
class Received:
    path: str
    headers: Any  # email.message.Message: case-insensitive get()
    body: bytes
    at: float  # time.monotonic() when it arrived


class Receiver:
    """Answers request n with ``script[n]`` (the last entry once the script is used up)."""

    def __init__(self, script: list[Reply] | None = None) -> None:
        self.script = script or [Reply()]
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(Received(self.path, self.headers, body, time.monotonic()))
                    reply = receiver.script[min(len(receiver.requests) - 1, len(receiver.script) - 1)]
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (a timeout): nothing to answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/relabel"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def documented_verify() -> Any:
    """The ``verify`` function of docs/webhooks.md, run from the page itself (so the docs stay right)."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    [code] = [block for block in blocks if "def verify(" in block]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify"]


def fake_dns(monkeypatch: Any, table: dict[str, list[str]]) -> None:
    """Make host names resolve to the given addresses for the webhook target checks (IP literals resolve to
    themselves; any other name does not resolve)."""
    from annotator.services import webhook_targets

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple]:
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            if host not in table:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            addresses = table[host]
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses]

    monkeypatch.setattr(webhook_targets.socket, "getaddrinfo", getaddrinfo)
