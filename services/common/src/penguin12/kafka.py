"""Kafka clients configured for at-least-once delivery, and topic set-up.

Producers are idempotent with ``acks=all``. Consumers never auto-store offsets: a worker stores a
record's offset only after everything it produced for that record is acknowledged by the broker,
so a crash at any moment means redelivery, never loss.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from penguin12.metrics import ASSIGNED_PARTITIONS, CONSUMER_LAG
from penguin12.settings import CommonSettings

log = logging.getLogger("penguin12.kafka")

# Room for a maximum-size prepared image plus headers; the broker default (1 MB) stays as it is.
MAX_RECORD_BYTES = 1_000_000


class DeliveryError(RuntimeError):
    """The broker did not acknowledge a record in time: nothing may be committed after it."""


def producer_config(
    settings: CommonSettings, *, delivery_timeout_ms: int = 30_000
) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 0,
        # Base64 pixels and embeddings barely compress; lz4 cost the producer 0.4 CPU-ms per image
        # record for nothing (bench/kafka_cost.py). Consumers still read compressed records.
        "compression.type": "none",
        "message.max.bytes": MAX_RECORD_BYTES,
        "message.timeout.ms": delivery_timeout_ms,
        "client.id": settings.service_name,
    }


def consumer_config(settings: CommonSettings, group_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group_id,
        "client.id": settings.service_name,
        "auto.offset.reset": "earliest",
        # Offsets are committed in the background, but only those we stored explicitly.
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.commit.interval.ms": 1000,
        "partition.assignment.strategy": "cooperative-sticky",
        # A killed worker's partitions move to the survivors within seconds.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1500,
        "statistics.interval.ms": 5000,
        "stats_cb": _record_consumer_lag,
        "max.partition.fetch.bytes": 4 * MAX_RECORD_BYTES,
        # Pre-fetch at most ~16 MB (a full batch is 16 x 0.2 MB): a deep backlog stays in Kafka,
        # not in the worker's memory (librdkafka's default, 64 MB, showed up as RSS growth).
        "queued.max.messages.kbytes": 16384,
    }


def _record_consumer_lag(stats_json: str) -> None:
    """Export per-partition lag from librdkafka's statistics (no extra broker round-trips)."""
    try:
        stats = json.loads(stats_json)
        for topic, tstats in stats.get("topics", {}).items():
            for partition, pstats in tstats.get("partitions", {}).items():
                lag = pstats.get("consumer_lag", -1)
                if partition != "-1" and lag >= 0:
                    CONSUMER_LAG.labels(topic=topic, partition=partition).set(lag)
    except (ValueError, AttributeError):
        log.debug("unreadable librdkafka statistics", exc_info=True)


def ensure_topics(settings: CommonSettings, timeout: float = 30.0) -> None:
    """Create the pipeline's topics if missing (idempotent; every service calls it at start)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    partitions = settings.topic_partitions
    topics = [
        NewTopic(settings.topic_preprocessed, partitions, 1),
        NewTopic(settings.topic_features, partitions, 1),
        NewTopic(
            settings.topic_status,
            partitions,
            1,
            config={"retention.ms": str(settings.status_retention_ms)},
        ),
        NewTopic(
            settings.topic_dead_letter, 1, 1, config={"retention.ms": str(30 * 24 * 3600_000)}
        ),
    ]
    futures = admin.create_topics(topics, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            log.info("created topic %s", name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def kafka_reachable(settings: CommonSettings, timeout: float = 2.0) -> bool:
    try:
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


class KafkaHealth:
    """Whether the broker answers, probed from one thread with one long-lived admin client.

    Request threads only read `up`: no metadata calls from many threads at once (librdkafka's
    client objects do not like that while brokers come and go), and no client per probe.
    """

    def __init__(
        self, settings: CommonSettings, every_up_s: float = 5.0, every_down_s: float = 0.5
    ):
        self._admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        self._every_up_s = every_up_s
        self._every_down_s = every_down_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-health", daemon=True)
        self.up = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def recheck(self) -> None:
        """Probe now (e.g. a client reported every broker down)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._admin.list_topics(timeout=1.0)
                if not self.up:
                    log.info("Kafka is reachable again")
                self.up = True
            except KafkaException:
                if self.up:
                    log.error("Kafka is unreachable")
                self.up = False
            self._wake.wait(self._every_up_s if self.up else self._every_down_s)
            self._wake.clear()


class AsyncProducer:
    """A shared producer whose delivery reports are served by a background thread.

    `produce(..., on_delivery=cb)` returns at once; `cb(err)` runs when the broker acknowledges.
    The FastAPI preprocessor awaits those callbacks; workers use `flush`.
    """

    def __init__(self, config: dict[str, Any], on_brokers_down: Callable[[], None] | None = None):
        self._on_brokers_down = on_brokers_down
        self._brokers_down = threading.Event()
        self._producer = Producer({**config, "error_cb": self._on_error})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="kafka-delivery", daemon=True)
        self._thread.start()

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            log.error("all Kafka brokers are down")
            self._brokers_down.set()
            if self._on_brokers_down is not None:
                self._on_brokers_down()
        else:
            log.warning("Kafka client error: %s", err)

    @property
    def brokers_down(self) -> bool:
        """True from an "all brokers down" report until the broker answers again."""
        return self._brokers_down.is_set()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def produce(
        self,
        topic: str,
        value: bytes,
        *,
        key: str | None = None,
        headers: Sequence[tuple[str, str | bytes | None]] | None = None,
        on_delivery: Callable[[KafkaError | None], None] | None = None,
    ) -> None:
        def report(err: KafkaError | None, _msg: object) -> None:
            if err is None:
                self._brokers_down.clear()
            if on_delivery is not None:
                on_delivery(err)

        self._producer.produce(
            topic, value=value, key=key, headers=list(headers or []), on_delivery=report
        )

    def flush(self, timeout: float) -> int:
        return self._producer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        remaining = self._producer.flush(timeout)
        if remaining:
            log.error("%d records were not delivered before shutdown", remaining)
        self._stop.set()
        self._thread.join(timeout=2)

    def __enter__(self) -> AsyncProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_consumer(settings: CommonSettings, group_id: str, topics: list[str]) -> Consumer:
    consumer = Consumer(consumer_config(settings, group_id))
    owned: set[tuple[str, int]] = set()

    def publish() -> None:
        for topic in topics:
            ASSIGNED_PARTITIONS.labels(topic=topic).set(sum(1 for t, _ in owned if t == topic))

    def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
        owned.update((tp.topic, tp.partition) for tp in partitions)
        publish()
        log.info("assigned %d partition(s), %d owned now", len(partitions), len(owned))

    def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            owned.discard((tp.topic, tp.partition))
            # A partition that moved elsewhere is no longer this replica's lag to report.
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        publish()
        log.info("revoked %d partition(s), %d owned now", len(partitions), len(owned))

    publish()
    consumer.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    return consumer
