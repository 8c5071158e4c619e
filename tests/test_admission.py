"""Admission and access: API keys, rate limits, idempotency, backlog bound, Kafka outages,
deadlines, and state rebuilt from the status topic."""

from __future__ import annotations

import concurrent.futures
import http.server
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from conftest import Infra, Stack, wait_for
from penguin12_devstack.kafka import ensure_kafka_jars, start_kafka
from penguin12_devstack.ports import free_ports

ROOT = Path(__file__).resolve().parents[1]
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


def test_backlog_bound_answers_429_then_recovers(
    make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_MAX_BACKLOG="3", PENGUIN12_BACKLOG_CHECK_INTERVAL_S="0.2")
    stack.start("provenance")
    stack.start("preprocessor")  # no workers yet: the queue only grows
    accepted = [stack.submit(photos["rocket.jpg"]).json()["request_id"] for _ in range(4)]
    wait_for(lambda: stack.metric("preprocessor", "penguin12_backlog_records") >= 4, 30)
    refused = stack.submit(photos["rocket.jpg"])
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "10"
    assert "queue holds more than 3 jobs" in refused.json()["detail"]

    stack.start("feature_extractor-0")
    stack.start("classifier")
    for request_id in accepted:
        assert stack.wait_final(request_id)["status"] == "COMPLETED"
    wait_for(lambda: stack.submit(photos["rocket.jpg"]).status_code == 202, 30, 0.5)


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[Callable[[], object]]:
    """A broker of this test's own, which it may stop and start again."""
    jars = ensure_kafka_jars(ROOT / ".cache" / "kafka")
    port, controller = free_ports(2)
    brokers = []

    def start() -> object:
        broker = start_kafka(
            jars_dir=jars,
            data_dir=tmp_path / "kafka",
            log_file=tmp_path / "kafka.log",
            port=port,
            controller_port=controller,
        )
        broker.wait_ready(120)
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        broker.stop()


def test_kafka_outage_answers_503_fast_and_recovers(
    make_stack: Callable[..., Stack],
    infra: Infra,
    own_kafka: Callable[[], object],
    photos: dict[str, bytes],
) -> None:
    broker = own_kafka()
    stack = make_stack(
        PENGUIN12_KAFKA_BOOTSTRAP=broker.bootstrap,  # type: ignore[attr-defined]
        PENGUIN12_REJOIN_TIMEOUT_S="3",
    )
    stack.start_all()
    assert (
        stack.wait_final(stack.submit(photos["chelsea.jpg"]).json()["request_id"])["status"]
        == "COMPLETED"
    )

    broker.stop()  # type: ignore[attr-defined]
    started = time.monotonic()
    wait_for(lambda: stack.submit(photos["chelsea.jpg"]).status_code == 503, 15, 0.2)
    refused = stack.submit(photos["chelsea.jpg"])
    elapsed = time.monotonic() - started
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert "nothing was queued" in refused.json()["detail"]
    assert elapsed < 15

    # Longer than the consumers' session timeout: each worker leaves its group and, once out of it
    # for PENGUIN12_REJOIN_TIMEOUT_S, replaces its consumer (librdkafka has been seen never to
    # rejoin by itself after such an outage).
    consumers = ("feature_extractor-0", "classifier", "provenance")
    wait_for(
        lambda: all(
            "replacing the consumer" in stack.processes[n].log_file.read_text() for n in consumers
        ),
        90,
        0.5,
        "every consumer to be replaced while outside its group",
    )

    own_kafka()  # same ports, same data: the services reconnect by themselves
    response = wait_for(
        lambda: (r := stack.submit(photos["chelsea.jpg"])).status_code == 202 and r, 90, 0.5
    )
    assert stack.wait_final(response.json()["request_id"], 90)["status"] == "COMPLETED"


def test_a_job_that_never_finishes_fails_with_a_timeout(
    make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_JOB_DEADLINE_S="1", PENGUIN12_MAINTENANCE_INTERVAL_S="0.3")
    stack.start("provenance")
    stack.start("preprocessor")  # no workers: the job can never complete
    request_id = stack.submit(photos["coffee.jpg"]).json()["request_id"]
    final = stack.wait_final(request_id, 30)
    assert final["status"] == "FAILED"
    assert "timed out: no result within 1 s" in final["error"]


def test_lost_job_state_is_rebuilt_from_the_status_topic(
    make_stack: Callable[..., Stack], infra: Infra, photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_MAINTENANCE_INTERVAL_S="0.3").start_all()
    request_id = stack.submit(photos["astronaut.jpg"]).json()["request_id"]
    before = stack.wait_final(request_id)

    state_db = redis.Redis.from_url(f"{infra.redis_url}/0")
    state_db.delete(
        f"penguin12:job:{request_id}", f"penguin12:marker:state-complete:{stack.topic('status')}"
    )
    assert stack.status(request_id).status_code == 404  # gone...

    after = wait_for(lambda: (r := stack.status(request_id)).status_code == 200 and r.json(), 30)
    assert after == before  # ...and rebuilt exactly, from the status topic


# ------------------------------------------- idempotency and client identity (issue #11, 5 and 8)


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
