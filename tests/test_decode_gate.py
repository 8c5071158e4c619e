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
        first = asyncio.create_task(g.run(90 * MB, lambda: order.append("first")))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(g.run(60 * MB, lambda: order.append("second")))
        await asyncio.sleep(0.05)
        assert order == []
        release.set()
        await asyncio.gather(holder, first, second)

    asyncio.run(main())
    assert order == ["first", "second"]
    g.close()


def test_a_small_decode_goes_ahead_of_a_waiting_bomb_but_not_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An ordinary photo (a few MB) is not stuck behind a 155 MB decode that waits for room...
    import preprocessor.decoding as decoding

    g = gate(budget_bytes=160 * MB)  # "small" is up to 10 MB
    release = threading.Event()
    order: list[str] = []

    async def main() -> None:
        holder = asyncio.create_task(g.run(70 * MB, release.wait))
        await asyncio.sleep(0.05)
        bomb = asyncio.create_task(g.run(155 * MB, lambda: order.append("bomb")))
        await asyncio.sleep(0.05)
        await g.run(5 * MB, lambda: order.append("photo"))  # fits now, goes ahead
        assert order == ["photo"]
        # ...but only within the bomb's overtaking window: then the order is strict again.
        monkeypatch.setattr(decoding, "OVERTAKE_WINDOW_S", 0.0)
        late = asyncio.create_task(g.run(8 * MB, lambda: order.append("late photo")))
        await asyncio.sleep(0.1)
        assert order == ["photo"]
        release.set()
        await asyncio.gather(holder, bomb, late)

    asyncio.run(main())
    assert order == ["photo", "bomb", "late photo"]
    assert g.in_use_bytes == 0
    g.close()
