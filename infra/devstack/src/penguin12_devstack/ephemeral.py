"""Kafka and Redis for one test session or benchmark run: free ports, a data folder, stopped after."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from penguin12_devstack.kafka import KafkaBroker, ensure_kafka_jars, start_kafka
from penguin12_devstack.ports import free_ports
from penguin12_devstack.redis_server import RedisServer, start_redis

__all__ = ["ephemeral_infra", "start_kafka_in"]


def start_kafka_in(
    base: Path, jars_dir: Path, port: int, controller_port: int, *, fast_start: bool | None = None
) -> KafkaBroker:
    """A one-node broker (tied to this process) with its data in ``base/kafka`` and its log
    in ``base/kafka.log``: started again on the same ``base`` and ports, it keeps its topics."""
    return start_kafka(
        jars_dir=jars_dir,
        data_dir=base / "kafka",
        log_file=base / "kafka.log",
        port=port,
        controller_port=controller_port,
        fast_start=fast_start,
    )


@contextlib.contextmanager
def ephemeral_infra(
    base: Path, jars_cache: Path, *, fast_start: bool | None = None
) -> Iterator[tuple[KafkaBroker, RedisServer]]:
    """A KRaft broker and a `redis-server` on free ports with their data under ``base``, ready.

    ``fast_start`` is passed to `start_kafka` (False: full JIT, for throughput measurements).
    """
    jars = ensure_kafka_jars(jars_cache)
    kafka_port, controller_port, redis_port = free_ports(3)
    redis = start_redis(data_dir=base / "redis", log_file=base / "redis.log", port=redis_port)
    try:
        kafka = start_kafka_in(base, jars, kafka_port, controller_port, fast_start=fast_start)
        try:
            redis.wait_ready(30)
            kafka.wait_ready(120)
            yield kafka, redis
        finally:
            kafka.stop()
    finally:
        redis.stop()
