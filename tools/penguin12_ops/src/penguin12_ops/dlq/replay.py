"""Re-driving dead letters: re-open their jobs, re-produce them, record them as replayed."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError

from penguin12 import deadletter, schemas
from penguin12.kafka import AsyncProducer, producer_config
from penguin12.state import reopen_update
from penguin12_ops.dlq.records import DeadLetter, read_dead_letters
from penguin12_ops.dlq.replay_log import commit_replay_log, read_replay_log
from penguin12_ops.dlq.settings import DlqSettings

# Dead-letter headers a replayed record does not carry on (it gets `REPLAY_OF` instead).
_DLQ_HEADERS = frozenset(
    {deadletter.REASON, deadletter.SERVICE, deadletter.SOURCE, deadletter.REPLAY_OF}
)


@dataclass
class ReplayReport:
    selected: list[DeadLetter]
    replayed: list[DeadLetter]
    skipped_already_replayed: int
    unreplayable: list[tuple[DeadLetter, str]]
    dry_run: bool

    def summary(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "selected": [r.summary() for r in self.selected],
            "replayed": [f"{r.partition}:{r.offset}" for r in self.replayed],
            "skipped_already_replayed": self.skipped_already_replayed,
            "unreplayable": [
                {"record": f"{r.partition}:{r.offset}", "why": why} for r, why in self.unreplayable
            ],
        }


def _matches(
    record: DeadLetter, reason_contains: str | None, since: float | None, request_id: str | None
) -> bool:
    if reason_contains and reason_contains.lower() not in record.reason.lower():
        return False
    if since is not None and record.timestamp_ms / 1000 < since:
        return False
    return not (request_id and record.request_id != request_id)


def _why_unreplayable(record: DeadLetter, settings: DlqSettings) -> str | None:
    if record.source_topic() is None:
        return f"unreadable source header {record.source!r}"
    if record.truncated:
        return "the dead letter holds only a truncated copy"
    if record.source_topic() == settings.topic_dead_letter:
        return "its source is the dead-letter topic itself"
    return None


def replay(
    settings: DlqSettings,
    *,
    reason_contains: str | None = None,
    since: float | None = None,
    request_id: str | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    timeout: float = 30.0,
) -> ReplayReport:
    """Re-produce the selected, not yet replayed dead letters to their source topics."""
    log = read_replay_log(settings)
    selected: list[DeadLetter] = []
    already = 0
    for record in read_dead_letters(settings):
        if not _matches(record, reason_contains, since, request_id):
            continue
        if log.replayed(record.partition, record.offset):
            already += 1
            continue
        selected.append(record)
        if limit is not None and len(selected) >= limit:
            break
    report = ReplayReport(selected, [], already, [], dry_run)
    replayable = []
    for record in selected:
        why = _why_unreplayable(record, settings)
        if why is None:
            replayable.append(record)
        else:
            report.unreplayable.append((record, why))
    if dry_run or not replayable:
        return report
    _reopen_jobs(settings, replayable)
    _produce(settings, replayable, timeout)
    for record in replayable:
        log.add(record.partition, record.offset)
    commit_replay_log(settings, log)
    report.replayed = replayable
    return report


def _reopen_jobs(settings: DlqSettings, records: Iterable[DeadLetter]) -> None:
    """Publish a re-open status record for each known job.

    Only on the status topic, not straight into Redis: provenance applies it in log order, so the
    new run's updates (which the replayed record causes, after this record is acknowledged) come
    after it, and the old run's come before it, whatever the machines' clocks say.
    """
    updates = {}
    for record in records:
        if not record.request_id:
            continue
        submitted_at = schemas.salvage_ids(record.value)[1]
        updates[record.request_id] = reopen_update(
            record.request_id,
            submitted_at if submitted_at is not None else time.time(),
            settings.service_name,
        )
    if not updates:
        return
    with AsyncProducer(producer_config(settings)) as producer:
        errors: list[KafkaError] = []
        for update in updates.values():
            producer.produce(
                settings.topic_status,
                schemas.encode(update),
                key=update.request_id,
                on_delivery=lambda err: errors.append(err) if err else None,
            )
        if producer.flush(30.0) or errors:
            raise RuntimeError(f"re-opening jobs: status records not acknowledged: {errors[:3]}")


def _produce(settings: DlqSettings, records: Sequence[DeadLetter], timeout: float) -> None:
    config = producer_config(settings)
    # A record that was dead-lettered for its size must still fit when it is replayed.
    config["message.max.bytes"] = max(
        config["message.max.bytes"], max(r.value_bytes for r in records) + 64 * 1024
    )
    errors: list[str] = []
    with AsyncProducer(config) as producer:
        for record in records:
            topic = record.source_topic()
            assert topic is not None
            headers = [(k, v) for k, v in record.headers if k not in _DLQ_HEADERS]
            where = f"{settings.topic_dead_letter}:{record.partition}:{record.offset}"
            headers.append((deadletter.REPLAY_OF, where.encode()))

            def on_delivery(err: KafkaError | None, where: str = f"{record.offset}") -> None:
                if err is not None:
                    errors.append(f"dead letter {where}: {err.str()}")

            producer.produce(
                topic,
                record.value,
                key=record.key.decode("utf-8", "replace") if record.key else None,
                headers=headers,
                on_delivery=on_delivery,
            )
        remaining = producer.flush(timeout)
    if remaining or errors:
        raise RuntimeError(
            f"replay not acknowledged ({remaining} pending): {errors[:5]}; nothing was recorded "
            "as replayed, so the next run tries these records again"
        )
