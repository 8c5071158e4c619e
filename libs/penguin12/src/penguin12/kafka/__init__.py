"""Kafka clients configured for at-least-once delivery, and topic set-up.

Producers are idempotent with ``acks=all``. Consumers never auto-store offsets: a worker stores a
record's offset only after everything it produced for that record is acknowledged by the broker,
so a crash at any moment means redelivery, never loss. With ``acks=all`` "acknowledged" means
stored on at least ``min.insync.replicas`` brokers, which ``ensure_topics`` sets on the topics.

Every Kafka client of the project (services, operator tools, chaos and bench tools) starts from
`client_config`, and every consumer from `consumer_config`: address, security and the offset
rules are applied in one place each.

- `config`: the librdkafka configurations (client, admin, producer, consumer);
- `access`: is the cluster reachable, and does it accept these credentials;
- `topics`: creating the pipeline's topics;
- `producer`: the shared producer with background delivery reports;
- `consumer`: the worker loop's group consumer, with partition and lag metrics.
"""

from penguin12.kafka.access import KafkaAccessDenied, KafkaHealth, describe_refusal, kafka_reachable
from penguin12.kafka.config import (
    MAX_RECORD_BYTES,
    admin_config,
    client_config,
    consumer_config,
    producer_config,
)
from penguin12.kafka.consumer import new_consumer, worker_consumer_config
from penguin12.kafka.producer import AsyncProducer, DeliveryError
from penguin12.kafka.topics import ensure_topics

__all__ = [
    "MAX_RECORD_BYTES",
    "AsyncProducer",
    "DeliveryError",
    "KafkaAccessDenied",
    "KafkaHealth",
    "admin_config",
    "client_config",
    "consumer_config",
    "describe_refusal",
    "ensure_topics",
    "kafka_reachable",
    "new_consumer",
    "producer_config",
    "worker_consumer_config",
]
