"""Hostile webhook receivers (issue #11, item 4): slow ones do not delay other clients'
webhooks, a huge answer is not read, a trickling one is cut off at the total deadline."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.webhooks import SECRET, Receiver, deliveries, submit

from conftest import Infra, Stack, wait_for

HOSTILE_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def hostile_stack(
    infra: Infra, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = Stack(
        infra,
        model_dir,
        tmp_path_factory.mktemp("hostile-hooks"),
        extra_env={
            # A job-state database of its own: the webhook queue is shared by every provenance
            # on one Redis (replicas), and the per-receiver share is per process.
            "PENGUIN12_STATE_REDIS_URL": f"{infra.redis_url}/3",
            "PENGUIN12_ALLOW_PRIVATE_URLS": "false",
            "PENGUIN12_URL_ALLOWED_NETWORKS": "127.0.0.1/32",
            "PENGUIN12_WEBHOOK_SECRET": SECRET,
            "PENGUIN12_WEBHOOK_TIMEOUT_S": str(HOSTILE_TIMEOUT_S),
            "PENGUIN12_WEBHOOK_BACKOFF_S": "30",
        },
    )
    try:
        yield stack.start_all()
    finally:
        stack.stop()


@dataclass
class HostileServer:
    """/slow/* waits for ``release``; /huge/* answers 200 then sends bytes without end;
    /trickle/* sends its status line one byte every half second; anything else answers 200."""

    base: str
    release: threading.Event
    calls: list[tuple[str, float]] = field(default_factory=list)


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server_state = HostileServer(base="", release=threading.Event())

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            kind = self.path.split("/")[1]
            server_state.calls.append((self.path, time.time()))
            try:
                if kind == "slow":
                    server_state.release.wait(120)
                    self._answer()
                elif kind == "huge":
                    self.send_response(200)
                    self.send_header("Content-Length", str(400 * 2**20))
                    self.end_headers()
                    chunk = b"x" * 65536
                    while not server_state.release.is_set():
                        self.wfile.write(chunk)
                elif kind == "trickle":
                    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        if server_state.release.wait(0.5):
                            return
                else:
                    self._answer()
            except OSError:
                pass  # the caller hung up: what it should do with such a receiver

        def _answer(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server_state.base = f"http://127.0.0.1:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server_state
    finally:
        server_state.release.set()
        server.shutdown()
        server.server_close()


def test_slow_receivers_do_not_delay_other_clients_webhooks(
    hostile_stack: Stack, hostile: HostileServer, receiver: Receiver, photos: dict[str, bytes]
) -> None:
    slow = [
        submit(hostile_stack, photos["rocket.jpg"], callback_url=f"{hostile.base}/slow/{i}")
        for i in range(5)
    ]
    assert all(r.status_code == 202 for r in slow)
    wait_for(lambda: len(hostile.calls) >= 2, 60, 0.05, "the slow receiver to be called")
    name = f"fast-{uuid.uuid4().hex[:8]}"
    fast = submit(hostile_stack, photos["coffee.jpg"], callback_url=receiver.url(name))
    hostile_stack.wait_final(fast.json()["request_id"])
    # Delivered while the slow receiver still holds its calls (before they could time out).
    wait_for(lambda: receiver.calls_to(name), HOSTILE_TIMEOUT_S * 2 / 3, 0.05, "the fast webhook")
    assert not hostile.release.is_set()
    # The slow receiver never had more than its share of delivery threads: within one attempt's
    # deadline of its first call, only two calls started (counted at the receiver, where calls
    # that provenance gave up on stay open until released, so "open at once" would overcount).
    slow_calls = sorted(t for path, t in hostile.calls if path.startswith("/slow/"))
    within_first_attempt = [t for t in slow_calls if t < slow_calls[0] + HOSTILE_TIMEOUT_S * 0.9]
    assert len(within_first_attempt) == 2, slow_calls
    hostile.release.set()
    ids = [response.json()["request_id"] for response in slow]

    def all_delivered() -> bool:
        return all(deliveries(hostile_stack, rid)["state"] == "delivered" for rid in ids)

    wait_for(all_delivered, 90, 0.2, "every slow receiver's webhook")


def _peak_rss_kib(stack: Stack, name: str) -> int:
    pid = stack.processes[name].process.pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_huge_answer_is_not_read_and_costs_no_memory(
    hostile_stack: Stack, hostile: HostileServer, photos: dict[str, bytes]
) -> None:
    before = _peak_rss_kib(hostile_stack, "provenance")
    response = submit(hostile_stack, photos["chelsea.jpg"], callback_url=f"{hostile.base}/huge/1")
    request_id = response.json()["request_id"]
    log = wait_for(
        lambda: (d := deliveries(hostile_stack, request_id))["state"] == "delivered" and d,
        60,
        0.2,
        "the delivery to a receiver answering 400 MB",
    )
    [attempt] = log["attempts"]
    assert attempt["status_code"] == 200
    assert attempt["duration_ms"] < HOSTILE_TIMEOUT_S * 1000 / 2
    grown_mib = (_peak_rss_kib(hostile_stack, "provenance") - before) / 1024
    assert grown_mib < 64, f"provenance peak RSS grew by {grown_mib:.0f} MiB"


def test_a_trickling_receiver_is_cut_off_at_the_total_deadline(
    hostile_stack: Stack, hostile: HostileServer, photos: dict[str, bytes]
) -> None:
    response = submit(
        hostile_stack, photos["astronaut.jpg"], callback_url=f"{hostile.base}/trickle/1"
    )
    request_id = response.json()["request_id"]
    log = wait_for(
        lambda: (d := deliveries(hostile_stack, request_id))["attempts"] and d,
        HOSTILE_TIMEOUT_S * 3,
        0.2,
        "the first attempt to end",
    )
    [attempt] = log["attempts"]
    assert attempt["outcome"] == "retry" and "Timeout" in attempt["error"], attempt
    # One deadline for the whole attempt, however steadily the bytes trickle in.
    assert attempt["duration_ms"] < (HOSTILE_TIMEOUT_S + 3) * 1000, attempt
