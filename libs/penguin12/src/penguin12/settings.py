"""Settings shared by every Penguin12 service, and the parts a service's one settings class is
composed of (Kafka/Redis in `CommonSettings`, URL rules, webhooks).

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
# Ports a client-chosen URL may use on a public address (penguin12.ssrf).
DEFAULT_ALLOWED_PORTS = "80,443,8080,8443"


class KafkaSettings(BaseSettings):
    """Where Kafka is, how to reach it securely, and the pipeline's topics."""

    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

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
    # Status records are the source of truth that provenance re-reads into Redis: keep them a week.
    status_retention_ms: int = 7 * 24 * 3600 * 1000
    # How a worker's consumer fetches (librdkafka fetch.min.bytes / fetch.wait.max.ms): the broker
    # answers once it holds this many new bytes or the wait has passed. The defaults (librdkafka's)
    # answer at the first record: the least latency. Under a steady load, 262144 / 20 cut the CPU
    # per job by 0.7-1.5 ms (fewer, fuller fetches: docs/benchmarks.md) for up to 20 ms per hop.
    kafka_fetch_min_bytes: int = Field(1, ge=1)
    kafka_fetch_wait_max_ms: int = Field(500, ge=0)
    # A consumer outside its group (no member id, no partitions) this long is replaced by a new
    # one: librdkafka has been seen never to rejoin after a broker restart (docs in worker.py).
    rejoin_timeout_s: float = 60.0

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent_kafka_settings(self) -> KafkaSettings:
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


class RedisSettings(BaseSettings):
    """Where Redis is (job state DB0, embedding cache DB1) and its credentials."""

    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

    # redis:// or rediss:// (TLS). A password may be in the URL (redis://:pw@host:6379/0) or,
    # kept out of the URL and the logs, in PENGUIN12_REDIS_PASSWORD (used for both DBs).
    state_redis_url: str = "redis://127.0.0.1:6379/0"
    cache_redis_url: str = "redis://127.0.0.1:6379/1"
    redis_username: str = ""
    redis_password: SecretStr = SecretStr("")
    # PEM CA for rediss:// (empty: the system's trust store).
    redis_ssl_ca_file: str = ""


class CommonSettings(KafkaSettings, RedisSettings):
    """What every service and tool reads: Kafka, Redis, its name, logging and tracing."""

    service_name: str = "penguin12"
    log_level: str = "INFO"
    # OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318). Empty: tracing stays off.
    otlp_endpoint: str = ""


class UrlPolicySettings(BaseSettings):
    """Which addresses client-chosen URLs (images, webhook callbacks) may reach: a part of the
    settings of each service that calls them (`penguin12.ssrf.UrlPolicy.from_settings`)."""

    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

    allow_private_urls: bool = False
    # Comma-separated CIDRs trusted on any port, even when private.
    url_allowed_networks: str = ""
    # Comma-separated ports allowed on public addresses, or * for any.
    url_allowed_ports: str = DEFAULT_ALLOWED_PORTS


class UrlFetchSettings(UrlPolicySettings):
    """The address rules and the limits of downloading an image from a client's URL."""

    # One deadline for the whole fetch: DNS, connect, headers, every redirect and the body.
    url_fetch_timeout_s: float = Field(default=10.0, gt=0)
    url_max_redirects: int = Field(default=3, ge=0)
    # Downloads in progress at once (each may hold up to the upload limit in memory).
    url_max_concurrent_fetches: int = Field(default=16, ge=1)


class WebhookSigningSettings(BaseSettings):
    """The master key of the webhook signatures, the same on both APIs: the preprocessor hands each
    submitter its job's secret, provenance signs the deliveries with it."""

    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

    # Empty: deliveries go out unsigned (a warning at start).
    webhook_secret: str = Field(default="", repr=False)


class WebhookSettings(WebhookSigningSettings, UrlPolicySettings):
    """How webhooks are delivered (``PENGUIN12_WEBHOOK_*``) and where they may go."""

    webhook_max_attempts: int = Field(default=8, ge=1)
    # Delay before retry n is backoff_s * 2**(n-1), at most max_backoff_s, plus up to 20% jitter.
    webhook_backoff_s: float = Field(default=2.0, gt=0)
    webhook_max_backoff_s: float = Field(default=600.0, gt=0)
    # Total deadline of one attempt, from connecting to the status line and headers.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1)
    # The most deliveries in flight to one receiver (scheme, host and port) at once.
    webhook_per_receiver: int = Field(default=2, ge=1)
    # How often the dispatcher looks for due deliveries when idle.
    webhook_poll_interval_s: float = Field(default=0.2, gt=0)


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
