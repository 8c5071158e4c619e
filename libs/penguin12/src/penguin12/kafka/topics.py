"""Creating the pipeline's topics with the replication the settings ask for."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from penguin12.kafka.access import ACCESS_ERRORS, KafkaAccessDenied
from penguin12.kafka.config import admin_config
from penguin12.settings import CommonSettings

log = logging.getLogger(__name__)


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
            elif code in ACCESS_ERRORS:
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
