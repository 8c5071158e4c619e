"""Settings shared by every Penguin12 service.

Every value comes from an environment variable (prefix ``PENGUIN12_``) with a default that suits
the local run (`make run`), so Docker Compose changes configuration only, never code. Moving to a
managed Kafka or Redis is a change of these settings too (README, "Running on a managed Kafka").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class CommonSettings(BaseSettings):
    """Infrastructure addresses and credentials, topic names and observability switches."""

    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

    service_name: str = "penguin12"
    log_level: str = "INFO"

    # Comma-separated host:port list; one reachable broker is enough to find the others.
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_preprocessed: str = "penguin12.preprocessed"
    topic_features: str = "penguin12.features"
    topic_status: str = "penguin12.status"
    topic_dead_letter: str = "penguin12.dead-letter"
    # Enough partitions for `--scale feature_extractor=12`; extra consumers in a group sit idle.
    topic_partitions: int = 12
    # Copies of every pipeline topic partition, and how many of them must hold a record before
    # the producer (acks=all) hears "stored". RF 3 / min ISR 2 survives the loss of any one
    # broker without losing an acknowledged record or refusing writes. Applied when the topics
    # are created; existing topics are left as they are (a warning says so).
    kafka_replication_factor: int = Field(1, ge=1)
    kafka_min_insync_replicas: int = Field(1, ge=1)
    # Client security, the same for every Kafka client of every service and tool
    # (penguin12.kafka.client_config). Managed services want SASL_SSL.
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    # PEM files. The CA verifies the brokers (empty: the system's trust store); a certificate
    # and key are only needed where the brokers ask for client certificates (mutual TLS).
    kafka_ssl_ca_file: str = ""
    kafka_ssl_cert_file: str = ""
    kafka_ssl_key_file: str = ""
    kafka_ssl_key_password: SecretStr = SecretStr("")
    # Status records are the source of truth that provenance can replay into Redis: keep them a week.
    status_retention_ms: int = 7 * 24 * 3600 * 1000
    # A consumer outside its group (no member id, no partitions) this long is replaced by a new
    # one: librdkafka has been seen never to rejoin after a broker restart (docs in worker.py).
    rejoin_timeout_s: float = 60.0

    # redis:// or rediss:// (TLS). A password may be in the URL (redis://:pw@host:6379/0) or,
    # kept out of the URL and the logs, in PENGUIN12_REDIS_PASSWORD (used for both DBs).
    state_redis_url: str = "redis://127.0.0.1:6379/0"
    cache_redis_url: str = "redis://127.0.0.1:6379/1"
    redis_username: str = ""
    redis_password: SecretStr = SecretStr("")
    # PEM CA for rediss:// (empty: the system's trust store).
    redis_ssl_ca_file: str = ""

    # OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318). Empty: tracing stays off.
    otlp_endpoint: str = ""

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent_kafka_settings(self) -> CommonSettings:
        if self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise ValueError(
                f"kafka_min_insync_replicas ({self.kafka_min_insync_replicas}) is more than "
                f"kafka_replication_factor ({self.kafka_replication_factor}): no write could succeed"
            )
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs "
                "PENGUIN12_KAFKA_SASL_USERNAME and PENGUIN12_KAFKA_SASL_PASSWORD"
            )
        if bool(self.kafka_ssl_cert_file) != bool(self.kafka_ssl_key_file):
            raise ValueError("kafka_ssl_cert_file and kafka_ssl_key_file go together (mutual TLS)")
        return self


class WorkerSettings(CommonSettings):
    """The part every Kafka worker service shares: its group, batching, health port, start-up."""

    consumer_group: str = "penguin12"
    metrics_port: int = 9100
    max_batch_size: int = 1
    # Extra time to wait for a batch to fill; 0 takes only what is already fetched (no idle delay).
    max_batch_wait_ms: float = 0.0
    startup_timeout_s: float = 120.0
    # Workers yield the CPU to the front door where they share cores: accept latency stays low
    # while the workers are saturated (docs/benchmarks.md, scenario 3). 0 = same priority.
    cpu_nice: int = Field(10, ge=0, le=19)
