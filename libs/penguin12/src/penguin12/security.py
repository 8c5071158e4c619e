"""Access control for the public APIs: optional API keys and a per-client rate limit.

Keys are compared in constant time and never logged; the rate limit is a fixed one-minute window
counted in Redis, so it holds across replicas. Both are off by default for the local demo and
switched on by configuration (Docker Compose sets them).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import time

import redis
import redis.asyncio as aioredis
from fastapi import HTTPException, Request

log = logging.getLogger("penguin12.security")

API_KEY_HEADER = "X-API-Key"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_keys(raw: str) -> tuple[bytes, ...]:
    return tuple(k.strip().encode() for k in raw.split(",") if k.strip())


def presented_key(request: Request) -> str | None:
    key = request.headers.get(API_KEY_HEADER)
    if key:
        return key
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def check_api_key(request: Request, keys: tuple[bytes, ...]) -> None:
    """Raise 401 unless a configured key was presented (every key is compared: constant time)."""
    if not keys:
        return
    presented = (presented_key(request) or "").encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    if not matched:
        raise HTTPException(
            status_code=401,
            detail=f"Missing or invalid API key. Send it in the {API_KEY_HEADER} header.",
            headers={"WWW-Authenticate": "ApiKey"},
        )


def key_digest(key: str) -> str:
    """What stands for an API key in Redis and in status records (never the key itself)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def parse_networks(raw: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in raw.split(",") if n.strip())


def _in(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: Request, trusted_proxies: tuple[IPNetwork, ...] = ()) -> str:
    """The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
    address in ``X-Forwarded-For`` that is not itself a trusted proxy (anything further left was
    written by the client and proves nothing)."""
    peer = request.client.host if request.client else "unknown"
    if not trusted_proxies or not _in(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("X-Forwarded-For")).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _in(hop, trusted_proxies):
            return hop
    return peer


def client_identity(request: Request) -> str:
    """Who a request is, for rate limits, the Idempotency-Key namespace and job ownership.

    With API keys on, the (checked) key's digest; otherwise the client address (see
    `client_address`). A key presented while keys are off proves nothing and is ignored: it
    must not let a client pick its own identity. Set by `AccessGuard` on every public route.
    """
    identity = getattr(request.state, "client_identity", None)
    if isinstance(identity, str):
        return identity
    return "ip:" + client_address(request)


def webhook_secret(master: str, request_id: str) -> str:
    """The job's own webhook signing secret, derived from ``PENGUIN12_WEBHOOK_SECRET``.

    Returned to the submitter only; knowing one job's secret tells nothing about another's, so a
    receiver cannot forge another client's webhooks. Both APIs derive it, nothing stores it.
    """
    digest = hmac.new(master.encode(), b"penguin12-webhook:" + request_id.encode(), "sha256")
    return "whsec_" + digest.hexdigest()


def sign_webhook(secret: str, timestamp: int, delivery_id: str, body: bytes) -> str:
    """The ``v2`` signature: hex HMAC-SHA256(job secret, "<timestamp>.<delivery id>." + body)."""
    message = f"{timestamp}.{delivery_id}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_webhook(
    secret: str, header: str, delivery_id: str, body: bytes, tolerance_s: float = 300.0
) -> bool:
    """Check an ``X-Penguin12-Signature`` header (``t=<unix seconds>,v2=<hex>``) as a receiver
    does: the right job secret, delivery id and body, signed within ``tolerance_s``."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign_webhook(secret, timestamp, delivery_id, body)
    return hmac.compare_digest(expected, parts.get("v2", ""))


class RateLimiter:
    """At most ``per_minute`` requests per client per clock minute (0 turns it off)."""

    def __init__(self, client: aioredis.Redis, per_minute: int, scope: str):
        self._redis = client
        self._per_minute = per_minute
        self._scope = scope

    async def check(self, request: Request) -> None:
        if self._per_minute <= 0:
            return
        now = time.time()
        window = int(now // 60)
        key = f"penguin12:rl:{self._scope}:{client_identity(request)}:{window}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, 61)
                count = int((await pipe.execute())[0])
        except redis.RedisError:
            log.warning("rate limiter unavailable (Redis); letting the request through")
            return
        if count > self._per_minute:
            retry_after = max(1, int(60 - now % 60))
            raise HTTPException(
                status_code=429,
                detail=f"Rate limit of {self._per_minute} requests per minute reached; retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )
