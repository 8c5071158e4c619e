"""Idempotency keys (issue #11, items 5 and 8): a repeat gets the first ticket, a claim names
only queued jobs, a retry while the first request is in flight gets 409, and a key is scoped per
client and expires."""

from __future__ import annotations

import concurrent.futures
import http.server
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis

from conftest import Infra, Stack, wait_for


def test_idempotency_key_returns_the_first_ticket(stack: Stack, photos: dict[str, bytes]) -> None:
    def submit(key: str) -> dict[str, str]:
        response = httpx.post(
            stack.url("preprocessor", "/v1/infer"),
            files={"file": ("a.jpg", photos["coffee.jpg"], "image/jpeg")},
            headers={"Idempotency-Key": key},
            timeout=10,
        )
        assert response.status_code == 202
        body: dict[str, str] = response.json()
        return body

    first, again, other = submit("order-42"), submit("order-42"), submit("order-43")
    assert first == again
    assert other["request_id"] != first["request_id"]


def test_idempotency_claim_names_only_queued_jobs(infra: Infra) -> None:
    """The registry's rules on real Redis: pending while in flight, confirmed once queued, freed
    on failure, and a claim whose release failed only blocks until it expires."""
    from preprocessor.jobs import IdempotencyInProgress, IdempotencyRegistry

    registry = IdempotencyRegistry(
        redis.Redis.from_url(f"{infra.redis_url}/0"), ttl_s=60, pending_ttl_s=1
    )
    client, key = f"ip:{uuid.uuid4()}", "order-1"
    assert registry.claim(client, key, "first") == "first"
    with pytest.raises(IdempotencyInProgress):  # a retry while the first is in flight
        registry.lookup(client, key)
    with pytest.raises(IdempotencyInProgress):
        registry.claim(client, key, "retry")
    registry.release(client, key, "someone-else")  # only the holder may release
    with pytest.raises(IdempotencyInProgress):
        registry.lookup(client, key)
    registry.release(client, key, "first")  # the first failed (503): nothing names it
    assert registry.lookup(client, key) is None
    assert registry.claim(client, key, "second") == "second"
    assert registry.confirm(client, key, "second")  # queued: now the key names it
    assert registry.lookup(client, key) == "second"
    assert registry.claim(client, key, "third") == "second"
    assert not registry.confirm(client, key, "third")
    # Releasing failed (Redis down, process killed): the claim answers 409 until it expires,
    # then the key is free; it never names the job that was not queued.
    other = "order-2"
    assert registry.claim(client, other, "lost") == "lost"

    def free() -> bool:
        try:
            return registry.lookup(client, other) is None
        except IdempotencyInProgress:
            return False

    assert not free()
    wait_for(free, 10, 0.1, "the claim to expire")


@pytest.fixture
def slow_image_server() -> Iterator[tuple[str, threading.Event, list[float]]]:
    """/slow answers after ``release`` is set (or 5 s) with a body that is not an image."""
    release = threading.Event()
    hits: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(time.time())
            release.wait(5)
            body = b"not an image at all"
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/slow", release, hits
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_a_retry_while_the_first_request_is_in_flight_gets_409_not_its_ticket(
    make_stack: Callable[..., Stack],
    slow_image_server: tuple[str, threading.Event, list[float]],
    photos: dict[str, bytes],
) -> None:
    stack = make_stack(PENGUIN12_ALLOW_PRIVATE_URLS="true")
    stack.start("provenance")
    stack.start("preprocessor")
    url, release, hits = slow_image_server
    submit = stack.url("preprocessor", "/v1/infer")
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, submit, data={"url": url}, headers=headers, timeout=30)
        wait_for(lambda: hits, 15, 0.02, "the first request to be downloading its image")
        retry = httpx.post(submit, data={"url": url}, headers=headers, timeout=30)
        assert retry.status_code == 409, retry.text  # not 202 naming a job that may never be
        assert retry.headers["Retry-After"] == "1"
        assert "still being accepted" in retry.json()["detail"]
        release.set()
        assert first.result().status_code == 415  # the first fails: nothing was queued
    # The key is free again; no answer ever named a job that does not exist.
    again = httpx.post(
        submit,
        files={"file": ("a.jpg", photos["coffee.jpg"], "image/jpeg")},
        headers=headers,
        timeout=30,
    )
    assert again.status_code == 202, again.text
    assert stack.status(again.json()["request_id"]).status_code == 200


def test_idempotency_key_is_scoped_per_client_and_expires(
    make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_API_KEYS="key-alice,key-bob", PENGUIN12_IDEMPOTENCY_TTL_S="3")
    stack.start("preprocessor")

    def submit(api_key: str, idempotency_key: str) -> str:
        response = httpx.post(
            stack.url("preprocessor", "/v1/infer"),
            files={"file": ("a.jpg", photos["coffee.jpg"], "image/jpeg")},
            headers={"X-API-Key": api_key, "Idempotency-Key": idempotency_key},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        request_id: str = response.json()["request_id"]
        return request_id

    alice = submit("key-alice", "order-1")
    assert submit("key-alice", "order-1") == alice  # the same client retrying: the same ticket
    bob = submit("key-bob", "order-1")  # another client's key of the same name is its own
    assert bob != alice
    assert submit("key-bob", "order-1") == bob
    # After PENGUIN12_IDEMPOTENCY_TTL_S the key is forgotten: the same key is a new job.
    later = wait_for(
        lambda: (rid := submit("key-alice", "order-1")) != alice and rid,
        30,
        0.5,
        "the key to expire",
    )
    assert later not in (alice, bob)
