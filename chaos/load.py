"""Steady load during a fault: paced submitters that keep sending through an outage, and a poller.

The benchmarks' closed loop (bench/load.py) waits for each job to finish before it sends the
next, so in an outage it stops sending: exactly when chaos must keep submitting, to see the 503s
and to catch a 202 that would be a lie. Chaos therefore paces its submitters on the HTTP answer
alone and follows every accepted job's statuses separately (the poller). The HTTP client
(bench/client.py) and the images (bench/corpus.py: real photo variants, each unique after
preprocessing so the embedding cache rarely hits) are the benchmarks' own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

from bench.client import HttpConn, multipart_body
from bench.corpus import load_corpus
from chaos.config import PREPROCESSOR, PROVENANCE, api_headers
from chaos.tracking import MISSING, Tracker

SUBMIT_TIMEOUT_S = 20.0
STATUS_TIMEOUT_S = 5.0
# What a request that got no HTTP answer raises: refused, reset, cut short, or garbled.
NO_ANSWER = (OSError, EOFError, ValueError, IndexError)


def photos(count: int) -> list[bytes]:
    """``count`` distinct real photo variants (JPEG), made once and cached by the benchmarks."""
    return load_corpus(count)


def _connection(url: str, timeout_s: float) -> HttpConn:
    parts = urlsplit(url)
    return HttpConn(parts.hostname or "127.0.0.1", parts.port or 80, timeout_s, api_headers())


class _Background:
    """An asyncio loop in a thread of its own; the scenarios themselves stay synchronous."""

    def __init__(self, name: str) -> None:
        self.thread = threading.Thread(target=self._run_loop, daemon=True, name=name)
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        self.thread.start()
        self._started.wait(30)

    def stop(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=30)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run_loop(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started.set()
        await self.run()

    async def run(self) -> None:
        raise NotImplementedError

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), max(0.0, seconds))


class Load(_Background):
    """Closed-loop submitters (each waits for its answer), paced, bounded in count and time."""

    def __init__(
        self,
        tracker: Tracker,
        images: list[bytes],
        clients: int,
        max_submissions: int,
        rate_per_client: float,
    ):
        super().__init__("chaos-load")
        self.tracker = tracker
        self.interval = 1.0 / rate_per_client
        self.uploads = [multipart_body(data, "photo.jpg") for data in images]
        self.clients = clients
        self.max_submissions = max_submissions
        self.counts: Counter[str] = Counter()
        self.codes: Counter[int] = Counter()

    async def run(self) -> None:
        await asyncio.gather(*(self._client(i) for i in range(self.clients)))

    def _take(self) -> bool:
        if self.counts["submitted"] >= self.max_submissions:
            return False
        self.counts["submitted"] += 1
        return True

    async def _client(self, index: int) -> None:
        rng = random.Random(index)
        conn = _connection(PREPROCESSOR, SUBMIT_TIMEOUT_S)
        next_at = time.monotonic()
        try:
            while not self.stopping and self._take():
                content_type, body = rng.choice(self.uploads)
                next_at += self.interval
                pause = await self._submit(conn, content_type, body)
                now = time.monotonic()
                next_at = max(next_at, now - self.interval)  # no burst to catch up after a stall
                await self.pause(max(pause, next_at - now))
        finally:
            await conn.close()

    async def _submit(self, conn: HttpConn, content_type: str, body: bytes) -> float:
        """One submission, counted by its answer; how long to pause before the next."""
        try:
            code, payload = await conn.request("POST", "/v1/infer", body, content_type)
        except TimeoutError:
            # No answer in time: the job may or may not be queued; never counted accepted.
            self.counts["timeouts"] += 1
            return 0.0
        except NO_ANSWER:
            self.counts["unavailable"] += 1  # no HTTP answer: the preprocessor is down
            return 0.5
        self.tracker.answered(code)
        self.codes[code] += 1
        if code == 202:
            self.tracker.add(json.loads(payload)["request_id"])
            self.counts["accepted"] += 1
            return 0.0
        if code in (429, 503):
            self.counts["refused"] += 1
            return 1.0  # Retry-After says at least a second; the load waits no longer
        self.counts["other"] += 1
        return 0.5


class Poller(_Background):
    """Follows every open job's status until it is terminal."""

    def __init__(self, tracker: Tracker):
        super().__init__("chaos-poller")
        self.tracker = tracker

    async def poll_once(self, conn: HttpConn, request_id: str) -> None:
        try:
            code, body = await conn.get_json(f"/v1/status/{request_id}")
        except NO_ANSWER:
            self.tracker.status_error(None)
            return
        if code == 200:
            if body["status"] == "FAILED":
                self.tracker.record_failure(request_id, str(body.get("error")))
            self.tracker.observe(request_id, body["status"])
        elif code == 404:
            self.tracker.observe(request_id, MISSING)
        elif code >= 500:
            self.tracker.status_error(code)

    async def run(self) -> None:
        conn = _connection(PROVENANCE, STATUS_TIMEOUT_S)
        try:
            while not self.stopping:
                ids = self.tracker.open_ids()
                for request_id in ids:
                    if self.stopping:
                        return
                    await self.poll_once(conn, request_id)
                await self.pause(0.2 if ids else 0.5)
        finally:
            await conn.close()
