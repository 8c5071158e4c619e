"""Decoding under a memory budget: small files that decode big cannot exhaust the process.

A 77 KB PNG or a 2 KB WebP may declare 6300x6300 pixels, which costs 80-640 MiB to decode. So
every decode first says what it will cost (`penguin12.imaging.probe_image`, from the header) and
then waits for that much of a shared budget:

- an image whose decode alone needs more than ``max_decode_memory_mb`` is refused with 413;
- decodes run on their own small thread pool (``decode_workers``), never on the pool that serves
  health checks and Redis calls, and together never hold more than ``decode_memory_budget_mb``;
- a request waits its turn in a first-come, first-served queue of at most ``decode_queue_max``
  waiters, for at most ``decode_queue_timeout_s``; past either bound it gets 503 + Retry-After
  (the server is busy, the image is fine: retrying later works);
- an ordinary photo is not stuck behind a bomb: a small decode (at most 1/16 of the budget) that
  fits in what is free may go ahead of a large one at the head of the queue, but only during the
  large one's first ``OVERTAKE_WINDOW_S`` of waiting, so the large one cannot starve.

A waiter keeps its place when it is cancelled only until it leaves the queue; a decode that has
started keeps its share of the budget until its thread really finishes, even if the client has
gone, because that memory is in use until then.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from penguin12.metrics import DECODE_MEMORY, DECODE_QUEUE, DECODE_REFUSED

log = logging.getLogger("penguin12.preprocessor.decoding")
T = TypeVar("T")

# How long a large decode at the head of the queue lets small ones go ahead of it.
OVERTAKE_WINDOW_S = 5.0


@dataclass(eq=False)
class _Waiter:
    cost: int
    granted: asyncio.Future[None]
    since: float


class DecodeBusy(Exception):
    """No room to decode now; ``retry_after_s`` is a hint for the client."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DecodeGate:
    """A byte budget shared by concurrent decodes, a FIFO queue, and a dedicated thread pool."""

    def __init__(
        self,
        *,
        workers: int,
        budget_bytes: int,
        max_waiting: int,
        wait_timeout_s: float,
    ):
        self.budget_bytes = budget_bytes
        self._max_waiting = max_waiting
        self._wait_timeout_s = wait_timeout_s
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="decode"
        )
        self._in_use = 0
        self._small = budget_bytes // 16
        self._waiters: collections.deque[_Waiter] = collections.deque()

    @property
    def in_use_bytes(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def run(self, cost: int, work: Callable[[], T]) -> T:
        """Run ``work`` on the decode pool once ``cost`` bytes of the budget are free."""
        cost = min(cost, self.budget_bytes)  # the per-image limit is checked before this
        await self._acquire(cost)
        loop = asyncio.get_running_loop()
        try:
            future = self._executor.submit(work)
        except BaseException:
            self._release(cost)
            raise
        # Released when the thread is done, not when the awaiting request is: a client that
        # hangs up does not stop the decode, so its memory stays counted until it ends.
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release, cost))
        return await asyncio.wrap_future(future)

    async def _acquire(self, cost: int) -> None:
        if self._in_use + cost <= self.budget_bytes and (
            not self._waiters or self._may_overtake(cost, time.monotonic())
        ):
            self._in_use += cost
            DECODE_MEMORY.set(self._in_use)
            return
        if len(self._waiters) >= self._max_waiting:
            DECODE_REFUSED.labels(reason="queue_full").inc()
            raise DecodeBusy(
                f"The server is decoding as many images as it can hold in memory and "
                f"{len(self._waiters)} more are waiting; nothing was queued. Retry shortly.",
                retry_after_s=2,
            )
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        entry = _Waiter(cost, granted, started)
        self._waiters.append(entry)
        DECODE_QUEUE.set(len(self._waiters))
        try:
            await asyncio.wait_for(asyncio.shield(granted), self._wait_timeout_s)
        except TimeoutError:
            if granted.done():  # granted at the last moment: keep it
                return
            DECODE_REFUSED.labels(reason="timeout").inc()
            raise DecodeBusy(
                f"The server is busy decoding other images (waited "
                f"{time.monotonic() - started:.0f} s); nothing was queued. Retry shortly.",
                retry_after_s=5,
            ) from None
        except BaseException:
            if granted.done() and not granted.cancelled():
                self._release(cost)  # granted, but the request is gone
            raise
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
                self._grant()
            DECODE_QUEUE.set(len(self._waiters))

    def _release(self, cost: int) -> None:
        self._in_use -= cost
        self._grant()
        DECODE_MEMORY.set(self._in_use)

    def _may_overtake(self, cost: int, now: float) -> bool:
        """Whether a small decode may go ahead of the waiter at the head of the queue."""
        return cost <= self._small and now - self._waiters[0].since < OVERTAKE_WINDOW_S

    def _grant(self) -> None:
        """Admit waiters in arrival order while the one at the head fits; then small ones that
        fit, while the head is within its overtaking window."""
        while self._waiters:
            head = self._waiters[0]
            if head.granted.done():  # its request went away
                self._waiters.popleft()
                continue
            if self._in_use + head.cost > self.budget_bytes:
                break
            self._waiters.popleft()
            self._in_use += head.cost
            head.granted.set_result(None)
        now = time.monotonic()
        for waiter in list(self._waiters)[1:]:
            if (
                self._may_overtake(waiter.cost, now)
                and not waiter.granted.done()
                and self._in_use + waiter.cost <= self.budget_bytes
            ):
                self._waiters.remove(waiter)
                self._in_use += waiter.cost
                waiter.granted.set_result(None)
        DECODE_MEMORY.set(self._in_use)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
