"""Is the cluster reachable, and does it accept these settings?

A wrong password or an untrusted certificate must stop start-up at once with a message a person
can act on, while a broker that is merely not up yet is waited for: `ACCESS_ERRORS` tells the
two apart for every client.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from penguin12.kafka.config import admin_config
from penguin12.settings import CommonSettings

log = logging.getLogger(__name__)


class KafkaAccessDenied(RuntimeError):
    """The brokers refused this client (wrong credentials, untrusted certificate): retrying the
    same settings cannot help, so start-up fails at once with this message instead of waiting."""


# Errors that mean "these settings will never work", as opposed to "the broker is not up yet".
ACCESS_ERRORS = frozenset(
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


def kafka_reachable(settings: CommonSettings, timeout: float = 2.0) -> bool:
    """True when a broker answers; raises `KafkaAccessDenied` when it refuses these settings.

    A wrong password or an untrusted certificate surfaces through librdkafka's error callback
    while the metadata request merely times out, so the callback's verdict decides.
    """
    refused: list[KafkaError] = []

    def on_error(err: KafkaError) -> None:
        if err.code() in ACCESS_ERRORS:
            refused.append(err)

    config: dict[str, Any] = {**admin_config(settings), "error_cb": on_error}
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=timeout)
        reachable = True
    except KafkaException as exc:
        if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].code() in ACCESS_ERRORS:
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
        config: dict[str, Any] = {**admin_config(settings), "error_cb": log_client_error}
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


def log_client_error(err: KafkaError) -> None:
    """librdkafka's error callback: refusals are errors; "all brokers down" is reported elsewhere."""
    if err.code() in ACCESS_ERRORS:
        log.error("Kafka refused this client: %s", err.str())
    elif err.code() != KafkaError._ALL_BROKERS_DOWN:
        log.warning("Kafka client error: %s", err)
