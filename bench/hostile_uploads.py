"""Scenario 8 — hostile uploads: small files that decode big, all at once (issue #11, item 1).

A real preprocessor (defaults: 10 MiB uploads, 40 MP, the decode budgets) gets ``--requests``
uploads at the same moment, all within the documented upload and pixel limits and each one
decoding to tens or hundreds of megabytes: a 77 KB 16-bit PNG of 6300x6300, a 34-byte lossless
WebP of 5400x5400, a 308 KB 16-bit RGBA PNG, an RLE BMP, a flat JPEG, and a 6300x6300 WebP that the
per-image memory budget must refuse (413). Measured: the preprocessor's peak RSS during the burst
(VmHWM, reset first through /proc/<pid>/clear_refs), every answer's status, whether the process
is still alive and ready, and whether every accepted job is on Kafka (jobs lost). Targets: peak
RSS under 1 GiB, no request unanswered, no 5xx other than 503-with-Retry-After, no job lost.

    uv run python -m bench.hostile_uploads [--requests 32] [--env KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, Result, Target, log, parse_args

SCENARIO = "8_hostile_uploads"
RSS_GOAL_MB = 1024.0

# The bombs are the fuzz corpus's own builders (tests/corpus/nasty.py, which the suite runs):
# one definition of each file, so this benchmark, `make chaos` and the tests send the same bytes.
sys.path.insert(0, str(ROOT / "tests"))
from corpus.nasty import (  # noqa: E402
    bmp_rle8_bomb,
    png_flat_bomb,
    webp_lossless_bomb,
)


def _jpeg_flat(side: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 90, 90)).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


# name -> (builder, filename): every one within 10 MiB and 40 MP.
MIX: dict[str, tuple[Callable[[], bytes], str]] = {
    "png16-gray-6300": (lambda: png_flat_bomb(6300), "a.png"),
    "webp-lossless-5400": (lambda: webp_lossless_bomb(5400), "a.webp"),
    "png16-rgba-6300": (lambda: png_flat_bomb(6300, channels=4), "a.png"),
    "webp-lossless-6300": (lambda: webp_lossless_bomb(6300), "a.webp"),
    "bmp-rle8-6300": (lambda: bmp_rle8_bomb(6300), "a.bmp"),
    "jpeg-flat-6300": (lambda: _jpeg_flat(6300), "a.jpg"),
}


def build_mix(requests: int) -> list[tuple[str, bytes, str]]:
    """``requests`` uploads, cycling through MIX (each file built once)."""
    built = {name: (make(), filename) for name, (make, filename) in MIX.items()}
    names = list(MIX)
    return [(names[i % len(names)], *built[names[i % len(names)]]) for i in range(requests)]


def memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak since the last reset) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak is the burst's own."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Outcome:
    name: str
    status: int | None  # None: no answer (connection error or timeout)
    seconds: float
    detail: str = ""
    retry_after: str | None = None
    request_id: str | None = None


@dataclass
class Burst:
    outcomes: list[Outcome] = field(default_factory=list)
    rss_before: int = 0
    peak_rss: int = 0
    peak_reset: bool = False
    alive_after: bool = False
    ready_after: bool = False

    @property
    def statuses(self) -> dict[str, int]:
        counts = collections.Counter(str(o.status) for o in self.outcomes)
        return dict(sorted(counts.items()))

    @property
    def unanswered(self) -> int:
        return sum(1 for o in self.outcomes if o.status is None)

    @property
    def server_errors(self) -> int:
        return sum(1 for o in self.outcomes if o.status is not None and o.status >= 500)

    @property
    def bad_server_errors(self) -> int:
        """5xx other than a 503 that says when to retry."""
        return sum(
            1
            for o in self.outcomes
            if o.status is not None and o.status >= 500 and not (o.status == 503 and o.retry_after)
        )

    @property
    def accepted(self) -> int:
        return sum(1 for o in self.outcomes if o.status == 202)


async def _fire(
    base_url: str,
    uploads: list[tuple[str, bytes, str]],
    timeout_s: float,
    headers: dict[str, str] | None = None,
) -> list[Outcome]:
    start = asyncio.Event()
    limits = httpx.Limits(max_connections=len(uploads) + 4)

    async with httpx.AsyncClient(
        base_url=base_url, timeout=timeout_s, limits=limits, headers=headers
    ) as client:

        async def one(name: str, data: bytes, filename: str) -> Outcome:
            await start.wait()
            began = time.monotonic()
            try:
                response = await client.post(
                    "/v1/infer", files={"file": (filename, data, "application/octet-stream")}
                )
            except httpx.HTTPError as exc:
                return Outcome(name, None, time.monotonic() - began, repr(exc))
            detail, request_id = "", None
            if response.status_code == 202:
                request_id = str(response.json()["request_id"])
            else:
                try:
                    detail = str(response.json().get("detail", ""))[:200]
                except ValueError:
                    detail = response.text[:200]
            return Outcome(
                name,
                response.status_code,
                time.monotonic() - began,
                detail,
                response.headers.get("Retry-After"),
                request_id,
            )

        tasks = [asyncio.create_task(one(*u)) for u in uploads]
        await asyncio.sleep(0.2)  # every task waiting at the start line
        start.set()
        return await asyncio.gather(*tasks)


def burst(
    base_url: str,
    pid: int,
    uploads: list[tuple[str, bytes, str]],
    timeout_s: float = 300.0,
    headers: dict[str, str] | None = None,
) -> Burst:
    """Send every upload at once to the preprocessor at ``base_url`` (process ``pid``)."""
    result = Burst(rss_before=memory(pid)["VmRSS"])
    result.peak_reset = reset_peak(pid)
    sampled = [0]
    stop = threading.Event()

    def sample() -> None:  # a fallback peak where clear_refs is not allowed
        while not stop.wait(0.02):
            try:
                sampled[0] = max(sampled[0], memory(pid)["VmRSS"])
            except OSError:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result.outcomes = asyncio.run(_fire(base_url, uploads, timeout_s, headers))
    finally:
        stop.set()
        sampler.join()
    try:
        mem = memory(pid)
        result.alive_after = True
        result.peak_rss = mem["VmHWM"] if result.peak_reset else max(sampled[0], mem["VmRSS"])
    except OSError:
        result.alive_after = False
        result.peak_rss = sampled[0]
    try:
        result.ready_after = httpx.get(f"{base_url}/readyz", timeout=10).status_code == 200
    except httpx.HTTPError:
        result.ready_after = False
    return result


def topic_records(bootstrap: str, topic: str) -> int:
    """How many records the topic holds (sum of high watermarks; it is fresh)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{uuid.uuid4().hex}"})
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in meta.partitions
        )
    finally:
        consumer.close()


