"""The Python SDK against the real stack; submit by URL and batches.

The stack (conftest.py's ``client_stack``) allows private URLs
(``PENGUIN12_ALLOW_PRIVATE_URLS=true``) so that images can be submitted by URL from a local web
server. The `penguin12` command is in test_cli.py.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import Stack
from penguin12.schemas import JobStatus, StatusUpdate
from penguin12.state import JobStore, redis_client
from penguin12_client import (
    ApiError,
    AsyncPenguin12Client,
    JobState,
    Penguin12Client,
    Ticket,
    WaitTimeout,
    default_status_base,
)

ORDER = ["PENDING", "PROCESSING_FEATURES", "CLASSIFYING", "COMPLETED"]


@pytest.fixture(scope="module")
def site(photos: dict[str, bytes]) -> Iterator[str]:
    """A local web site with the photos; /big is over the size limit, /slow trickles forever."""
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path in ("/big", "/slow"):
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.end_headers()
                for _ in range(4 * 1024 if self.path == "/big" else 100):
                    if self.path == "/slow" and stop.wait(0.2):
                        return
                    try:
                        self.wfile.write(b"\xff" * (1024 if self.path == "/big" else 1))
                        self.wfile.flush()
                    except OSError:
                        return
                return
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/rocket.jpg")
                self.end_headers()
                return
            data = photos.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def _assert_demo_verdict(state: JobState) -> None:
    assert state.status == "COMPLETED", state
    assert state.result is not None and state.result.prediction in ("REAL", "FAKE")
    assert 0.5 <= state.result.confidence <= 1.0
    assert state.result.demo is True
    assert state.result.model is not None and state.result.model.architecture == "tiny"


# ------------------------------------------------------------------------------ SDK


def test_sdk_submit_a_file_and_wait_by_long_poll(
    client: Penguin12Client, client_stack: Stack, photo_files: dict[str, Path]
) -> None:
    ticket = client.submit(photo_files["astronaut.jpg"])
    assert isinstance(ticket, Ticket)
    assert ticket.status_url == client_stack.url("provenance", f"/v1/status/{ticket.request_id}")
    seen: list[str] = []
    state = client.wait(ticket, timeout=60, on_change=lambda s: seen.append(s.status))
    _assert_demo_verdict(state)
    assert seen[-1] == "COMPLETED" and seen == sorted(seen, key=ORDER.index)
    # By bare id too (the status base URL), and equal to the raw API answer.
    assert client.status(ticket.request_id) == state
    assert state.raw == client_stack.status(ticket.request_id).json()


def test_sdk_check_bytes_and_file_objects(
    client: Penguin12Client, photos: dict[str, bytes], photo_files: dict[str, Path]
) -> None:
    _assert_demo_verdict(client.check(photos["coffee.jpg"], timeout=60))
    with open(photo_files["chelsea.jpg"], "rb") as handle:
        _assert_demo_verdict(client.check(handle, timeout=60))


def test_sdk_follows_server_sent_events(client: Penguin12Client, photos: dict[str, bytes]) -> None:
    ticket = client.submit(photos["rocket.jpg"])
    states = list(client.events(ticket, timeout=60))
    assert states[-1].status == "COMPLETED"
    assert [s.status for s in states] == sorted((s.status for s in states), key=ORDER.index)


def test_sdk_errors_are_typed(
    client: Penguin12Client, client_stack: Stack, photos: dict[str, bytes]
) -> None:
    with pytest.raises(ApiError) as refused:
        client.submit(b"this is not an image", filename="notes.txt")
    assert refused.value.status_code == 415 and "not a supported image" in refused.value.detail
    with pytest.raises(ApiError) as unknown:
        client.status(str(uuid.uuid4()))
    assert unknown.value.status_code == 404

    # A job that never finishes: wait() gives up at its deadline, without busy polling.
    store = JobStore(redis_client(client_stack.env["PENGUIN12_STATE_REDIS_URL"]), 600)
    stuck = str(uuid.uuid4())
    store.apply(
        StatusUpdate(
            request_id=stuck, submitted_at=time.time(), status=JobStatus.PENDING, service="test"
        )
    )
    route = 'route="/v1/status/{request_id}"'
    requests_before = client_stack.metric("provenance", "penguin12_http_requests_total", route)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as timed_out:
        client.wait(stuck, timeout=1.5)
    assert 1.4 <= time.monotonic() - started < 5
    assert timed_out.value.last_state is not None
    assert timed_out.value.last_state.status == "PENDING"
    requests = client_stack.metric("provenance", "penguin12_http_requests_total", route)
    assert requests - requests_before <= 3  # one plain GET, then long-polls


def test_async_client(client_stack: Stack, photos: dict[str, bytes]) -> None:
    async def run() -> tuple[JobState, list[JobState]]:
        async with AsyncPenguin12Client(
            client_stack.url("preprocessor"), client_stack.url("provenance")
        ) as sdk:
            final = await sdk.check(photos["hubble_deep_field.jpg"], timeout=60)
            ticket = await sdk.submit(photos["retina.jpg"])
            events = [state async for state in sdk.events(ticket, timeout=60)]
            return final, events

    final, events = asyncio.run(run())
    _assert_demo_verdict(final)
    assert events[-1].status == "COMPLETED"


def test_default_status_base() -> None:
    assert default_status_base("http://127.0.0.1:8000") == "http://127.0.0.1:8001"
    assert default_status_base("https://api.example.com/") == "https://api.example.com"


# ------------------------------------------------------------------------------ URL and batch


def test_submit_by_url(client: Penguin12Client, site: str) -> None:
    _assert_demo_verdict(client.wait(client.submit_url(f"{site}/chelsea.jpg"), 60))
    _assert_demo_verdict(client.wait(client.submit_url(f"{site}/redirect"), 60))
    with pytest.raises(ApiError) as missing:
        client.submit_url(f"{site}/nothing-here.jpg")
    assert missing.value.status_code == 400
    assert "Could not download the image" in missing.value.detail and "404" in missing.value.detail
    with pytest.raises(ApiError) as unresolvable:
        client.submit_url("http://no-such-host.invalid/x.jpg")
    assert unresolvable.value.status_code == 400 and "resolve" in unresolvable.value.detail


def test_url_download_limits(client: Penguin12Client, site: str) -> None:
    with pytest.raises(ApiError) as too_big:
        client.submit_url(f"{site}/big")
    assert too_big.value.status_code == 413 and "limit" in too_big.value.detail
    started = time.monotonic()
    with pytest.raises(ApiError) as too_slow:
        client.submit_url(f"{site}/slow")
    assert too_slow.value.status_code == 400 and "Timed out" in too_slow.value.detail
    assert time.monotonic() - started < 10


def test_batch_gives_one_ticket_per_image(
    client: Penguin12Client, client_stack: Stack, photo_files: dict[str, Path]
) -> None:
    items = client.submit_batch(
        [photo_files["astronaut.jpg"], b"GIF89a not an image at all", photo_files["coffee.jpg"]]
    )
    assert [i.filename for i in items] == ["astronaut.jpg", "image", "coffee.jpg"]
    good = [i for i in items if i.ticket]
    assert len(good) == 2
    bad = items[1]
    assert bad.ticket is None and bad.status_code == 415 and bad.error
    for item in good:
        assert item.ticket is not None
        _assert_demo_verdict(client.wait(item.ticket, 60))
    # When no image could be queued the answer is 422, still with one item per image.
    [only] = client.submit_batch([b"nope"])
    assert only.ticket is None and only.status_code == 415
    response = httpx.post(
        client_stack.url("preprocessor", "/v1/infer/batch"),
        files=[("files", ("a.bin", b"nope", "application/octet-stream"))],
        timeout=30,
    )
    assert response.status_code == 422
    assert response.json() == {"jobs": [{"filename": "a.bin", "error": only.error, "status": 415}]}
    too_many = httpx.post(
        client_stack.url("preprocessor", "/v1/infer/batch"),
        files=[("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(33)],
        timeout=30,
    )
    assert too_many.status_code == 413 and "at most 32" in too_many.json()["detail"]


def test_a_retried_batch_with_an_idempotency_key_queues_only_what_failed(
    client_stack: Stack, photo_files: dict[str, Path]
) -> None:
    url = client_stack.url("preprocessor", "/v1/infer/batch")
    good = photo_files["rocket.jpg"].read_bytes()

    key = f"batch-{uuid.uuid4()}"

    def send(second: bytes, key: str = key) -> list[dict[str, str]]:
        response = httpx.post(
            url,
            files=[
                ("files", ("a.jpg", good, "image/jpeg")),
                ("files", ("b.jpg", second, "image/jpeg")),
            ],
            headers={"Idempotency-Key": key},
            timeout=30,
        )
        assert response.status_code == 202
        jobs: list[dict[str, str]] = response.json()["jobs"]
        return jobs

    first = send(b"not an image")  # the second file is refused: its key stays free
    assert "request_id" in first[0] and first[1]["status"] == 415
    retried = send(good)
    assert retried[0]["request_id"] == first[0]["request_id"]  # not queued twice
    assert "request_id" in retried[1]
    again = send(good)
    assert [j["request_id"] for j in again] == [j["request_id"] for j in retried]
    other = send(good, key=f"{key}-other")
    assert {j["request_id"] for j in other}.isdisjoint(j["request_id"] for j in retried)
