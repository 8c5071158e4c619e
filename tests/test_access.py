"""Access: API keys (both APIs, never in the logs), who a client is (the peer or a trusted
proxy's word), what a key may see, and rate limits (429, shared by the preprocessor replicas)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from conftest import Stack, wait_for

SECRET = "s3cr3t-key-never-logged-7f1c"


def test_api_keys_guard_both_apis_and_never_reach_the_logs(
    make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_API_KEYS=f"other-key,{SECRET}").start_all()
    image = {"file": ("a.jpg", photos["chelsea.jpg"], "image/jpeg")}
    url = stack.url("preprocessor", "/v1/infer")

    refused = httpx.post(url, files=image, timeout=10)
    assert refused.status_code == 401
    assert "X-API-Key" in refused.json()["detail"]
    assert (
        httpx.post(url, files=image, headers={"X-API-Key": "wrong"}, timeout=10).status_code == 401
    )

    accepted = httpx.post(url, files=image, headers={"X-API-Key": SECRET}, timeout=10)
    assert accepted.status_code == 202
    status_url = accepted.json()["status_url"]
    assert httpx.get(status_url, timeout=10).status_code == 401
    bearer = {"Authorization": f"Bearer {SECRET}"}
    wait_for(
        lambda: httpx.get(status_url, headers=bearer, timeout=10).json()["status"] == "COMPLETED",
        60,
    )
    # Health and metrics stay open for probes and Prometheus.
    assert httpx.get(stack.url("preprocessor", "/readyz"), timeout=5).status_code == 200
    for proc in stack.processes.values():
        assert SECRET not in proc.log_file.read_text()


def test_rate_limit_answers_429_with_retry_after(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(PENGUIN12_RATE_LIMIT_PER_MINUTE="3")
    stack.start("preprocessor")
    codes = []
    for _ in range(8):  # cheap requests: an empty file is refused with 422 once admitted
        response = stack.submit(b"")
        codes.append(response.status_code)
        if response.status_code == 429:
            assert 1 <= int(response.headers["Retry-After"]) <= 60
            assert "Rate limit of 3 requests per minute" in response.json()["detail"]
    assert 429 in codes
    assert codes.count(422) <= 6  # at most two windows' worth, should a minute boundary pass


def test_client_identity_is_the_peer_or_a_trusted_proxys_word() -> None:
    from starlette.requests import Request

    from penguin12.security import client_address, parse_networks

    def request(peer: str, forwarded: str | None) -> Request:
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        return Request({"type": "http", "client": (peer, 1234), "headers": headers})

    proxies = parse_networks("10.0.0.0/8, 127.0.0.1/32")
    assert client_address(request("203.0.113.9", "1.2.3.4"), proxies) == "203.0.113.9"
    assert client_address(request("10.0.0.5", "1.2.3.4"), proxies) == "1.2.3.4"
    # Only the hop the trusted proxy wrote counts; what the client wrote before it is ignored.
    assert client_address(request("10.0.0.5", "6.6.6.6, 1.2.3.4"), proxies) == "1.2.3.4"
    assert client_address(request("10.0.0.5", "1.2.3.4, 10.0.0.7"), proxies) == "1.2.3.4"
    assert client_address(request("10.0.0.5", None), proxies) == "10.0.0.5"
    assert client_address(request("10.0.0.5", "1.2.3.4"), ()) == "10.0.0.5"


def test_identity_behind_a_proxy_and_without_keys(
    make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    stack = make_stack(
        PENGUIN12_RATE_LIMIT_PER_MINUTE="4", PENGUIN12_TRUSTED_PROXIES="127.0.0.1/32"
    )
    stack.start("provenance")
    stack.start("preprocessor")
    submit = stack.url("preprocessor", "/v1/infer")

    def post(forwarded: str, **headers: str) -> httpx.Response:
        return httpx.post(
            submit,
            files={"file": ("a.jpg", photos["chelsea.jpg"], "image/jpeg")},
            headers={"X-Forwarded-For": forwarded, **headers},
            timeout=30,
        )

    # Two clients behind the proxy, the same Idempotency-Key: two jobs, neither sees the other's.
    alice = post("198.51.100.1", **{"Idempotency-Key": "order-1"})
    bob = post("198.51.100.2", **{"Idempotency-Key": "order-1"})
    assert alice.status_code == bob.status_code == 202
    assert alice.json()["request_id"] != bob.json()["request_id"]
    assert post("198.51.100.1", **{"Idempotency-Key": "order-1"}).json() == alice.json()
    # With keys off, an X-API-Key is no identity: new random values do not buy new buckets.
    codes = [post("198.51.100.3", **{"X-API-Key": str(uuid.uuid4())}).status_code for _ in range(8)]
    assert 429 in codes, codes


def test_with_keys_on_a_job_is_visible_only_to_its_key(
    make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_API_KEYS="key-of-alice,key-of-bob")
    stack.start("provenance")
    stack.start("preprocessor")
    alice, bob = {"X-API-Key": "key-of-alice"}, {"Authorization": "Bearer key-of-bob"}

    def post(headers: dict[str, str]) -> httpx.Response:
        return httpx.post(
            stack.url("preprocessor", "/v1/infer"),
            files={"file": ("a.jpg", photos["rocket.jpg"], "image/jpeg")},
            headers={**headers, "Idempotency-Key": "same-key"},
            timeout=30,
        )

    mine, theirs = post(alice), post(bob)
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["request_id"] != theirs.json()["request_id"]  # one namespace per key
    request_id = mine.json()["request_id"]
    for path in ("", "/deliveries", "/events", "?wait=1"):
        url = stack.url("provenance", f"/v1/status/{request_id}{path}")
        with httpx.stream("GET", url, headers=alice, timeout=10) as own:
            assert own.status_code == 200, path
        other = httpx.get(url, headers=bob, timeout=10)
        assert other.status_code == 404, (path, other.text)
        assert "never submitted or has expired" in other.json()["detail"]


def _minute_has_room(seconds: float) -> bool:
    """True when the current one-minute rate-limit window has at least ``seconds`` left."""
    return 60 - time.time() % 60 >= seconds


def test_rate_limit_is_shared_by_two_preprocessor_replicas(
    make_stack: Callable[..., Stack],
) -> None:
    """Counted in Redis: four requests a minute in all, whichever replica a request lands on."""
    stack = make_stack(PENGUIN12_RATE_LIMIT_PER_MINUTE="4")
    for name in ("preprocessor-0", "preprocessor-1"):
        stack.start(name, wait=False)
    for name in ("preprocessor-0", "preprocessor-1"):
        stack.processes[name].wait_ready(120)

    def send(replica: str) -> int:
        url = stack.url(replica, "/v1/infer")
        # Cheap: an empty file is refused with 422 once admitted; 429 when over the limit.
        return httpx.post(url, files={"file": ("a.jpg", b"", "image/jpeg")}, timeout=30).status_code

    for _attempt in range(3):  # a run that straddles two windows proves nothing: run it again
        # Up to a whole minute: room for 40 s opens only in the first 20 s of each window.
        wait_for(lambda: _minute_has_room(40), 65, 0.5, "a fresh rate-limit window")
        window = int(time.time() // 60)
        codes = [send(f"preprocessor-{i % 2}") for i in range(8)]
        if int(time.time() // 60) == window:
            break
    else:
        pytest.fail("three runs in a row straddled a minute boundary")
    assert codes.count(422) == 4, codes  # one budget of four for both replicas, not four each
    assert codes[4:] == [429] * 4, codes
