"""Webhooks: when a job that came with a ``callback_url`` ends, POST its final state there.

- **Durable.** The terminal status and the queue entry meet in Redis: after the status recorder
  applies a batch, every terminal job with a callback URL is enqueued by one Lua script that does
  it once per job (a redelivered record enqueues nothing twice). The queue is a sorted set scored
  by due time, so a restart of provenance drops nothing; a delivery in flight is *leased* and comes
  due again if its process dies, so delivery is at least once (receivers dedupe on
  ``X-Penguin12-Delivery``).
- **Never blocks the pipeline, nor one client another.** Deliveries run on a thread pool beside
  the status consumer; each receiver (scheme, host, port) gets at most
  ``PENGUIN12_WEBHOOK_PER_RECEIVER`` of its threads, and its other due deliveries wait in the
  queue meanwhile, so a slow receiver delays only its own webhooks.
- **Bounded.** Each attempt has one total deadline (``PENGUIN12_WEBHOOK_TIMEOUT_S``: connect,
  TLS, request, headers, everything), and at most `MAX_RESPONSE_BYTES` of the answer are read
  (only the status code matters); the rest is dropped with the connection.
- **Signed per job.** ``X-Penguin12-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256(job secret,
  t + "." + delivery id + "." + body)>``. The job secret is derived from
  ``PENGUIN12_WEBHOOK_SECRET`` and the request id (`penguin12.security.webhook_secret`) and handed
  to the submitter only, in the 202 answer: one client's receiver cannot forge another's webhooks.
- **Retried** with exponential backoff (and jitter) on a network error, a timeout or any non-2xx
  answer, up to ``PENGUIN12_WEBHOOK_MAX_ATTEMPTS`` attempts. Redirects are not followed.
- **Once per run.** A job re-opened by ``dlq replay`` gets its final state delivered again when
  the new run ends (a new delivery id; the attempt count starts again).
- **Safe.** Every connection goes through `penguin12.ssrf`: no private, loopback or link-local
  targets unless ``PENGUIN12_ALLOW_PRIVATE_URLS=true``.
- **Visible.** Every attempt is logged per job: `GET /v1/status/{id}/deliveries`.
"""

from __future__ import annotations

import hmac
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

import httpcore
import httpx
import redis
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from prometheus_client import Counter
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool

from penguin12.logs import request_context
from penguin12.schemas import TERMINAL_STATUSES, ErrorResponse, StatusUpdate
from penguin12.security import sign_webhook, webhook_secret
from penguin12.ssrf import (
    GuardedBackend,
    UrlPolicy,
    UrlRefused,
    UrlSettings,
    redact,
)
from penguin12.state import CALLBACK_FIELD, KEY_PREFIX, RUN_FIELD, JobStore
from penguin12.web import guard_public_route, owner_filter
from penguin12.worker import Output, Record, RetryableError

log = logging.getLogger("penguin12.provenance.webhooks")

DUE_KEY = "penguin12:webhooks:due"
_HOOK_PREFIX = "penguin12:webhook:"
SIGNATURE_HEADER = "X-Penguin12-Signature"
USER_AGENT = "Penguin12-Webhooks/0.1"
# The most of a receiver's answer that is read (for connection reuse); the rest is dropped.
MAX_RESPONSE_BYTES = 64 * 1024

DELIVERIES = Counter(
    "penguin12_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, retry, failed).",
    ["outcome"],
)


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PENGUIN12_WEBHOOK_", extra="ignore")

    # Master key from which each job's signing secret is derived. Empty: deliveries go out
    # unsigned (a warning at start).
    secret: str = Field(default="", repr=False)
    max_attempts: int = Field(default=8, ge=1)
    # Delay before retry n is backoff_s * 2**(n-1), at most max_backoff_s, plus up to 20% jitter.
    backoff_s: float = Field(default=2.0, gt=0)
    max_backoff_s: float = Field(default=600.0, gt=0)
    # Total deadline of one attempt, from connecting to the status line and headers.
    timeout_s: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=16, ge=1)
    # The most deliveries in flight to one receiver (scheme, host and port) at once.
    per_receiver: int = Field(default=2, ge=1)
    # How often the dispatcher looks for due deliveries when idle.
    poll_interval_s: float = Field(default=0.2, gt=0)


def _hook_key(request_id: str) -> str:
    return _HOOK_PREFIX + request_id


def _log_key(request_id: str) -> str:
    return _HOOK_PREFIX + request_id + ":log"


