"""Admission and access: API keys, rate limits, idempotency, backlog bound, Kafka outages,
deadlines, and state rebuilt from the status topic."""

from __future__ import annotations

import concurrent.futures
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from conftest import Infra, Stack, read_topic, wait_for
from penguin12_devstack.kafka import KafkaBroker

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-key-never-logged-7f1c"
HANDED_TO_KAFKA = "job handed to Kafka; awaiting its acknowledgement"


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


def _readyz(stack: Stack) -> tuple[int, dict[str, str]]:
    response = httpx.get(stack.url("preprocessor", "/readyz"), timeout=10)
    return response.status_code, response.json()


def test_kafka_outage_answers_503_fast_and_recovers(
    make_stack: Callable[..., Stack],
    infra: Infra,
    own_kafka: Callable[[], KafkaBroker],
    photos: dict[str, bytes],
) -> None:
    broker = own_kafka()
    stack = make_stack(
        PENGUIN12_KAFKA_BOOTSTRAP=broker.bootstrap,
        PENGUIN12_REJOIN_TIMEOUT_S="3",
    )
    stack.start_all()
    assert (
        stack.wait_final(stack.submit(photos["chelsea.jpg"]).json()["request_id"])["status"]
        == "COMPLETED"
    )

    broker.stop()
    started = time.monotonic()
    wait_for(lambda: stack.submit(photos["chelsea.jpg"]).status_code == 503, 15, 0.2)
    refused = stack.submit(photos["chelsea.jpg"])
    elapsed = time.monotonic() - started
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert "nothing was queued" in refused.json()["detail"]
    assert elapsed < 15
    # Readiness names the missing dependency (and turns green again below).
    wait_for(
        lambda: _readyz(stack) == (503, {"kafka": "unreachable", "redis": "ok"}),
        30,
        0.3,
        "the preprocessor's /readyz to report Kafka down",
    )

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
    wait_for(
        lambda: _readyz(stack) == (200, {"kafka": "ok", "redis": "ok"}), 90, 0.5, "ready again"
    )
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


def test_job_state_expires_after_its_retention_and_answers_404(
    make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_JOB_RETENTION_S="4").start_all()
    request_id = stack.submit(photos["retina.jpg"]).json()["request_id"]
    assert stack.wait_final(request_id)["status"] == "COMPLETED"
    gone = wait_for(
        lambda: (r := stack.status(request_id)).status_code == 404 and r, 60, 0.5, "expiry"
    )
    assert "never submitted or has expired" in gone.json()["detail"]
    # It stays gone: nothing (the maintenance loop, a rebuild) brings an expired job back.
    wait_for(lambda: stack.metric("provenance", "penguin12_messages_total") > 0, 10)
    assert stack.status(request_id).status_code == 404


