"""The librdkafka configurations every client of the project starts from.

`client_config` is the only place that reads the cluster's address and credentials;
`consumer_config` the only place that says how a consumer treats offsets (never stored or
committed behind the caller's back), whichever tool or service it reads for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from penguin12.settings import CommonSettings

# Room for a maximum-size prepared image plus headers; the broker default (1 MB) stays as it is.
MAX_RECORD_BYTES = 1_000_000


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


def consumer_config(
    settings: CommonSettings, group_id: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A consumer of ``group_id`` that commits nothing by itself; ``extra`` adds or overrides
    librdkafka settings (e.g. ``{"enable.partition.eof": True}`` for a reader that stops at the
    end, or the worker loop's background commit of explicitly stored offsets)."""
    return {
        **client_config(settings),
        "group.id": group_id,
        "client.id": settings.service_name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        **(extra or {}),
    }
