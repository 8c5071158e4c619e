"""Webhooks (signed, retried, durable, logged) and the SSRF rules for client-given URLs.

The stack here runs with ``PENGUIN12_ALLOW_PRIVATE_URLS=false`` and only 127.0.0.1 allowed
(``PENGUIN12_URL_ALLOWED_NETWORKS``), so the local receiver can be called back while every other
private, loopback or link-local address is refused, exactly as in production.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import ipaddress
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from confluent_kafka import Producer
from support.webhooks import SECRET, Receiver, deliveries, submit

from conftest import Infra, Stack, wait_for
from penguin12.schemas import JobStatus, ModelInfo, Result, StatusUpdate, encode
from penguin12.security import webhook_secret
from penguin12.ssrf import UrlFetchFailed, UrlPolicy, UrlRefused, check_url, fetch, guarded_client


@pytest.fixture(scope="module")
def hook_stack(
    infra: Infra, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    stack = Stack(
        infra,
        model_dir,
        tmp_path_factory.mktemp("hooks"),
        extra_env={
            "PENGUIN12_ALLOW_PRIVATE_URLS": "false",
            "PENGUIN12_URL_ALLOWED_NETWORKS": "127.0.0.1/32",
            "PENGUIN12_WEBHOOK_SECRET": SECRET,
            "PENGUIN12_WEBHOOK_BACKOFF_S": "0.2",
            "PENGUIN12_WEBHOOK_MAX_BACKOFF_S": "1",
            "PENGUIN12_WEBHOOK_MAX_ATTEMPTS": "4",
            "PENGUIN12_WEBHOOK_TIMEOUT_S": "3",
        },
    )
    try:
        yield stack.start_all()
    finally:
        stack.stop()


def _job_secret(request_id: str) -> str:
    """What the 202 answer gave the submitter (``webhook_secret``)."""
    return webhook_secret(SECRET, request_id)


def _verify(headers: dict[str, str], body: bytes, secret: str | None = None) -> bool:
    """What a receiver does (docs/clients.md has the same code), with its job's secret."""
    delivery = headers["X-Penguin12-Delivery"]
    secret = secret or _job_secret(json.loads(body)["request_id"])
    parts = dict(p.split("=", 1) for p in headers["X-Penguin12-Signature"].split(","))
    timestamp = int(parts["t"])
    expected = hmac.new(
        secret.encode(), f"{timestamp}.{delivery}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return abs(time.time() - timestamp) < 300 and hmac.compare_digest(expected, parts["v2"])


def test_signed_callback_when_the_job_completes(
    hook_stack: Stack, receiver: Receiver, photos: dict[str, bytes]
) -> None:
    name = f"ok-{uuid.uuid4().hex[:8]}"
    response = submit(hook_stack, photos["astronaut.jpg"], callback_url=receiver.url(name))
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    secret = response.json()["webhook_secret"]  # this job's own signing secret
    assert secret == _job_secret(request_id) and secret.startswith("whsec_")

    [call] = wait_for(lambda: receiver.calls_to(name), 60, 0.05, "the webhook")
    assert _verify(call.headers, call.body, secret)
    # Neither the master secret nor another job's secret verifies it (no forging across clients).
    assert not _verify(call.headers, call.body, SECRET)
    assert not _verify(call.headers, call.body, _job_secret(str(uuid.uuid4())))
    # The delivery id is signed: replaying the body under another delivery id does not verify.
    assert not _verify({**call.headers, "X-Penguin12-Delivery": f"{request_id}:9"}, call.body)
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["X-Penguin12-Event"] == "job.completed"
    assert call.headers["X-Penguin12-Delivery"] == f"{request_id}:1"
    # The body is the job's final state, exactly as GET status_url answers it.
    payload = json.loads(call.body)
    assert payload == hook_stack.status(request_id).json()
    assert payload["status"] == "COMPLETED" and payload["result"]["demo"] is True
    # A tampered body does not verify.
    assert not _verify(call.headers, call.body.replace(b"COMPLETED", b"FAILED"))

    log = wait_for(
        lambda: (d := deliveries(hook_stack, request_id))["state"] == "delivered" and d,
        10,
        what="the delivery log",
    )
    [attempt] = log["attempts"]
    assert attempt["outcome"] == "delivered" and attempt["status_code"] == 200
    assert log["callback_url"] == receiver.url(name)
    # The callback URL is not part of the public status body.
    assert "callback_url" not in hook_stack.status(request_id).json()


def test_callback_url_arriving_after_the_final_state_still_fires(
    hook_stack: Stack, receiver: Receiver
) -> None:
    """The pipeline can finish before the PENDING record (which carries the URL) is written."""
    name = f"late-{uuid.uuid4().hex[:8]}"
    request_id, now = str(uuid.uuid4()), time.time()
    model = ModelInfo(name="t", version="0123456789ab", architecture="tiny", demo=True)
    result = Result(prediction="REAL", confidence=0.8, fake_probability=0.2, model=model, demo=True)
    completed = StatusUpdate(
        request_id=request_id,
        submitted_at=now,
        status=JobStatus.COMPLETED,
        at=now + 1,
        service="classifier",
        result=result,
    )
    pending = StatusUpdate(
        request_id=request_id,
        submitted_at=now,
        status=JobStatus.PENDING,
        at=now,
        service="preprocessor",
        callback_url=receiver.url(name),
    )
    producer = Producer({"bootstrap.servers": hook_stack.infra.bootstrap})
    for update in (completed, pending):  # the wrong order, on purpose
        producer.produce(hook_stack.topic("status"), encode(update), key=request_id)
    assert producer.flush(30) == 0
    [call] = wait_for(lambda: receiver.calls_to(name), 60, 0.05, "the webhook")
    assert _verify(call.headers, call.body)
    assert json.loads(call.body)["status"] == "COMPLETED"


def test_a_failing_receiver_gets_the_webhook_on_retry(
    hook_stack: Stack, receiver: Receiver, photos: dict[str, bytes]
) -> None:
    name = f"flaky-{uuid.uuid4().hex[:8]}"
    receiver.fail[f"/{name}"] = 2
    request_id = submit(hook_stack, photos["coffee.jpg"], callback_url=receiver.url(name)).json()[
        "request_id"
    ]
    calls = wait_for(lambda: len(receiver.calls_to(name)) >= 3 and receiver.calls_to(name), 60)
    assert all(_verify(c.headers, c.body) for c in calls)
    assert [c.headers["X-Penguin12-Delivery"] for c in calls] == [
        f"{request_id}:{n}" for n in (1, 2, 3)
    ]
    # Exponential backoff: 0.2 s then 0.4 s (plus jitter) between attempts.
    assert calls[1].at - calls[0].at >= 0.19 and calls[2].at - calls[1].at >= 0.39
    log = wait_for(
        lambda: (d := deliveries(hook_stack, request_id))["state"] == "delivered" and d, 10
    )
    assert [a["outcome"] for a in log["attempts"]] == ["retry", "retry", "delivered"]
    assert [a["status_code"] for a in log["attempts"]] == [500, 500, 200]
    assert len(receiver.calls_to(name)) == 3  # nothing after the success


def test_delivery_gives_up_after_max_attempts(
    hook_stack: Stack, receiver: Receiver, photos: dict[str, bytes]
) -> None:
    name = f"broken-{uuid.uuid4().hex[:8]}"
    receiver.fail[f"/{name}"] = 1000
    request_id = submit(hook_stack, photos["rocket.jpg"], callback_url=receiver.url(name)).json()[
        "request_id"
    ]
    log = wait_for(lambda: (d := deliveries(hook_stack, request_id))["state"] == "failed" and d, 60)
    assert [a["outcome"] for a in log["attempts"]] == ["retry", "retry", "retry", "failed"]
    assert len(receiver.calls_to(name)) == 4


def test_a_provenance_restart_does_not_drop_a_pending_delivery(
    hook_stack: Stack, receiver: Receiver, photos: dict[str, bytes]
) -> None:
    name = f"restart-{uuid.uuid4().hex[:8]}"
    release = threading.Event()
    receiver.hold[f"/{name}"] = release  # the first attempt hangs until it times out
    try:
        request_id = submit(
            hook_stack, photos["chelsea.jpg"], callback_url=receiver.url(name)
        ).json()["request_id"]
        wait_for(lambda: receiver.calls_to(name), 60, 0.05, "the first attempt")
        # Stop provenance mid-delivery: the attempt times out, its retry is queued in Redis.
        hook_stack.processes["provenance"].stop()
    finally:
        release.set()
    assert _redis_log(hook_stack, request_id)["state"] == "pending"
    hook_stack.start("provenance")  # a new process finds the queued retry and delivers it
    log = wait_for(
        lambda: (d := deliveries(hook_stack, request_id))["state"] == "delivered" and d, 60
    )
    assert [a["outcome"] for a in log["attempts"]] == ["retry", "delivered"]
    assert "Timeout" in log["attempts"][0]["error"]
    calls = receiver.calls_to(name)
    assert len(calls) == 2 and _verify(calls[-1].headers, calls[-1].body)
    assert calls[-1].headers["X-Penguin12-Delivery"] == f"{request_id}:2"


def _redis_log(stack: Stack, request_id: str) -> dict[str, str]:
    """The delivery record as stored in Redis (readable while provenance is down)."""
    client = redis.Redis.from_url(stack.env["PENGUIN12_STATE_REDIS_URL"])
    try:
        raw = client.hgetall(f"penguin12:webhook:{request_id}")
        return {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]
    finally:
        client.close()


def test_a_job_without_callback_has_no_deliveries(
    hook_stack: Stack, photos: dict[str, bytes]
) -> None:
    response = submit(hook_stack, photos["retina.jpg"])
    assert "webhook_secret" not in response.json()  # no callback, no secret
    request_id = response.json()["request_id"]
    assert deliveries(hook_stack, request_id) == {
        "request_id": request_id,
        "state": "none",
        "attempts": [],
    }
    missing = httpx.get(
        hook_stack.url("provenance", f"/v1/status/{uuid.uuid4()}/deliveries"), timeout=10
    )
    assert missing.status_code == 404


# ------------------------------------------------------------------------------ SSRF


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:8080/hook",  # loopback (only 127.0.0.1 is allowed here)
        "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
        "http://10.1.2.3/hook",  # private
        "http://192.168.1.1/",  # private
        "http://[::1]/hook",  # IPv6 loopback
        "http://[::ffff:127.0.0.2]/hook",  # IPv4-mapped loopback
        "http://0.0.0.0/",  # unspecified
        "http://2130706434/",  # 127.0.0.2 written as one number
        "http://100.64.0.1/",  # shared address space (carrier NAT)
    ],
)
def test_private_callback_and_image_urls_are_refused(hook_stack: Stack, url: str) -> None:
    submit = hook_stack.url("preprocessor", "/v1/infer")
    by_url = httpx.post(submit, data={"url": url}, timeout=30)
    assert by_url.status_code == 400, by_url.text
    assert "not a public address" in by_url.json()["detail"]
    callback = httpx.post(
        submit,
        files={"file": ("x.jpg", b"not even read", "image/jpeg")},
        data={"callback_url": url},
        timeout=30,
    )
    assert callback.status_code == 400, callback.text
    assert callback.json()["detail"].startswith("callback_url refused: ")


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"url": "ftp://example.com/x.jpg"}, "must start with http:// or https://"),
        ({"url": "http://"}, "has no host name"),
        ({"callback_url": "javascript:alert(1)"}, "must start with http:// or https://"),
        ({}, "Send the image as a `file` field"),
    ],
)
def test_malformed_urls_are_422(hook_stack: Stack, form: dict[str, str], expected: str) -> None:
    files = {"file": ("x.jpg", b"x", "image/jpeg")} if "callback_url" in form else None
    response = httpx.post(
        hook_stack.url("preprocessor", "/v1/infer"), data=form, files=files, timeout=30
    )
    assert response.status_code == 422, response.text
    assert expected in response.json()["detail"]