def test_provenance_rebuild_command_restores_lost_state(
    make_stack: Callable[..., Stack], infra: Infra, photos: dict[str, bytes]
) -> None:
    # A long maintenance interval: nothing rebuilds by itself during the test.
    stack = make_stack(PENGUIN12_MAINTENANCE_INTERVAL_S="3600").start_all()
    ids = [
        stack.submit(photos[name]).json()["request_id"] for name in ("chelsea.jpg", "coffee.jpg")
    ]
    before = {rid: stack.wait_final(rid) for rid in ids}
    state_db = redis.Redis.from_url(f"{infra.redis_url}/0")
    state_db.delete(*(f"penguin12:job:{rid}" for rid in ids))
    assert all(stack.status(rid).status_code == 404 for rid in ids)

    done = subprocess.run(
        [sys.executable, "-m", "provenance", "rebuild"],
        env={**os.environ, **stack.env, "PENGUIN12_CONSUMER_GROUP": f"provenance-{stack.suffix}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert {rid: stack.status(rid).json() for rid in ids} == before


class RefusedJobWasQueued(AssertionError):
    """The upload was answered 503, yet its records reached the topics."""


@pytest.mark.xfail(
    strict=True,
    raises=RefusedJobWasQueued,
    reason="known defect: a 503 after a delivery timeout does not retract records the paused "
    "broker already received; they are appended when it resumes and the job runs with an id "
    "nobody was given (needs transactional publishing or a cancellation record)",
)
def test_kafka_slow_to_acknowledge_answers_503_and_queues_nothing(
    make_stack: Callable[..., Stack], own_kafka: Callable[[], KafkaBroker], photos: dict[str, bytes]
) -> None:
    """The broker is up (its port answers) but does not acknowledge: a paused JVM (SIGSTOP), as
    in a long GC pause or a stalled disk. The answer is 503 + Retry-After, and the topics prove
    that nothing of the refused upload was queued, even once the broker resumes."""
    broker = own_kafka()
    assert broker.process is not None
    stack = make_stack(PENGUIN12_KAFKA_BOOTSTRAP=broker.bootstrap, PENGUIN12_DELIVERY_TIMEOUT_S="2")
    stack.start("provenance")
    stack.start("preprocessor")
    accepted = stack.submit(photos["astronaut.jpg"])
    assert accepted.status_code == 202, accepted.text
    accepted_id = accepted.json()["request_id"]

    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        refused = stack.submit(photos["rocket.jpg"])
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "request_id" not in refused.json()

    # Once the broker has caught up on what it was sent while paused, the topics hold exactly
    # the accepted jobs.
    recovered = wait_for(
        lambda: (r := stack.submit(photos["rocket.jpg"])).status_code == 202 and r, 60, 0.5
    )
    accepted_ids = {accepted_id, recovered.json()["request_id"]}
    queued = {
        topic: {m.key().decode() for m in read_topic(broker.bootstrap, stack.topic(topic))}
        for topic in ("preprocessed", "status")
    }
    assert all(accepted_ids <= keys for keys in queued.values()), queued
    if any(keys != accepted_ids for keys in queued.values()):
        raise RefusedJobWasQueued(queued)


def test_kill_9_of_the_preprocessor_between_send_and_202(
    make_stack: Callable[..., Stack], own_kafka: Callable[[], KafkaBroker], photos: dict[str, bytes]
) -> None:
    """The preprocessor has sent the job to Kafka and is waiting for the acknowledgement (the
    broker is paused) when it dies. The client never got a 202; whatever of the job reached the
    topic is carried through to a final state, so nothing is left half-queued."""
    broker = own_kafka()
    assert broker.process is not None
    stack = make_stack(
        PENGUIN12_KAFKA_BOOTSTRAP=broker.bootstrap,
        PENGUIN12_DELIVERY_TIMEOUT_S="60",
        PENGUIN12_LOG_LEVEL="DEBUG",  # the preprocessor says when a job is handed to Kafka
    ).start_all()
    warm = stack.submit(photos["chelsea.jpg"]).json()["request_id"]
    assert stack.wait_final(warm)["status"] == "COMPLETED"
    preprocessor = stack.processes["preprocessor"]
    handed_over = preprocessor.log_file.read_text().count(HANDED_TO_KAFKA)

    outcome: list[object] = []

    def upload() -> None:
        try:
            outcome.append(stack.submit(photos["retina.jpg"] + uuid.uuid4().bytes))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        client = threading.Thread(target=upload)
        client.start()
        # Provably in flight: the job was handed to the producer (the preprocessor logs it) and
        # no answer has come back.
        wait_for(
            lambda: preprocessor.log_file.read_text().count(HANDED_TO_KAFKA) > handed_over,
            60,
            0.1,
            "the preprocessor to hand the job to Kafka",
        )
        assert client.is_alive() and not outcome
        preprocessor.kill()
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    client.join(60)
    [answer] = outcome
    assert isinstance(answer, httpx.HTTPError), answer  # no 202 was ever given

    stack.start("preprocessor")
    # Every job the topic holds reaches a final state: none is stuck between "sent" and "202".
    queued = [m.key().decode() for m in read_topic(broker.bootstrap, stack.topic("preprocessed"))]
    assert warm in queued
    for request_id in queued:
        assert stack.wait_final(request_id, 120)["status"] == "COMPLETED"
    after = stack.submit(photos["coffee.jpg"])
    assert after.status_code == 202
    assert stack.wait_final(after.json()["request_id"], 120)["status"] == "COMPLETED"
