"""The decode budget's queueing rules (pure logic: no image, no service)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from preprocessor.decoding import DecodeBusy, DecodeGate

MB = 2**20


def gate(**overrides: float) -> DecodeGate:
    settings = {"workers": 4, "budget_bytes": 100 * MB, "max_waiting": 8, "wait_timeout_s": 5.0}
    settings.update(overrides)
    return DecodeGate(**settings)  # type: ignore[arg-type]


def test_decodes_never_hold_more_than_the_budget_together() -> None:
    g = gate()
    peak = 0
    lock = threading.Lock()

    def work(cost: int) -> int:
        nonlocal peak
        with lock:
            peak = max(peak, g.in_use_bytes)
        time.sleep(0.05)
        return cost

    async def main() -> list[int]:
        costs = [60 * MB, 30 * MB, 50 * MB, 10 * MB, 90 * MB, 40 * MB]
        return await asyncio.gather(*(g.run(c, lambda c=c: work(c)) for c in costs))

    assert asyncio.run(main()) == [60 * MB, 30 * MB, 50 * MB, 10 * MB, 90 * MB, 40 * MB]
    assert peak <= 100 * MB
    assert g.in_use_bytes == 0 and g.waiting == 0
    g.close()


def test_a_full_queue_answers_busy_at_once() -> None:
    g = gate(max_waiting=2)
    release = threading.Event()

    async def main() -> tuple[int, str]:
        holder = asyncio.create_task(g.run(100 * MB, release.wait))
        await asyncio.sleep(0.05)
        waiters = [asyncio.create_task(g.run(10 * MB, lambda: None)) for _ in range(2)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(DecodeBusy) as busy:
            await g.run(10 * MB, lambda: None)
        refused_in = time.monotonic() - started
        release.set()
        await asyncio.gather(holder, *waiters)
        return busy.value.retry_after_s, f"{refused_in:.3f}"

    retry_after, refused_in = asyncio.run(main())
    assert retry_after > 0 and float(refused_in) < 0.5
    assert g.in_use_bytes == 0
    g.close()


def test_a_waiter_gives_up_after_its_timeout_and_leaves_the_queue() -> None:
    g = gate(wait_timeout_s=0.3)
    release = threading.Event()

    async def main() -> None:
        holder = asyncio.create_task(g.run(100 * MB, release.wait))
        await asyncio.sleep(0.05)
        with pytest.raises(DecodeBusy, match="busy"):
            await g.run(10 * MB, lambda: None)
        assert g.waiting == 0
        release.set()
        await holder
        assert await g.run(100 * MB, lambda: 7) == 7

    asyncio.run(main())
    assert g.in_use_bytes == 0
    g.close()


def test_an_abandoned_decode_keeps_its_memory_counted_until_its_thread_ends() -> None:
    g = gate()
    release = threading.Event()

    async def main() -> None:
        task = asyncio.create_task(g.run(80 * MB, release.wait))
        await asyncio.sleep(0.05)
        task.cancel()  # the client went away; the decode thread is still running
        await asyncio.sleep(0.05)
        assert g.in_use_bytes == 80 * MB
        release.set()
        for _ in range(100):
            if g.in_use_bytes == 0:
                break
            await asyncio.sleep(0.01)
        assert g.in_use_bytes == 0

    asyncio.run(main())
    g.close()


def test_waiters_are_served_in_arrival_order() -> None:
    g = gate(workers=1)
    release = threading.Event()
    order: list[str] = []

    async def main() -> None:
        holder = asyncio.create_task(g.run(100 * MB, release.wait))
        await asyncio.sleep(0.05)
        big = asyncio.create_task(g.run(90 * MB, lambda: order.append("big")))
        await asyncio.sleep(0.01)
        small = asyncio.create_task(g.run(5 * MB, lambda: order.append("small")))
        await asyncio.sleep(0.05)
        assert order == []  # the small one does not jump the queue
        release.set()
        await asyncio.gather(holder, big, small)

    asyncio.run(main())
    assert order == ["big", "small"]
    g.close()
