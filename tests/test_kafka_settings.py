"""Kafka and Redis connection settings (issue #13): pure logic, no broker needed.

The brokers that prove these settings work are in test_kafka_cluster.py; here: one place builds
every client's config, contradictory settings fail at start, and secrets stay out of reprs.
"""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from penguin12.kafka import (
    client_config,
    consumer_config,
    producer_config,
    worker_consumer_config,
)
from penguin12.settings import CommonSettings
from penguin12.state import redis_options

SASL = {
    "kafka_security_protocol": "sasl_ssl",
    "kafka_sasl_mechanism": "scram-sha-256",
    "kafka_sasl_username": "app",
    "kafka_sasl_password": "hunter2-secret",
    "kafka_ssl_ca_file": "/etc/ssl/kafka-ca.pem",
}


def test_plaintext_is_the_default_and_adds_no_security_keys() -> None:
    config = client_config(CommonSettings(kafka_bootstrap="a:9092,b:9092"))
    assert config == {"bootstrap.servers": "a:9092,b:9092", "security.protocol": "plaintext"}


def test_sasl_ssl_settings_reach_producer_consumer_and_admin_alike() -> None:
    settings = CommonSettings(**SASL)
    expected = {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "app",
        "sasl.password": "hunter2-secret",
        "ssl.ca.location": "/etc/ssl/kafka-ca.pem",
    }
    for config in (
        client_config(settings),
        producer_config(settings),
        consumer_config(settings, "group"),
        worker_consumer_config(settings, "group"),
    ):
        assert expected.items() <= config.items()
    assert "ssl.certificate.location" not in client_config(settings)


def test_mutual_tls_files_are_passed_as_a_pair() -> None:
    settings = CommonSettings(
        kafka_security_protocol="SSL",
        kafka_ssl_cert_file="/c.pem",
        kafka_ssl_key_file="/k.pem",
        kafka_ssl_key_password="kp",
    )
    config = client_config(settings)
    assert config["ssl.certificate.location"] == "/c.pem"
    assert config["ssl.key.location"] == "/k.pem"
    assert config["ssl.key.password"] == "kp"
    assert "sasl.username" not in config
    with pytest.raises(ValidationError, match="go together"):
        CommonSettings(kafka_security_protocol="SSL", kafka_ssl_cert_file="/c.pem")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kafka_replication_factor": 1, "kafka_min_insync_replicas": 2}, "no write could succeed"),
        ({"kafka_security_protocol": "SASL_SSL"}, "PENGUIN12_KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
        ({"kafka_replication_factor": 0}, "kafka_replication_factor"),
    ],
)
def test_settings_that_cannot_work_are_refused_at_start(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        CommonSettings(**fields)


def test_secrets_stay_out_of_reprs_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = CommonSettings(
        **SASL,
        redis_password="redis-secret-pw",
        kafka_ssl_key_password="key-secret-pw",
    )
    logging.getLogger("test").info("settings: %s / %r", settings, settings)
    text = repr(settings) + str(settings) + settings.model_dump_json() + caplog.text
    for secret in ("hunter2-secret", "redis-secret-pw", "key-secret-pw"):
        assert secret not in text


def test_redis_credentials_and_ca_apply_to_every_redis_client() -> None:
    assert redis_options(CommonSettings()) == {}
    settings = CommonSettings(
        redis_username="svc", redis_password="pw", redis_ssl_ca_file="/ca.pem"
    )
    assert redis_options(settings) == {
        "username": "svc",
        "password": "pw",
        "ssl_ca_certs": "/ca.pem",
    }


def test_environment_variables_configure_a_managed_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PENGUIN12_KAFKA_BOOTSTRAP", "b-1.example.com:9096,b-2.example.com:9096")
    monkeypatch.setenv("PENGUIN12_KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("PENGUIN12_KAFKA_MIN_INSYNC_REPLICAS", "2")
    monkeypatch.setenv("PENGUIN12_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PENGUIN12_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("PENGUIN12_KAFKA_SASL_USERNAME", "penguin12")
    monkeypatch.setenv("PENGUIN12_KAFKA_SASL_PASSWORD", "from-a-secret-store")
    settings = CommonSettings()
    assert settings.kafka_replication_factor == 3 and settings.kafka_min_insync_replicas == 2
    assert client_config(settings)["sasl.password"] == "from-a-secret-store"
    assert client_config(settings)["sasl.mechanism"] == "SCRAM-SHA-512"


def test_every_consumer_stores_and_commits_only_what_its_owner_says() -> None:
    """One builder for every consumer (workers, the DLQ tool, the backlog reader, the rebuild):
    none stores offsets by itself; only the worker loop commits (its explicitly stored ones)."""
    settings = CommonSettings(**SASL)
    reader = consumer_config(settings, "readers", {"enable.partition.eof": True})
    assert reader["group.id"] == "readers" and reader["enable.partition.eof"] is True
    assert reader["enable.auto.commit"] is False and reader["enable.auto.offset.store"] is False
    assert reader["sasl.password"] == "hunter2-secret"
    worker = worker_consumer_config(settings, "workers")
    assert worker["enable.auto.commit"] is True and worker["enable.auto.offset.store"] is False
    assert worker["partition.assignment.strategy"] == "cooperative-sticky"


def test_workers_fetch_as_configured_and_answer_at_the_first_record_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = worker_consumer_config(CommonSettings(), "g")
    assert (default["fetch.min.bytes"], default["fetch.wait.max.ms"]) == (1, 500)
    monkeypatch.setenv("PENGUIN12_KAFKA_FETCH_MIN_BYTES", "262144")
    monkeypatch.setenv("PENGUIN12_KAFKA_FETCH_WAIT_MAX_MS", "20")
    tuned = worker_consumer_config(CommonSettings(), "g")
    assert (tuned["fetch.min.bytes"], tuned["fetch.wait.max.ms"]) == (262144, 20)
    with pytest.raises(ValidationError):
        CommonSettings(kafka_fetch_min_bytes=0)
