"""A local webhook receiver and the submit/deliveries calls that the webhook tests share
(conftest.py's ``receiver`` fixture runs one per module)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from conftest import Stack

# The webhook signing secret the tests' stacks run with (PENGUIN12_WEBHOOK_SECRET).
SECRET = "test-webhook-secret"


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A local webhook receiver. ``fail[path] = n`` answers 500 to the first n calls on path;
    ``hold[path]`` keeps calls on path unanswered until the event is set."""

    base: str
    calls: list[Call] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    hold: dict[str, threading.Event] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def calls_to(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.path == f"/{name}"]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    rec = Receiver(base="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec.calls.append(Call(self.path, dict(self.headers.items()), body, time.time()))
            code = 200
            if self.path in rec.hold:
                rec.hold.pop(self.path).wait(30)
                code = 503
            elif rec.fail.get(self.path, 0) > 0:
                rec.fail[self.path] -= 1
                code = 500
            try:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the caller gave up (timeout) meanwhile

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def submit(stack: Stack, photo: bytes, **form: str) -> httpx.Response:
    return httpx.post(
        stack.url("preprocessor", "/v1/infer"),
        files={"file": ("photo.jpg", photo, "image/jpeg")},
        data=form,
        timeout=30,
    )


def deliveries(stack: Stack, request_id: str) -> dict[str, Any]:
    response = httpx.get(stack.url("provenance", f"/v1/status/{request_id}/deliveries"), timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
