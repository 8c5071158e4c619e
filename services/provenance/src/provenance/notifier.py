"""One Redis subscription per process to the job store's change events (`JobStore.apply`
publishes every applied change), fanned out to the requests waiting on those jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import redis
import redis.asyncio as aioredis
from prometheus_client import Gauge

from penguin12.schemas import TERMINAL_STATUSES
from penguin12.state import JOB_EVENTS_PATTERN, changed_job

log = logging.getLogger("penguin12.provenance.live")

WAITERS = Gauge(
    "penguin12_status_waiters",
    "Requests waiting for a job to change (long-poll and Server-Sent Events).",
)

_FINAL = frozenset(status.value for status in TERMINAL_STATUSES)


class StatusNotifier:
    """One Redis pattern subscription per process, fanned out to the waiting requests."""

    def __init__(self, redis_url: str, options: dict[str, Any]):
        self._url = redis_url
        self._options = options
        # Per job: the events to set on any change, and those to set only on a final status.
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._final_waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="status-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def watch(self, request_id: str, *, final_only: bool = False) -> Iterator[asyncio.Event]:
        """An event set whenever ``request_id`` changes (with ``final_only``: only when it
        becomes COMPLETED or FAILED, so a `until=final` long-poll is not woken, and does not
        re-read the state, at every step). Register before reading the state."""
        self.start()
        event = asyncio.Event()
        table = self._final_waiters if final_only else self._waiters
        table[request_id].add(event)
        WAITERS.inc()
        try:
            yield event
        finally:
            WAITERS.dec()
            waiters = table.get(request_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del table[request_id]

    def _wake(self, request_id: str | None = None, status: str | None = None) -> None:
        """Wake the waiters of ``request_id`` (None: of every job) for a change to ``status``
        (None: unknown, which wakes every waiter)."""
        final = status is None or status in _FINAL
        for table in (self._waiters, self._final_waiters) if final else (self._waiters,):
            targets = table.values() if request_id is None else [table.get(request_id)]
            for waiters in targets:
                for event in waiters or ():
                    event.set()

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            client = aioredis.Redis.from_url(self._url, socket_connect_timeout=2, **self._options)
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(JOB_EVENTS_PATTERN)
                backoff = 0.2
                self._wake()  # changes may have happened while we were not subscribed
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message and message.get("type") == "pmessage":
                        channel, data = message["channel"], message.get("data")
                        if isinstance(channel, bytes):
                            channel = channel.decode()
                        if isinstance(data, bytes):
                            data = data.decode(errors="replace")
                        # The message is the status the job moved to (JobStore.apply publishes it).
                        status = data if isinstance(data, str) else None
                        self._wake(changed_job(str(channel)), status)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                log.warning("status event subscription lost (%s); retrying in %.1fs", exc, backoff)
                self._wake()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
