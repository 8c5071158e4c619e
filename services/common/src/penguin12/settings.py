"""Settings shared by every Penguin12 service.

Every value comes from an environment variable (prefix ``PENGUIN12_``) with a default that suits
the local run (`make run`), so Docker Compose changes configuration only, never code.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Infrastructure addresses, topic names and observability switches."""

    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

    service_name: str = "penguin12"
    log_level: str = "INFO"

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_preprocessed: str = "penguin12.preprocessed"
    topic_features: str = "penguin12.features"
    topic_status: str = "penguin12.status"
    topic_dead_letter: str = "penguin12.dead-letter"
    # Enough partitions for `--scale feature_extractor=12`; extra consumers in a group sit idle.
    topic_partitions: int = 12
    # Status records are the source of truth that provenance can replay into Redis: keep them a week.
    status_retention_ms: int = 7 * 24 * 3600 * 1000
    # A consumer outside its group (no member id, no partitions) this long is replaced by a new
    # one: librdkafka has been seen never to rejoin after a broker restart (docs in worker.py).
    rejoin_timeout_s: float = 60.0

    state_redis_url: str = "redis://127.0.0.1:6379/0"
    cache_redis_url: str = "redis://127.0.0.1:6379/1"

    # OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318). Empty: tracing stays off.
    otlp_endpoint: str = ""