@contextmanager
def preprocessor(extra_env: dict[str, str]) -> Iterator[tuple[str, int, str, str]]:
    """A real preprocessor process on fresh topics; yields (base url, pid, bootstrap, topic)."""
    from bench.stack import BenchStack, infra
    from penguin12_devstack.ports import free_port
    from penguin12_devstack.services import start_service

    with infra() as inf:
        stack = BenchStack(inf, "hostile_uploads", extra_env=extra_env)
        env = stack.env()
        port = free_port()
        env["PENGUIN12_PORT"] = str(port)
        stack.log_dir.mkdir(parents=True, exist_ok=True)
        proc = start_service(
            "preprocessor",
            kind="preprocessor",
            env=env,
            health_url=f"http://127.0.0.1:{port}/readyz",
            run_dir=stack.log_dir / "run" / "preprocessor",
            log_file=stack.log_dir / "preprocessor.log",
        )
        stack.processes["preprocessor"] = proc
        try:
            proc.wait_ready(180)
            yield (
                f"http://127.0.0.1:{port}",
                proc.process.pid,
                inf.bootstrap,
                env["PENGUIN12_TOPIC_PREPROCESSED"],
            )
        finally:
            stack.stop()


def figures(b: Burst, accepted_on_kafka: int | None) -> dict[str, Any]:
    by_name: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for o in b.outcomes:
        by_name[o.name][str(o.status)] += 1
    details = sorted({f"{o.status}: {o.detail}" for o in b.outcomes if o.status != 202})
    return {
        "requests": len(b.outcomes),
        "statuses": b.statuses,
        "statuses_by_file": {k: dict(v) for k, v in by_name.items()},
        "refusals": details,
        "unanswered": b.unanswered,
        "server_errors_5xx": b.server_errors,
        "server_errors_without_retry_after": b.bad_server_errors,
        "rss_before_mb": round(b.rss_before / 2**20, 1),
        "peak_rss_mb": round(b.peak_rss / 2**20, 1),
        "peak_from": "VmHWM after clear_refs" if b.peak_reset else "VmRSS sampled every 20 ms",
        "alive_after": b.alive_after,
        "ready_after": b.ready_after,
        "accepted": b.accepted,
        "accepted_on_kafka": accepted_on_kafka,
        "jobs_lost": None if accepted_on_kafka is None else b.accepted - accepted_on_kafka,
        "seconds_max": round(max((o.seconds for o in b.outcomes), default=0.0), 2),
    }


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=32, help="uploads sent at once")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the preprocessor")


def main() -> None:
    args, mode = parse_args(__doc__ or "", _add_args)
    extra = dict(item.split("=", 1) for item in args.env)
    uploads = build_mix(args.requests)
    result = Result(SCENARIO, "hostile uploads: small files that decode big, all at once", mode)
    result.config = {
        "requests": args.requests,
        "mix": {name: len(data) for name, data, _ in uploads[: len(MIX)]},
        "env": extra,
    }
    with preprocessor(extra) as (base_url, pid, bootstrap, topic):
        log(f"{args.requests} uploads at once against pid {pid}")
        b = burst(base_url, pid, uploads)
        on_kafka = topic_records(bootstrap, topic)
    result.figures = figures(b, on_kafka)
    lost = b.accepted - on_kafka
    result.targets = [
        Target("peak RSS (MB)", b.peak_rss / 2**20, RSS_GOAL_MB, higher_is_better=False),
        Target(
            "requests answered (fraction)",
            1 - b.unanswered / max(1, len(b.outcomes)),
            1.0,
            note="an answer is any HTTP status",
        ),
        Target(
            "5xx without Retry-After",
            float(b.bad_server_errors),
            0.0,
            higher_is_better=False,
        ),
        Target("jobs lost", float(lost), 0.0, higher_is_better=False),
        Target("process alive and ready after", float(b.alive_after and b.ready_after), 1.0),
    ]
    result.write(
        f"{len(b.outcomes)} uploads at once: {b.statuses}, peak RSS "
        f"{b.peak_rss / 2**20:.0f} MB (from {b.rss_before / 2**20:.0f}), "
        f"{b.server_errors} 5xx, {lost} jobs lost"
    )


if __name__ == "__main__":
    main()