def sign(secret: str, timestamp: int, delivery_id: str, body: bytes) -> str:
    """The ``v2`` signature (`penguin12.security.sign_webhook`), keyed with the job's secret."""
    return sign_webhook(secret, timestamp, delivery_id, body)


def verify(
    secret: str, header: str, delivery_id: str, body: bytes, tolerance_s: float = 300.0
) -> bool:
    """Check an ``X-Penguin12-Signature`` header (what a receiver does; used by the tests)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, delivery_id, body)
    return hmac.compare_digest(expected, parts.get("v2", ""))


# ------------------------------------------------------------------------------ the queue

# Enqueue once per run: only for a finished job (rank 3) with a callback URL, and only if its
# delivery record is not for this run already (a re-opened job's new run gets a new delivery;
# `seq`, which numbers delivery ids, keeps counting across runs).
_ENQUEUE = f"""
local rank = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
if rank < 3 then return 0 end
local url = redis.call('HGET', KEYS[1], ARGV[4])
if not url then return 0 end
local run = redis.call('HGET', KEYS[1], '{RUN_FIELD}') or '0'
if redis.call('EXISTS', KEYS[2]) == 1 and (redis.call('HGET', KEYS[2], 'run') or '0') == run then
  return 0
end
redis.call('HSET', KEYS[2], 'url', url, 'state', 'pending', 'attempts', 0, 'created_at', ARGV[1],
  'run', run)
redis.call('HSETNX', KEYS[2], 'seq', 0)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
return 1
"""

# Lease up to ARGV[3] due deliveries: push their due time past the lease, return each id with
# its URL (the dispatcher picks by receiver without another round trip).
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  table.insert(out, id)
  table.insert(out, redis.call('HGET', ARGV[4] .. id, 'url') or '')
end
return out
"""