def test_address_rules() -> None:
    strict = UrlPolicy()
    for bad in ("127.0.0.1", "10.0.0.1", "172.16.5.4", "169.254.1.1", "fe80::1", "fc00::1", "::1",
                "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::ffff:10.0.0.1",
                "64:ff9b::a00:1", "2002:7f00:1::1", "100.64.1.1", "192.0.2.1"):  # fmt: skip
        with pytest.raises(UrlRefused):
            strict.check_address(ipaddress.ip_address(bad), bad)
    for good in ("93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::5db8:d822"):
        strict.check_address(ipaddress.ip_address(good), good)
    UrlPolicy(allow_private=True).check_address(ipaddress.ip_address("127.0.0.1"), "localhost")
    with pytest.raises(UrlRefused, match=r"'localhost' is not a public name"):
        check_url("http://localhost:9/", strict)  # what it resolves to is not shown


@pytest.fixture
def redirector() -> Iterator[str]:
    """127.0.0.1 redirecting /go to 127.0.0.2; /big sends more than it may; /img a small image."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/go":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.2:{port}/x")
                self.end_headers()
            elif self.path == "/hop":
                self.send_response(301)
                self.send_header("Location", "/img")
                self.end_headers()
            elif self.path == "/big":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"x" * 5000)
            else:
                self.send_response(200)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"img")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def test_every_redirect_hop_is_checked_again(redirector: str) -> None:
    only_one = UrlPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    assert fetch(f"{redirector}/hop", only_one, max_bytes=100, timeout_s=5) == b"img"
    with pytest.raises(UrlRefused, match=r"127\.0\.0\.2"):
        fetch(f"{redirector}/go", only_one, max_bytes=100, timeout_s=5)
    with pytest.raises(UrlFetchFailed) as too_big:
        fetch(f"{redirector}/big", only_one, max_bytes=1000, timeout_s=5)
    assert too_big.value.too_large
    with pytest.raises(UrlRefused):  # the guarded client refuses at connect time too
        guarded_client(UrlPolicy(), 5, "test").post(f"{redirector}/img")
