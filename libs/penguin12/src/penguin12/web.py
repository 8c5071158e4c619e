"""What both FastAPI services share: CORS, request metrics, `/metrics`, and JSON errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from penguin12.kafka import ensure_topics, kafka_reachable
from penguin12.metrics import HTTP_LATENCY, HTTP_REQUESTS
from penguin12.security import (
    RateLimiter,
    check_api_key,
    client_address,
    client_identity,
    key_digest,
    parse_keys,
    parse_networks,
    presented_key,
)
from penguin12.settings import CommonSettings
from penguin12.state import JobStore, async_redis_client, redis_client
from penguin12.tracing import setup_tracing, shutdown_tracing

# Web apps on localhost and browser extensions may call the APIs by default.
DEFAULT_CORS_ORIGIN_REGEX = (
    r"^(https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
    r"|chrome-extension://[a-p]{32}|moz-extension://[0-9a-f-]{36})$"
)


class ApiSettings(CommonSettings):
    """Settings of an HTTP service."""

    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

    host: str = "0.0.0.0"
    cors_allow_origin_regex: str = DEFAULT_CORS_ORIGIN_REGEX
    # How long Kafka and Redis may take to appear before the service gives up starting.
    startup_timeout_s: float = 120.0
    # Job state is kept this long after its last update.
    job_retention_s: int = 7 * 24 * 3600
    # Comma-separated API keys; empty = open (the local demo). Never logged.
    api_keys: str = Field(default="", repr=False)
    # Requests per client (API key, else IP) per minute on the public routes; 0 = unlimited.
    rate_limit_per_minute: int = 0
    # Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed (empty: none, the
    # TCP peer is the client). Only these may say who the client is.
    trusted_proxies: str = ""


def _route_template(scope: Scope) -> str:
    """The matched route's path template, so metric labels stay few ("/v1/status/{request_id}")."""
    route = scope.get("route")  # set by FastAPI's router once it has matched
    if route is not None and getattr(route, "path", None):
        return str(route.path)
    app = scope.get("app")  # mounts (the static web page) and 404s: find the template by hand
    for candidate in getattr(getattr(app, "router", None), "routes", []):
        match, _ = candidate.matches(scope)
        if match == Match.FULL and getattr(candidate, "path", None):
            return str(candidate.path)
    return "unmatched"


class RequestMetrics:
    """Counts and times every HTTP request by route template, method and status.

    A pure ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) nearly
    doubled the CPU per request (0.29 -> 0.53 ms, docs/benchmarks.md). Time runs to the last
    byte of the response, so a long-poll or SSE stream counts for as long as it stays open.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets should the app raise before answering

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route, method = _route_template(scope), scope["method"]
            HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
            HTTP_LATENCY.labels(route=route, method=method).observe(time.perf_counter() - started)


def install_common(app: FastAPI, settings: ApiSettings) -> None:
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=settings.cors_allow_origin_regex,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["Retry-After", "Location"],
        max_age=600,
    )

    app.add_middleware(RequestMetrics)

    @app.exception_handler(redis.RedisError)
    async def state_store_unavailable(request: Request, exc: redis.RedisError) -> JSONResponse:
        """Redis down is an outage, not a bug: 503 with a retry hint, never a 500."""
        logging.getLogger("penguin12.web").error("Redis unavailable: %s", exc)
        return JSONResponse(
            status_code=503,
            content={"detail": "The job state store is unavailable right now; retry shortly."},
            headers={"Retry-After": "2"},
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/livez", tags=["health"], summary="Liveness: the process serves requests")
    def livez() -> dict[str, str]:
        return {"status": "ok"}


# A readiness check: reads the app's state (what the lifespan put there), may block (it runs on
# the thread pool); with the word /readyz shows when it fails.
ReadinessCheck = tuple[Callable[[Any], bool], str]


def install_readiness(app: FastAPI, summary: str, **checks: ReadinessCheck) -> None:
    """``GET /readyz``: each check's name with "ok" or its failure word; 503 unless all pass."""

    @app.get("/readyz", tags=["health"], summary=summary)
    async def readyz(request: Request, response: Response) -> dict[str, str]:
        state = request.app.state
        answer = {}
        for name, (check, failed) in checks.items():
            ok = await run_in_threadpool(check, state)
            answer[name] = "ok" if ok else failed
            if not ok:
                response.status_code = 503
        return answer


async def wait_until(
    check: Callable[[], bool], what: str, timeout_s: float, interval_s: float = 0.5
) -> None:
    """Await a dependency in the pre-start step (not at import), with a deadline."""
    import asyncio
    import logging

    log = logging.getLogger("penguin12.startup")
    deadline = time.monotonic() + timeout_s
    while not await run_in_threadpool(check):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reachable after {timeout_s:.0f}s")
        log.info("waiting for %s", what)
        await asyncio.sleep(interval_s)


class AccessGuard:
    """API key check, then rate limit: the dependency every public route takes."""

    def __init__(self, settings: ApiSettings, client: aioredis.Redis, scope: str):
        self._keys = parse_keys(settings.api_keys)
        self._trusted = parse_networks(settings.trusted_proxies)
        self._limiter = RateLimiter(client, settings.rate_limit_per_minute, scope)

    @property
    def keys_on(self) -> bool:
        return bool(self._keys)

    async def __call__(self, request: Request) -> None:
        check_api_key(request, self._keys)
        if self._keys:
            request.state.client_identity = key_digest(presented_key(request) or "")
        else:
            request.state.client_identity = "ip:" + client_address(request, self._trusted)
        await self._limiter.check(request)


# The routes' dependencies are coroutines: FastAPI runs a plain function on its thread pool, a
# thread hand-off per dependency per request (four of them on a submit, measured in #14).


async def requester(request: Request) -> str:
    """FastAPI dependency: who is asking (`client_identity`)."""
    return client_identity(request)


async def owner_filter(request: Request) -> str | None:
    """The identity a job must belong to for this request to see it; None when keys are off."""
    guard = getattr(request.app.state, "guard", None)
    if guard is None or not guard.keys_on:
        return None
    return client_identity(request)


async def guard_public_route(request: Request) -> None:
    """FastAPI dependency: the app's `AccessGuard` (set on ``app.state.guard`` at start-up)."""
    await request.app.state.guard(request)


class Infrastructure(NamedTuple):
    """The state database's clients (blocking for threads, asyncio for handlers) and store."""

    client: redis.Redis
    aclient: aioredis.Redis
    store: JobStore


async def connect_infrastructure(settings: ApiSettings) -> Infrastructure:
    """The pre-start step both APIs share: wait for Kafka and Redis, make sure topics exist."""
    client = redis_client(settings.state_redis_url, settings)
    aclient = async_redis_client(settings.state_redis_url, settings)
    store = JobStore(client, settings.job_retention_s, aclient)
    await wait_until(lambda: kafka_reachable(settings), "Kafka", settings.startup_timeout_s)
    await wait_until(store.ping, "Redis", settings.startup_timeout_s)
    await run_in_threadpool(ensure_topics, settings)
    return Infrastructure(client, aclient, store)


def serve(app: FastAPI, settings: ApiSettings, port: int) -> None:
    """Run an API under uvicorn with the project's logging and tracing set up."""
    import uvicorn

    setup_tracing(settings.service_name, settings.otlp_endpoint)
    try:
        # Open SSE streams must not hold a shutdown (SIGTERM) for long.
        uvicorn.run(
            app, host=settings.host, port=port, log_config=None, timeout_graceful_shutdown=5
        )
    finally:
        shutdown_tracing()
