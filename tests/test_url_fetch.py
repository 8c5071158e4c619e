"""Submit by URL against hostile servers: one deadline for the whole fetch, its own threads, and
the SSRF rules' leftovers (site-local IPv6, DNS answers in messages, ports, tokens in logs)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from conftest import Stack
from penguin12.settings import UrlPolicySettings
from penguin12.ssrf import (
    UrlFetchFailed,
    UrlPolicy,
    UrlRefused,
    check_url,
    fetch,
    parse_ports,
)

LOOPBACK = UrlPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))


@contextlib.contextmanager
def slow_server(mode: str, lifetime_s: float = 20.0) -> Iterator[str]:
    """A real socket server on 127.0.0.1 that misbehaves for up to ``lifetime_s`` per connection.

    ``trickle``: the status line and headers one byte every 0.2 s, never finishing.
    ``slow-redirect``: each request waits 1.5 s, then redirects to the same path again.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(lifetime_s)
            with contextlib.suppress(OSError):
                conn.recv(65536)
                if mode == "trickle":
                    header = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10_000
                    deadline = time.monotonic() + lifetime_s
                    for byte in header:
                        if stop.is_set() or time.monotonic() > deadline:
                            return
                        conn.sendall(bytes([byte]))
                        stop.wait(0.2)
                else:
                    stop.wait(1.5)
                    conn.sendall(
                        b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        listener.close()


# ------------------------------------------------------------------------ one deadline (item 3)


def test_a_server_trickling_its_headers_is_cut_at_the_deadline() -> None:
    with slow_server("trickle") as base:
        started = time.monotonic()
        with pytest.raises(UrlFetchFailed, match="Timed out"):
            fetch(f"{base}/img.jpg", LOOPBACK, max_bytes=1000, timeout_s=2)
        elapsed = time.monotonic() - started
    assert elapsed < 4, f"the 2 s deadline held for {elapsed:.1f} s"


def test_redirects_share_the_one_deadline() -> None:
    # Each hop takes 1.5 s; three redirects used to get fresh timeouts each (6 s in all).
    with slow_server("slow-redirect") as base:
        started = time.monotonic()
        with pytest.raises(UrlFetchFailed, match="Timed out"):
            fetch(f"{base}/img.jpg", LOOPBACK, max_bytes=1000, timeout_s=2, max_redirects=3)
        elapsed = time.monotonic() - started
    assert elapsed < 4, f"the 2 s deadline held for {elapsed:.1f} s"


def test_url_fetches_do_not_take_the_threads_health_checks_need(
    make_stack: Callable[..., Stack],
) -> None:
    # 48 submissions by URL to a trickling server, more than the 40 threads of the shared pool:
    # readiness (a Redis ping on that pool) must still answer at once, and every fetch must
    # end at its deadline with a clear 400 (or a 503 when too many are in flight).
    stack = make_stack(
        PENGUIN12_ALLOW_PRIVATE_URLS="true",
        PENGUIN12_URL_FETCH_TIMEOUT_S="6",
        PENGUIN12_URL_MAX_CONCURRENT_FETCHES="64",
    )
    stack.start("preprocessor")
    submit = stack.url("preprocessor", "/v1/infer")

    async def load(base: str) -> tuple[list[int], float, float]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=80)) as c:
            started = time.monotonic()
            posts = [
                asyncio.create_task(c.post(submit, data={"url": f"{base}/img{i}.jpg"}))
                for i in range(48)
            ]
            await asyncio.sleep(1.5)  # every fetch connected and trickling
            probe = time.monotonic()
            ready = await c.get(stack.url("preprocessor", "/readyz"))
            readiness_s = time.monotonic() - probe
            assert ready.status_code == 200, ready.text
            answers = await asyncio.gather(*posts)
            return [a.status_code for a in answers], readiness_s, time.monotonic() - started

    with slow_server("trickle", lifetime_s=30) as base:
        statuses, readiness_s, total_s = asyncio.run(load(base))
    assert readiness_s < 2, f"/readyz took {readiness_s:.1f} s while URLs were being fetched"
    assert set(statuses) == {400}, statuses
    assert total_s < 20, f"the fetches took {total_s:.0f} s with a 6 s deadline"


# ------------------------------------------------------------------------ SSRF leftovers (item 9)


@pytest.mark.parametrize("address", ["fec0::1", "feff::1", "fec0:1234::5"])
def test_site_local_ipv6_is_not_public(address: str) -> None:
    ip = ipaddress.ip_address(address)
    with pytest.raises(UrlRefused, match="not a public address"):
        UrlPolicy().check_address(ip, str(ip))


def test_refusals_do_not_reveal_what_a_name_resolves_to() -> None:
    with pytest.raises(UrlRefused) as refused:
        check_url("http://localhost:8080/hook", UrlPolicy())
    message = str(refused.value)
    assert "localhost" in message and "not a public" in message
    assert "127.0.0.1" not in message and "::1" not in message and "loopback" not in message
    # An address the client wrote itself may be named, with why it is refused.
    with pytest.raises(UrlRefused, match=r"10\.1\.2\.3 is private"):
        check_url("http://10.1.2.3/hook", UrlPolicy())


def test_only_web_ports_are_allowed_on_public_addresses() -> None:
    policy = UrlPolicy.from_settings(UrlPolicySettings(_env_file=None))  # the defaults
    public = ipaddress.ip_address("93.184.216.34")
    for port in (80, 443, 8080, 8443):
        policy.check_address(public, "example.com", port)
    for port in (22, 25, 6379, 9092, 11211):
        with pytest.raises(UrlRefused, match=rf"port {port} is not allowed"):
            policy.check_address(public, "example.com", port)
    # Addresses the operator trusts explicitly keep any port; "*" lifts the rule.
    LOOPBACK.check_address(ipaddress.ip_address("127.0.0.1"), "127.0.0.1", 6379)
    UrlPolicy(allowed_ports=None).check_address(public, "example.com", 25)
    assert parse_ports("*") is None and parse_ports("80, 443") == {80, 443}
    with pytest.raises(ValueError):
        parse_ports("80,99999")


def test_port_rule_applies_to_the_url_itself() -> None:
    with pytest.raises(UrlRefused, match="port 25 is not allowed"):
        check_url("http://1.1.1.1:25/", UrlPolicy())


def test_logs_never_carry_a_url_query_string(caplog: pytest.LogCaptureFixture) -> None:
    # A token in the query string must not reach the logs, even when the fetch fails.
    from fastapi import HTTPException

    from penguin12.settings import UrlFetchSettings
    from preprocessor.remote import UrlFetcher

    secret = "s3cr3t-token-value"
    fetcher = UrlFetcher(
        UrlFetchSettings(_env_file=None, allow_private_urls=True, url_fetch_timeout_s=1)
    )
    with slow_server("trickle") as base, caplog.at_level(logging.DEBUG):
        for url in (f"{base}/img.jpg?token={secret}", f"http://10.0.0.1:25/?token={secret}"):
            with pytest.raises(HTTPException) as failed:
                asyncio.run(fetcher.download(url, 1000))
            assert secret not in str(failed.value.detail)
    assert caplog.records, "the failures were logged"
    leaked = [f"{r.name}: {r.getMessage()}" for r in caplog.records if secret in r.getMessage()]
    assert not leaked, leaked