class WebhookQueue:
    """The Redis side: enqueue, claim, record attempts, read the delivery log."""

    def __init__(self, client: redis.Redis, retention_s: int):
        self._redis = client
        self._retention_s = retention_s
        self._enqueue = client.register_script(_ENQUEUE)
        self._claim = client.register_script(_CLAIM)

    def enqueue_finished(self, request_ids: list[str]) -> int:
        """Queue the webhook of each of these jobs that is finished and has a callback URL (once
        per job; the others are left alone)."""
        if not request_ids:
            return 0
        now = repr(time.time())
        with self._redis.pipeline(transaction=False) as pipe:
            for request_id in request_ids:
                self._enqueue(
                    keys=[KEY_PREFIX + request_id, _hook_key(request_id), DUE_KEY],
                    args=[now, request_id, self._retention_s, CALLBACK_FIELD],
                    client=pipe,
                )
            return sum(int(n) for n in pipe.execute())

    def claim(self, limit: int, lease_s: float) -> list[tuple[str, str]]:
        """Lease up to ``limit`` due deliveries: (request id, callback URL) pairs."""
        now = time.time()
        flat = self._claim(
            keys=[DUE_KEY], args=[repr(now), repr(now + lease_s), limit, _HOOK_PREFIX]
        )
        text = [i.decode() if isinstance(i, bytes) else str(i) for i in flat]
        return list(zip(text[0::2], text[1::2], strict=True))

    def defer(self, request_id: str, delay_s: float) -> None:
        """Put a leased delivery back, due in ``delay_s`` (its receiver is busy)."""
        self._redis.zadd(DUE_KEY, {request_id: time.time() + delay_s})

    def next_sequence(self, request_id: str) -> int:
        """The number of this delivery among all the job's deliveries (its id's suffix)."""
        return int(self._redis.hincrby(_hook_key(request_id), "seq", 1))

    def next_due_in(self) -> float | None:
        first = self._redis.zrange(DUE_KEY, 0, 0, withscores=True)
        if not first:
            return None
        return max(0.0, float(first[0][1]) - time.time())

    def meta(self, request_id: str) -> dict[str, str]:
        raw: dict[bytes, bytes] = self._redis.hgetall(_hook_key(request_id))  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    def record(
        self,
        request_id: str,
        attempt: dict[str, Any],
        state: Literal["pending", "delivered", "failed"],
        retry_at: float | None,
    ) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(_log_key(request_id), json.dumps(attempt))
            pipe.expire(_log_key(request_id), self._retention_s)
            key = _hook_key(request_id)
            pipe.hset(key, "state", state)
            pipe.hset(key, "attempts", int(attempt["attempt"]))
            if retry_at is not None:
                pipe.hset(key, "next_attempt_at", repr(retry_at))
                pipe.zadd(DUE_KEY, {request_id: retry_at})
            else:
                pipe.zrem(DUE_KEY, request_id)
                pipe.hdel(key, "next_attempt_at")
            pipe.execute()

    def drop(self, request_id: str) -> None:
        self._redis.zrem(DUE_KEY, request_id)

    def wait_for_run_end(self, request_id: str) -> None:
        """The job was re-opened before this delivery went out: the new run's end enqueues it."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(DUE_KEY, request_id)
            pipe.hset(_hook_key(request_id), "run", "-1")
            pipe.execute()

    def attempts(self, request_id: str) -> list[dict[str, Any]]:
        raw: list[bytes] = self._redis.lrange(_log_key(request_id), 0, -1)  # type: ignore[assignment]
        return [json.loads(r) for r in raw]

    def callback_url(self, request_id: str) -> str | None:
        value = self._redis.hget(KEY_PREFIX + request_id, CALLBACK_FIELD)
        return value.decode() if isinstance(value, bytes) else None


class WebhookTrigger:
    """Wraps the status recorder: after a batch is applied, queue the finished jobs' webhooks.

    A job's webhook is due once it is final *and* its callback URL is known, in whichever order
    the records arrive (the PENDING record that carries the URL can come after COMPLETED: the
    pipeline may finish before the preprocessor's records are all written). So the check runs for
    every terminal record and every record that carries a callback URL, applied or repeated: a
    crash between the state write and the enqueue is healed by the redelivered record, and the
    enqueue itself happens once per job.
    """

    def __init__(
        self, inner: Callable[[list[Record[StatusUpdate]]], list[Output]], queue: WebhookQueue
    ):
        self._inner = inner
        self._queue = queue

    def __call__(self, records: list[Record[StatusUpdate]]) -> list[Output]:
        outputs = self._inner(records)
        candidates = list(
            dict.fromkeys(
                r.payload.request_id
                for r in records
                if r.payload.status in TERMINAL_STATUSES or r.payload.callback_url
            )
        )
        try:
            queued = self._queue.enqueue_finished(candidates)
        except redis.RedisError as exc:
            raise RetryableError(f"Redis unavailable (webhook queue): {exc}") from exc
        if queued:
            log.debug("queued %d webhook(s)", queued)
        return outputs


# ------------------------------------------------------------------------------ delivery


_deadline = threading.local()


def _time_left(timeout: float | None) -> float | None:
    """``timeout``, shortened to what is left of this thread's delivery deadline."""
    end: float | None = getattr(_deadline, "at", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the attempt's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """Every socket operation waits at most until the attempt's deadline: a receiver that
    trickles its answer a byte at a time cannot hold a delivery thread past it."""

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _time_left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, _time_left(timeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(GuardedBackend):
    """The SSRF-guarded connections (penguin12.ssrf), under the attempt's deadline."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = super().connect_tcp(host, port, _time_left(timeout), local_address, socket_options)
        return _DeadlineStream(stream)


def _delivery_client(policy: UrlPolicy, settings: WebhookSettings) -> httpx.Client:
    transport = httpx.HTTPTransport(trust_env=False)
    # As penguin12.ssrf.GuardedTransport, with the deadline on every socket operation.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=settings.concurrency,
        max_keepalive_connections=settings.concurrency,
        keepalive_expiry=5.0,
        network_backend=_DeadlineBackend(policy),
    )
    timeout = settings.timeout_s
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


def receiver_of(url: str) -> str:
    """Who a delivery goes to, for the per-receiver limit: scheme, host and port."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return url
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or ''}"


class WebhookDispatcher:
    """Delivers due webhooks on a thread pool; start() at service start, stop() at shutdown."""

    # Claimed per round; those whose receiver is busy go back to the queue for a while.
    CLAIM_BATCH = 64

    def __init__(
        self,
        queue: WebhookQueue,
        store: JobStore,
        settings: WebhookSettings | None = None,
        policy: UrlPolicy | None = None,
    ):
        self._queue = queue
        self._store = store
        self._settings = settings or WebhookSettings()
        self._policy = policy or UrlSettings().policy()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)
        self._pool = ThreadPoolExecutor(self._settings.concurrency, "webhook")
        self._inflight = 0
        self._per_receiver: dict[str, int] = {}
        self._lock = threading.Lock()
        self._client = _delivery_client(self._policy, self._settings)
        # A leased delivery comes due again after this long if its process died mid-delivery.
        self._lease_s = self._settings.timeout_s * 2 + 30

    def start(self) -> None:
        if not self._settings.secret:
            log.warning("PENGUIN12_WEBHOOK_SECRET is not set: webhook deliveries are sent unsigned")
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                free = self._settings.concurrency - self._inflight
            try:
                claimed = self._queue.claim(self.CLAIM_BATCH, self._lease_s) if free > 0 else []
                started = self._dispatch(claimed)
            except redis.RedisError as exc:
                log.warning("webhook queue unavailable: %s", exc)
                self._stop.wait(2.0)
                continue
            if not started:
                wait = self._settings.poll_interval_s
                if free > 0:
                    try:
                        due_in = self._queue.next_due_in()
                    except redis.RedisError:
                        due_in = None
                    if due_in is not None:
                        wait = min(max(due_in, 0.01), wait)
                self._stop.wait(wait)

    def _dispatch(self, claimed: list[tuple[str, str]]) -> int:
        """Start what fits (threads free, receiver under its limit); defer the rest."""
        started = 0
        for request_id, url in claimed:
            receiver = receiver_of(url)
            with self._lock:
                pool_full = self._inflight >= self._settings.concurrency
                busy = self._per_receiver.get(receiver, 0) >= self._settings.per_receiver
                if not (pool_full or busy):
                    self._inflight += 1
                    self._per_receiver[receiver] = self._per_receiver.get(receiver, 0) + 1
            if pool_full or busy:
                # A busy receiver's deliveries wait about as long as one attempt can take.
                delay = self._settings.timeout_s / 2 if busy else self._settings.poll_interval_s
                self._queue.defer(request_id, delay * (1 + random.random() * 0.2))
                continue
            self._pool.submit(self._deliver_guarded, request_id, receiver)
            started += 1
        return started

    def _deliver_guarded(self, request_id: str, receiver: str) -> None:
        try:
            with request_context(request_id):
                self.deliver(request_id)
        except Exception:
            log.exception("webhook delivery crashed; it will come due again after its lease")
        finally:
            with self._lock:
                self._inflight -= 1
                left = self._per_receiver.get(receiver, 1) - 1
                if left > 0:
                    self._per_receiver[receiver] = left
                else:
                    self._per_receiver.pop(receiver, None)

    def _backoff(self, attempt: int) -> float:
        delay = min(self._settings.backoff_s * 2 ** (attempt - 1), self._settings.max_backoff_s)
        return delay * (1 + random.random() * 0.2)

    def deliver(self, request_id: str) -> None:
        """One attempt for ``request_id``; records it, and schedules a retry if one is due."""
        meta = self._queue.meta(request_id)
        if not meta or meta.get("state") in ("delivered", "failed"):
            self._queue.drop(request_id)
            return
        attempt = int(meta.get("attempts", "0")) + 1
        url = meta["url"]
        state = self._store.get(request_id)
        started = time.time()
        entry: dict[str, Any] = {"attempt": attempt, "at": started, "url": redact(url)}
        if state is None:
            entry.update(outcome="failed", error="the job expired before its webhook was sent")
            self._finish(request_id, entry, "failed")
            return
        if state.status not in TERMINAL_STATUSES:
            self._queue.wait_for_run_end(request_id)  # re-opened meanwhile
            return
        body = state.model_dump_json(exclude_none=True).encode()
        timestamp = int(started)
        delivery_id = f"{request_id}:{self._queue.next_sequence(request_id)}"
        headers = {
            "Content-Type": "application/json",
            "X-Penguin12-Event": f"job.{state.status.value.lower()}",
            "X-Penguin12-Delivery": delivery_id,
        }
        if self._settings.secret:
            secret = webhook_secret(self._settings.secret, request_id)
            signature = sign(secret, timestamp, delivery_id, body)
            headers[SIGNATURE_HEADER] = f"t={timestamp},v2={signature}"
        retryable = True
        _deadline.at = time.monotonic() + self._settings.timeout_s
        try:
            with self._client.stream("POST", url, content=body, headers=headers) as response:
                entry["status_code"] = response.status_code
                ok = response.is_success
                if not ok:
                    entry["error"] = f"answered {response.status_code}"
                _drain(response)
        except UrlRefused as exc:
            ok, retryable = False, False
            entry["error"] = str(exc)
        except httpx.HTTPError as exc:
            if "status_code" in entry:  # the answer counted; only its body broke off
                ok = 200 <= entry["status_code"] < 300
            else:
                ok = False
                entry["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a resolver failure (UrlFetchFailed) and the like
            ok = False
            entry["error"] = str(exc) or type(exc).__name__
        finally:
            _deadline.at = None
        entry["duration_ms"] = round((time.time() - started) * 1000, 1)
        if ok:
            entry["outcome"] = "delivered"
            self._finish(request_id, entry, "delivered")
            log.info("webhook delivered (attempt %d)", attempt)
        elif retryable and attempt < self._settings.max_attempts:
            retry_at = time.time() + self._backoff(attempt)
            entry.update(outcome="retry", next_attempt_at=retry_at)
            DELIVERIES.labels(outcome="retry").inc()
            self._queue.record(request_id, entry, "pending", retry_at)
            log.info("webhook attempt %d failed (%s); retrying", attempt, entry.get("error"))
        else:
            entry["outcome"] = "failed"
            self._finish(request_id, entry, "failed")
            log.warning("webhook failed after %d attempt(s): %s", attempt, entry.get("error"))

    def _finish(
        self, request_id: str, entry: dict[str, Any], state: Literal["delivered", "failed"]
    ) -> None:
        DELIVERIES.labels(outcome=state).inc()
        self._queue.record(request_id, entry, state, None)


def _drain(response: httpx.Response) -> None:
    """Read a small answer so the connection can be reused; past `MAX_RESPONSE_BYTES`, stop
    (closing the response then drops the connection and the rest of the body with it)."""
    read = 0
    for chunk in response.iter_raw():
        read += len(chunk)
        if read > MAX_RESPONSE_BYTES:
            return


# ------------------------------------------------------------------------------ API


class DeliveryAttempt(BaseModel):
    attempt: int
    at: float
    url: str
    outcome: Literal["delivered", "retry", "failed"]
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None
    next_attempt_at: float | None = None


class DeliveryLog(BaseModel):
    request_id: str
    state: Literal["none", "waiting", "pending", "delivered", "failed"] = Field(
        description="none: no callback_url; waiting: the job has not finished; pending: queued or "
        "retrying; delivered; failed: gave up."
    )
    callback_url: str | None = Field(
        None, description="Without query string (it may hold secrets)."
    )
    attempts: list[DeliveryAttempt] = []
    next_attempt_at: float | None = None


router = APIRouter(prefix="/v1", tags=["status"], dependencies=[Depends(guard_public_route)])


def get_queue(request: Request) -> WebhookQueue:
    queue: WebhookQueue = request.app.state.webhook_queue
    return queue


@router.get(
    "/status/{request_id}/deliveries",
    response_model=DeliveryLog,
    response_model_exclude_none=True,
    summary="The webhook delivery log of a job",
    responses={404: {"model": ErrorResponse, "description": "Unknown or expired request id"}},
)
async def deliveries(
    request_id: Annotated[str, Path(min_length=1, max_length=64)],
    request: Request,
    queue: Annotated[WebhookQueue, Depends(get_queue)],
) -> DeliveryLog:
    store: JobStore = request.app.state.store
    owner = owner_filter(request)

    def read() -> DeliveryLog | None:
        state = store.get_for(request_id, owner)
        if state is None:
            return None
        url = queue.callback_url(request_id)
        if url is None:
            return DeliveryLog(request_id=request_id, state="none")
        meta = queue.meta(request_id)
        attempts = [DeliveryAttempt.model_validate(a) for a in queue.attempts(request_id)]
        if not meta:
            status: Literal["waiting", "pending", "delivered", "failed"] = (
                "pending" if state.status in TERMINAL_STATUSES else "waiting"
            )
        else:
            status = meta.get("state", "pending")  # type: ignore[assignment]
        next_at = meta.get("next_attempt_at")
        return DeliveryLog(
            request_id=request_id,
            state=status,
            callback_url=redact(url),
            attempts=attempts,
            next_attempt_at=float(next_at) if next_at else None,
        )

    log_ = await run_in_threadpool(read)
    if log_ is None:
        raise HTTPException(
            status_code=404,
            detail=f"No job with request_id {request_id!r}: it was never submitted or has expired.",
        )
    return log_


def install_webhooks(
    app: Any, client: redis.Redis, store: JobStore, retention_s: int
) -> tuple[WebhookQueue, WebhookDispatcher]:
    """Create the queue and the dispatcher (started), and put the queue on ``app.state``."""
    queue = WebhookQueue(client, retention_s)
    dispatcher = WebhookDispatcher(queue, store)
    app.state.webhook_queue = queue
    dispatcher.start()
    return queue, dispatcher
