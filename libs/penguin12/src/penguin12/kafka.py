"""Kafka clients configured for at-least-once delivery, and topic set-up.

Producers are idempotent with ``acks=all``. Consumers never auto-store offsets: a worker stores a
record's offset only after everything it produced for that record is acknowledged by the broker,
so a crash at any moment means redelivery, never loss. With ``acks=all`` "acknowledged" means
stored on at least ``min.insync.replicas`` brokers, which ``ensure_topics`` sets on the topics.

Every Kafka client of the project (services, DLQ tool, chaos and bench tools) starts from
`client_config`: address and security settings are applied in that one place.
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


class KafkaAccessDenied(RuntimeError):
    """The brokers refused this client (wrong credentials, untrusted certificate): retrying the
    same settings cannot help, so start-up fails at once with this message instead of waiting."""


# Errors that mean "these settings will never work", as opposed to "the broker is not up yet".
_ACCESS_ERRORS = frozenset(
    {
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.UNSUPPORTED_SASL_MECHANISM,
        KafkaError.ILLEGAL_SASL_STATE,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    }
)


def client_config(settings: CommonSettings) -> dict[str, Any]:
    """Address and security of the cluster: the base of every Kafka client's configuration.

    The only place that reads the SASL password; librdkafka configs are never logged.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol.lower(),
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        # Hostname verification stays on (librdkafka's default): the certificate must name the
        # broker address clients connect to.
        if settings.kafka_ssl_ca_file:
            config["ssl.ca.location"] = settings.kafka_ssl_ca_file
        if settings.kafka_ssl_cert_file:
            config["ssl.certificate.location"] = settings.kafka_ssl_cert_file
            config["ssl.key.location"] = settings.kafka_ssl_key_file
            if settings.kafka_ssl_key_password.get_secret_value():
                config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    return config


def admin_config(settings: CommonSettings) -> dict[str, Any]:
    return {**client_config(settings), "client.id": settings.service_name}


def producer_config(
    settings: CommonSettings, *, delivery_timeout_ms: int = 30_000
) -> dict[str, Any]:
    return {
        **client_config(settings),
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
        **client_config(settings),
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
    """Create the pipeline's topics if missing (idempotent; every service calls it at start).

    Topics get ``kafka_replication_factor`` copies and ``min.insync.replicas``; a topic that
    already exists is not altered, but one with fewer copies than asked for is reported.
    """
    admin = AdminClient(admin_config(settings))
    partitions = settings.topic_partitions
    replicas = settings.kafka_replication_factor
    durability = {"min.insync.replicas": str(settings.kafka_min_insync_replicas)}
    topics = [
        NewTopic(settings.topic_preprocessed, partitions, replicas, config=durability),
        NewTopic(settings.topic_features, partitions, replicas, config=durability),
        NewTopic(
            settings.topic_status,
            partitions,
            replicas,
            config={**durability, "retention.ms": str(settings.status_retention_ms)},
        ),
        NewTopic(
            settings.topic_dead_letter,
            1,
            replicas,
            config={**durability, "retention.ms": str(30 * 24 * 3600_000)},
        ),
    ]
    futures = admin.create_topics(topics, request_timeout=timeout)
    existing: list[str] = []
    denied: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            log.info(
                "created topic %s (replication factor %d, min.insync.replicas %d)",
                name,
                replicas,
                settings.kafka_min_insync_replicas,
            )
        except KafkaException as exc:
            code = exc.args[0].code()
            if code == KafkaError.TOPIC_ALREADY_EXISTS:
                existing.append(name)
            elif code == KafkaError.INVALID_REPLICATION_FACTOR:
                raise RuntimeError(
                    f"cannot create topic {name} with replication factor {replicas}: "
                    f"{exc.args[0].str()} (PENGUIN12_KAFKA_REPLICATION_FACTOR must not exceed "
                    "the number of brokers)"
                ) from exc
            elif code in _ACCESS_ERRORS:
                denied[name] = exc.args[0].str()
            else:
                raise
    if denied:
        # An account without the right to create topics may still use ones made beforehand.
        present = set(admin.list_topics(timeout=timeout).topics)
        missing = {name: why for name, why in denied.items() if name not in present}
        if missing:
            raise KafkaAccessDenied(
                f"not allowed to create topics {sorted(missing)} ({next(iter(missing.values()))}) "
                "and they do not exist: create them beforehand or grant Create (README, "
                '"Running on a managed Kafka and Redis")'
            )
        existing += list(denied)
    if existing:
        _warn_under_replicated(admin, existing, replicas, timeout)


def _warn_under_replicated(
    admin: AdminClient, names: list[str], replicas: int, timeout: float
) -> None:
    """Say so when a topic made earlier has fewer copies than the settings ask for."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or not topic.partitions:
            continue
        have = min(len(p.replicas) for p in topic.partitions.values())
        if have < replicas:
            log.warning(
                "topic %s exists with replication factor %d, settings ask for %d: existing topics "
                "are not changed; reassign its partitions (kafka-reassign-partitions) to add copies",
                name,
                have,
                replicas,
            )


def kafka_reachable(settings: CommonSettings, timeout: float = 2.0) -> bool:
    """True when a broker answers; raises `KafkaAccessDenied` when it refuses these settings.

    A wrong password or an untrusted certificate surfaces through librdkafka's error callback
    while the metadata request merely times out, so the callback's verdict decides.
    """
    refused: list[KafkaError] = []

    def on_error(err: KafkaError) -> None:
        if err.code() in _ACCESS_ERRORS:
            refused.append(err)

    config: dict[str, Any] = {**admin_config(settings), "error_cb": on_error}
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=timeout)
        reachable = True
    except KafkaException as exc:
        if (
            exc.args
            and isinstance(exc.args[0], KafkaError)
            and exc.args[0].code() in _ACCESS_ERRORS
        ):
            refused.append(exc.args[0])
        reachable = False
    admin.poll(0)  # serve error callbacks that are still queued
    if refused:
        raise KafkaAccessDenied(describe_refusal(settings, refused[0]))
    return reachable


def describe_refusal(settings: CommonSettings, err: KafkaError) -> str:
    """A message a person can act on; names the user and files, never the password."""
    how: str = settings.kafka_security_protocol
    if how.startswith("SASL_"):
        how += f" {settings.kafka_sasl_mechanism} as user {settings.kafka_sasl_username!r}"
    if settings.kafka_ssl_ca_file:
        how += f", CA {settings.kafka_ssl_ca_file}"
    return (
        f"Kafka at {settings.kafka_bootstrap} refused the connection ({how}): {err.str()}. "
        "Check PENGUIN12_KAFKA_SECURITY_PROTOCOL, PENGUIN12_KAFKA_SASL_* and PENGUIN12_KAFKA_SSL_*."
    )


class KafkaHealth:
    """Whether the broker answers, probed from one thread with one long-lived admin client.

    Request threads only read `up`: no metadata calls from many threads at once (librdkafka's
    client objects do not like that while brokers come and go), and no client per probe.
    """

    def __init__(
        self, settings: CommonSettings, every_up_s: float = 5.0, every_down_s: float = 0.5
    ):
        config: dict[str, Any] = {**admin_config(settings), "error_cb": _log_client_error}
        self._admin = AdminClient(config)
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


def _log_client_error(err: KafkaError) -> None:
    if err.code() in _ACCESS_ERRORS:
        log.error("Kafka refused this client: %s", err.str())
    elif err.code() != KafkaError._ALL_BROKERS_DOWN:
        log.warning("Kafka client error: %s", err)


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
            _log_client_error(err)

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
