"""Delivering due webhooks on a thread pool beside the status consumer: at most a few threads per
receiver, one total deadline per attempt, retries with backoff, every attempt logged."""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx
import redis
from prometheus_client import Counter

from penguin12.logs import request_context
from penguin12.security import sign_webhook, webhook_secret
from penguin12.settings import WebhookSettings
from penguin12.ssrf import UrlPolicy, UrlRefused, redact
from penguin12.state import JobStore, is_final
from provenance.webhooks.queue import WebhookQueue
from provenance.webhooks.transport import attempt_deadline, delivery_client, receiver_of

log = logging.getLogger("penguin12.provenance.webhooks")

SIGNATURE_HEADER = "X-Penguin12-Signature"
# The most of a receiver's answer that is read (for connection reuse); the rest is dropped.
MAX_RESPONSE_BYTES = 64 * 1024

DELIVERIES = Counter(
    "penguin12_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, retry, failed).",
    ["outcome"],
)


class WebhookDispatcher:
    """Delivers due webhooks on a thread pool; start() at service start, stop() at shutdown."""

    # Claimed per round; those whose receiver is busy go back to the queue for a while.
    CLAIM_BATCH = 64

    def __init__(
        self, queue: WebhookQueue, store: JobStore, settings: WebhookSettings, policy: UrlPolicy
    ):
        self._queue = queue
        self._store = store
        self._settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)
        self._pool = ThreadPoolExecutor(settings.webhook_concurrency, "webhook")
        self._inflight = 0
        self._per_receiver: dict[str, int] = {}
        self._lock = threading.Lock()
        self._client = delivery_client(
            policy, settings.webhook_timeout_s, settings.webhook_concurrency
        )
        # A leased delivery comes due again after this long if its process died mid-delivery.
        self._lease_s = settings.webhook_timeout_s * 2 + 30

    def start(self) -> None:
        if not self._settings.webhook_secret:
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
                free = self._settings.webhook_concurrency - self._inflight
            try:
                claimed = self._queue.claim(self.CLAIM_BATCH, self._lease_s) if free > 0 else []
                started = self._dispatch(claimed)
            except redis.RedisError as exc:
                log.warning("webhook queue unavailable: %s", exc)
                self._stop.wait(2.0)
                continue
            if not started:
                wait = self._settings.webhook_poll_interval_s
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
                pool_full = self._inflight >= self._settings.webhook_concurrency
                busy = self._per_receiver.get(receiver, 0) >= self._settings.webhook_per_receiver
                if not (pool_full or busy):
                    self._inflight += 1
                    self._per_receiver[receiver] = self._per_receiver.get(receiver, 0) + 1
            if pool_full or busy:
                # A busy receiver's deliveries wait about as long as one attempt can take.
                delay = (
                    self._settings.webhook_timeout_s / 2
                    if busy
                    else self._settings.webhook_poll_interval_s
                )
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
        settings = self._settings
        delay = min(settings.webhook_backoff_s * 2 ** (attempt - 1), settings.webhook_max_backoff_s)
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
        if not is_final(state.status):
            self._queue.wait_for_run_end(request_id)  # re-opened meanwhile
            return
        body = state.model_dump_json(exclude_none=True).encode()
        delivery_id = f"{request_id}:{self._queue.next_sequence(request_id)}"
        headers = {
            "Content-Type": "application/json",
            "X-Penguin12-Event": f"job.{state.status.value.lower()}",
            "X-Penguin12-Delivery": delivery_id,
        }
        if self._settings.webhook_secret:
            secret = webhook_secret(self._settings.webhook_secret, request_id)
            timestamp = int(started)
            signature = sign_webhook(secret, timestamp, delivery_id, body)
            headers[SIGNATURE_HEADER] = f"t={timestamp},v2={signature}"
        ok, retryable = self._post(url, body, headers, entry)
        entry["duration_ms"] = round((time.time() - started) * 1000, 1)
        if ok:
            entry["outcome"] = "delivered"
            self._finish(request_id, entry, "delivered")
            log.info("webhook delivered (attempt %d)", attempt)
        elif retryable and attempt < self._settings.webhook_max_attempts:
            retry_at = time.time() + self._backoff(attempt)
            entry.update(outcome="retry", next_attempt_at=retry_at)
            DELIVERIES.labels(outcome="retry").inc()
            self._queue.record(request_id, entry, "pending", retry_at)
            log.info("webhook attempt %d failed (%s); retrying", attempt, entry.get("error"))
        else:
            entry["outcome"] = "failed"
            self._finish(request_id, entry, "failed")
            log.warning("webhook failed after %d attempt(s): %s", attempt, entry.get("error"))

    def _post(
        self, url: str, body: bytes, headers: dict[str, str], entry: dict[str, Any]
    ) -> tuple[bool, bool]:
        """POST under the attempt's deadline; notes the answer or the error in ``entry``;
        returns (delivered, worth retrying)."""
        try:
            with (
                attempt_deadline(self._settings.webhook_timeout_s),
                self._client.stream("POST", url, content=body, headers=headers) as response,
            ):
                entry["status_code"] = response.status_code
                if not response.is_success:
                    entry["error"] = f"answered {response.status_code}"
                _drain(response)
                return response.is_success, True
        except UrlRefused as exc:
            entry["error"] = str(exc)
            return False, False
        except httpx.HTTPError as exc:
            if "status_code" in entry:  # the answer counted; only its body broke off
                return 200 <= entry["status_code"] < 300, True
            entry["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return False, True
        except Exception as exc:  # a resolver failure (UrlFetchFailed) and the like
            entry["error"] = str(exc) or type(exc).__name__
            return False, True

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
