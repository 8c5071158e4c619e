"""Waiting until a local Kafka serves: registered brokers, and a group coordinator made early."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from penguin12_devstack.ports import port_is_open
from penguin12_devstack.readiness import wait_until_ready

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

__all__ = ["wait_kafka_ready"]


def wait_kafka_ready(
    bootstrap: str,
    timeout: float = 60.0,
    *,
    log_file: Path | None = None,
    process: subprocess.Popen[bytes] | None = None,
    expect_brokers: int = 1,
) -> None:
    """Poll until the broker answers a metadata request, or fail with its log tail.

    With ``expect_brokers`` it also waits until that many brokers are registered (a cluster).

    A cheap TCP probe runs first (librdkafka's reconnect back-off would otherwise add
    seconds), then ``AdminClient.list_topics`` proves the broker is registered and
    serving. It then has the broker create ``__consumer_offsets`` (see
    :func:`_warm_up_group_coordinator`). Raises ``TimeoutError`` at the deadline and
    ``RuntimeError`` at once if ``process`` has already exited; both carry the tail of
    ``log_file`` when given.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    host, _, port_s = bootstrap.split(",")[0].strip().rpartition(":")
    port = int(port_s)
    admin: list[AdminClient] = []  # made once the port is open

    def registered() -> object | None:
        if not port_is_open(host or "127.0.0.1", port, timeout=0.5):
            return "broker port not open yet"
        if not admin:
            admin.append(
                AdminClient(
                    {
                        "bootstrap.servers": bootstrap,
                        "reconnect.backoff.ms": 50,
                        "reconnect.backoff.max.ms": 250,
                        "socket.connection.setup.timeout.ms": 2000,
                    }
                )
            )
        try:
            md = admin[0].list_topics(timeout=2.0)
        except KafkaException as exc:
            return exc
        if len(md.brokers) < expect_brokers:
            return f"{len(md.brokers)} of {expect_brokers} broker(s) registered"
        return None

    wait_until_ready(
        registered,
        what=f"Kafka at {bootstrap}",
        timeout=timeout,
        process=process,
        log_file=log_file,
    )
    _warm_up_group_coordinator(admin[0])


def _warm_up_group_coordinator(admin: AdminClient) -> None:
    """Have the broker create ``__consumer_offsets`` now, off the tests' critical path.

    Without it the first consumer group of a session waits ~3 s: its FindCoordinator
    triggers the topic's creation and librdkafka backs off before asking again. A
    describe of any group sends FindCoordinator; its answer (even an error) is ignored.
    """
    from confluent_kafka import KafkaException

    group = "penguin12-devstack-warmup"
    with contextlib.suppress(KafkaException, TimeoutError, ValueError):
        admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=5)
