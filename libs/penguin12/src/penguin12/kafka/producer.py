"""The shared producer: delivery reports served by a background thread.

Services hand records over without blocking a request or batch thread; whoever must know that a
record is stored (the worker loop before it stores offsets, the API before it answers 202) waits
for its own delivery callback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, Producer

from penguin12.kafka.access import log_client_error

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """The broker did not acknowledge a record in time: nothing may be committed after it."""


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
            log_client_error(err)

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
