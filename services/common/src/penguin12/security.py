"""Access control for the public APIs: optional API keys and a per-client rate limit.

Keys are compared in constant time and never logged; the rate limit is a fixed one-minute window
counted in Redis, so it holds across replicas. Both are off by default for the local demo and
switched on by configuration (Docker Compose sets them).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import redis
from fastapi import HTTPException, Request

log = logging.getLogger("penguin12.security")

API_KEY_HEADER = "X-API-Key"


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


def client_identity(request: Request) -> str:
    """Who to rate-limit: the API key's digest when one is presented, else the client address."""
    key = presented_key(request)
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return "ip:" + (request.client.host if request.client else "unknown")


class RateLimiter:
    """At most ``per_minute`` requests per client per clock minute (0 turns it off)."""

    def __init__(self, client: redis.Redis, per_minute: int, scope: str):
        self._redis = client
        self._per_minute = per_minute
        self._scope = scope

    def check(self, request: Request) -> None:
        if self._per_minute <= 0:
            return
        now = time.time()
        window = int(now // 60)
        key = f"penguin12:rl:{self._scope}:{client_identity(request)}:{window}"
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, 61)
                count = int(pipe.execute()[0])
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
