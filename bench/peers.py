"""What the peer benchmarks (ours vs a sync endpoint, ours vs BentoML) share.

Both measure our pipeline the same way, drive the peer with the same closed-loop users over one
keep-alive connection each, sample the peer's CPU only during the measured window, and report
the same ratios: one copy here keeps the two comparisons measuring alike.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bench.client import HttpConn
from bench.common import Mode, ProcMonitor, Result, log, parse_args, wait_quiet
from bench.corpus import QUICK_CORPUS, describe, load_corpus
from bench.pipeline_saturated import measure
from bench.stack import BenchStack

OURS_SETUP = "`make run` defaults, 1 feature extractor; users wait by long-poll on status_url"

Body = tuple[str, bytes]


@dataclass
class PeerRun:
    """One comparison's shape: its arguments, users, measuring window and images."""

    args: argparse.Namespace
    mode: Mode
    result: Result
    clients: list[int]
    warmup_s: float
    measure_s: float
    corpus: list[bytes]

    @classmethod
    def start(
        cls,
        doc: str,
        scenario: str,
        title: str,
        *,
        default_clients: str,
        quick_measure_s: float,
        more_args: Callable[[argparse.ArgumentParser], None] | None = None,
    ) -> PeerRun:
        """Parse the command line (``--clients`` and the peer's own options); load the images."""

        def add(parser: argparse.ArgumentParser) -> None:
            parser.add_argument(
                "--clients", default=default_clients, help="concurrent users, e.g. 32,128"
            )
            if more_args is not None:
                more_args(parser)

        args, mode = parse_args(doc, add)
        return cls(
            args,
            mode,
            Result(scenario, title, mode),
            [int(c) for c in args.clients.split(",")],
            mode.pick(5.0, 10.0),
            mode.pick(quick_measure_s, 40.0),
            load_corpus(mode.pick(QUICK_CORPUS, 3000)),
        )

    def configure(self, **peer: Any) -> None:
        """The result's config block: load shape, corpus, how ours runs, then the peer's notes."""
        self.result.config = {
            "clients": self.clients,
            "warmup_s": self.warmup_s,
            "measure_s": self.measure_s,
            "corpus": describe(self.corpus),
            "ours": OURS_SETUP,
            **peer,
        }


def ratio(ours: float, theirs: float) -> float | None:
    """Ours ÷ theirs to three places; None when the peer completed nothing."""
    return round(ours / theirs, 3) if theirs else None


def measure_ours(
    stack: BenchStack,
    bodies: list[Body],
    clients: list[int],
    *,
    warmup_s: float,
    measure_s: float,
    quiet_s: float,
    what: str = "ours",
) -> dict[str, Any]:
    """Our pipeline at each user count, embedding cache emptied before each (same images)."""
    quiet = wait_quiet(stack.pids().values(), quiet_s)
    runs: dict[str, Any] = {}
    for c in clients:
        stack.infra.redis(1).flushdb()  # same images for every run: keep the cache cold
        log(f"{what}, {c} users")
        run = asyncio.run(measure(stack, bodies, clients=c, warmup_s=warmup_s, measure_s=measure_s))
        run["quiet"] = quiet
        runs[f"c{c}"] = run
        log(
            f"  ours c={c}: {run['completed_per_s']} img/s, POST p99 "
            f"{run['accept_latency'].get('p99_ms')} ms, e2e p99 "
            f"{run['end_to_end_latency'].get('p99_ms')} ms, {run['system_cpu_ms_per_image']} "
            f"CPU-ms/img, others used {run['cpu']['foreign_busy_cores']} cores"
        )
    return runs


def run_watched(
    monitor: ProcMonitor,
    warmup_s: float,
    measure_s: float,
    load: Callable[[], Coroutine[Any, Any, dict[str, Any]]],
) -> dict[str, Any]:
    """Run one closed-loop ``load`` with ``monitor`` sampling the peer only in the window."""

    async def go() -> dict[str, Any]:
        async def watch() -> dict[str, Any]:
            await asyncio.sleep(warmup_s)
            monitor.start()
            await asyncio.sleep(measure_s)
            return monitor.stop()

        watched = asyncio.create_task(watch())
        run = await load()
        run["cpu"] = await watched
        return run

    return asyncio.run(go())


async def closed_loop_users(
    port: int,
    bodies: list[Body],
    *,
    clients: int,
    until: float,
    grace_s: float,
    one_job: Callable[[HttpConn, Body], Awaitable[None]],
) -> None:
    """``clients`` users, each on its own connection, doing ``one_job`` per image back to back
    until the monotonic time ``until`` or the corpus runs out; stragglers are cancelled after
    ``grace_s`` seconds in all."""
    cursor = 0

    async def user() -> None:
        nonlocal cursor
        conn = HttpConn("127.0.0.1", port, timeout_s=300)
        try:
            while time.monotonic() < until and cursor < len(bodies):
                body = bodies[cursor]
                cursor += 1
                await one_job(conn, body)
        finally:
            await conn.close()

    tasks = [asyncio.create_task(user()) for _ in range(clients)]
    _, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:
        task.cancel()
