"""Inspect and re-drive the dead-letter topic.

    python -m penguin12.dlq list   [--limit N] [--json]
    python -m penguin12.dlq replay [--reason-contains S] [--since 2h|ISO-8601|epoch]
                                   [--request-id ID] [--limit N] [--dry-run] [--json]

Every dead-lettered record carries the headers the worker loop wrote (`penguin12.worker`):
``penguin12.dlq.reason``, ``penguin12.dlq.service`` and ``penguin12.dlq.source`` =
``"topic:partition:offset"``; its key is the job's request id when it could be read, and its value
is the original record's value, byte for byte.

``replay`` re-produces each selected record's original value (and key, and trace headers) to its
source topic, so that after a fix the pipeline processes it again, and adds the header
``penguin12.replay.of = "<dead-letter topic>:<partition>:<offset>"`` so the re-driven record can be
told apart in logs. A job that was marked FAILED when its record was dead-lettered is re-opened
first with a PENDING status update marked ``reopen`` on the status topic (so a state rebuild
replays it too): its ``status_url`` follows the new run to COMPLETED instead of staying FAILED.
Re-open semantics (penguin12.state): a COMPLETED job is never re-opened; the new run's deadline
counts from the re-open; its final state is sent to the job's webhook again; which updates belong
to the new run is decided by the order of the status log, not by clocks. Records the worker had
to truncate (``penguin12.dlq.truncated`` header: the original was too large) cannot be replayed.

Which dead-letter offsets were replayed is recorded in a Kafka consumer group of its own
(``PENGUIN12_DLQ_REPLAYER_GROUP``, default ``penguin12-dlq-replayer``): per partition, the
committed offset is the first offset *not* replayed, and the commit's metadata lists the replayed
offsets above it as ranges (a filter may replay records out of order). A record is therefore
replayed once, whatever filters later runs use. Records are produced and acknowledged (acks=all)
before the commit, so a crash between the two replays a record twice rather than never; the
pipeline tolerates that (job state only moves forward). Run one replayer at a time.

Caveat: Kafka forgets a consumer group's offsets ``offsets.retention.minutes`` (7 days by default)
after the group was last used; the replay log lives only that long after the last replay.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from pydantic_settings import SettingsConfigDict

from penguin12 import schemas
from penguin12.kafka import AsyncProducer, client_config, producer_config
from penguin12.settings import CommonSettings
from penguin12.state import reopen_update
from penguin12.worker import DLQ_REASON as REASON
from penguin12.worker import DLQ_SERVICE as SERVICE
from penguin12.worker import DLQ_SOURCE as SOURCE
from penguin12.worker import DLQ_TRUNCATED as TRUNCATED

REPLAY_OF = "penguin12.replay.of"
_DLQ_HEADERS = frozenset({REASON, SERVICE, SOURCE, REPLAY_OF})
# Kafka's default offset.metadata.max.bytes is 4096.
_MAX_METADATA = 4000


class DlqSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="PENGUIN12_", extra="ignore")

    service_name: str = "dlq-replayer"
    dlq_replayer_group: str = "penguin12-dlq-replayer"
    job_retention_s: int = 7 * 24 * 3600


@dataclass
class DeadLetter:
    """One dead-lettered record, decoded for people and for the replayer."""

    partition: int
    offset: int
    timestamp_ms: int
    reason: str
    service: str
    source: str
    request_id: str | None
    value_bytes: int
    replayed: bool = False
    key: bytes | None = field(default=None, repr=False)
    value: bytes = field(default=b"", repr=False)
    headers: list[tuple[str, bytes]] = field(default_factory=list, repr=False)

    @property
    def truncated(self) -> bool:
        return any(name == TRUNCATED for name, _ in self.headers)

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.timestamp_ms / 1000)

    def source_topic(self) -> str | None:
        """The topic the record was consumed from, or None when the header is unreadable."""
        topic, sep, _rest = self.source.partition(":")
        # Kafka topic names are [a-zA-Z0-9._-]: no colon, so the first field is the topic.
        return topic if sep and re.fullmatch(r"[A-Za-z0-9._-]+", topic) else None

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        for private in ("key", "value", "headers"):
            out.pop(private)
        out["age_s"] = round(self.age_s, 1)
        return out


# ----------------------------------------------------------------------------- replay log


def _decode_ranges(metadata: str | None) -> list[tuple[int, int]]:
    if not metadata:
        return []
    try:
        data = json.loads(metadata)
        return [(int(a), int(b)) for a, b in data.get("replayed", [])]
    except (ValueError, TypeError, AttributeError):
        return []


def _encode(offsets: set[int], floor: int) -> tuple[int, str]:
    """(first offset not replayed, JSON ranges of the replayed offsets above it)."""
    committed = floor
    while committed in offsets:
        committed += 1
    ranges: list[list[int]] = []
    for offset in sorted(o for o in offsets if o > committed):
        if ranges and ranges[-1][1] == offset - 1:
            ranges[-1][1] = offset
        else:
            ranges.append([offset, offset])
    metadata = json.dumps({"replayed": ranges}, separators=(",", ":"))
    if len(metadata) > _MAX_METADATA:
        raise RuntimeError(
            f"the replay log has {len(ranges)} gaps and no longer fits a Kafka commit; "
            "replay the older records (or skip them with a wider filter) first"
        )
    return committed, metadata


@dataclass
class ReplayLog:
    """Which offsets of each dead-letter partition were replayed (see module docstring)."""

    floors: dict[int, int]
    above: dict[int, set[int]]

    def replayed(self, partition: int, offset: int) -> bool:
        return offset < self.floors.get(partition, 0) or offset in self.above.get(partition, set())

    def add(self, partition: int, offset: int) -> None:
        self.above.setdefault(partition, set()).add(offset)

    def commits(self, topic: str) -> list[TopicPartition]:
        out = []
        for partition, offsets in self.above.items():
            committed, metadata = _encode(offsets, self.floors.get(partition, 0))
            out.append(TopicPartition(topic, partition, committed, metadata=metadata))
        return out


# ----------------------------------------------------------------------------- reading


def _consumer(settings: DlqSettings, group_id: str) -> Consumer:
    return Consumer(
        {
            **client_config(settings),
            "group.id": group_id,
            "client.id": settings.service_name,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )


def _partitions(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout)
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        return []
    return sorted(info.partitions)


def read_replay_log(settings: DlqSettings, timeout: float = 10.0) -> ReplayLog:
    consumer = _consumer(settings, settings.dlq_replayer_group)
    try:
        topic = settings.topic_dead_letter
        parts = [TopicPartition(topic, p) for p in _partitions(consumer, topic, timeout)]
        floors: dict[int, int] = {}
        above: dict[int, set[int]] = {}
        for tp in consumer.committed(parts, timeout=timeout) if parts else []:
            if tp.offset >= 0:
                floors[tp.partition] = tp.offset
            ranges = _decode_ranges(getattr(tp, "metadata", None))
            above[tp.partition] = {o for a, b in ranges for o in range(a, b + 1)}
        return ReplayLog(floors, above)
    finally:
        consumer.close()


def read_dead_letters(
    settings: DlqSettings, *, last: int | None = None, timeout: float = 10.0
) -> Iterator[DeadLetter]:
    """Every record now in the dead-letter topic (or the ``last`` N of each partition), in order."""
    consumer = _consumer(settings, f"penguin12-dlq-reader-{uuid.uuid4().hex[:8]}")
    try:
        topic = settings.topic_dead_letter
        assignments = []
        ends: dict[int, int] = {}
        for partition in _partitions(consumer, topic, timeout):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )
            if high <= low:
                continue
            start = low if last is None else max(low, high - last)
            ends[partition] = high
            assignments.append(TopicPartition(topic, partition, start or OFFSET_BEGINNING))
        if not assignments:
            return
        consumer.assign(assignments)
        deadline = time.monotonic() + timeout
        while ends:
            message = consumer.poll(0.5)
            if message is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"reading {topic} timed out; still waiting on partitions {sorted(ends)}"
                    )
                continue
            err = message.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    ends.pop(message.partition() or 0, None)
                    continue
                raise KafkaException(err)
            deadline = time.monotonic() + timeout
            partition, offset = message.partition() or 0, message.offset() or 0
            if offset >= ends.get(partition, -1):
                ends.pop(partition, None)
                continue
            if offset == ends[partition] - 1:
                ends.pop(partition)
            yield _dead_letter(message)
    finally:
        consumer.close()


def _dead_letter(message: Any) -> DeadLetter:
    headers = [(k, v or b"") for k, v in (message.headers() or [])]
    named = {k: v.decode("utf-8", "replace") for k, v in headers}
    key: bytes | None = message.key()
    value: bytes = message.value() or b""
    request_id = key.decode("utf-8", "replace") if key else None
    return DeadLetter(
        partition=message.partition(),
        offset=message.offset(),
        timestamp_ms=message.timestamp()[1],
        reason=named.get(REASON, "(no reason header)"),
        service=named.get(SERVICE, "?"),
        source=named.get(SOURCE, "?"),
        request_id=request_id,
        value_bytes=len(value),
        key=key,
        value=value,
        headers=headers,
    )


def list_dead_letters(settings: DlqSettings, limit: int | None = 50) -> list[DeadLetter]:
    log = read_replay_log(settings)
    records = list(read_dead_letters(settings, last=limit))
    for record in records:
        record.replayed = log.replayed(record.partition, record.offset)
    records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return records[-limit:] if limit else records


# ----------------------------------------------------------------------------- replaying


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


def parse_since(text: str, now: float | None = None) -> float:
    """``90s``/``30m``/``2h``/``7d`` ago, an ISO-8601 time, or epoch seconds -> epoch seconds."""
    now = time.time() if now is None else now
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match:
        factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return now - float(match.group(1)) * factor
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--since {text!r}: use a duration (90s, 30m, 2h, 7d), an ISO-8601 time or epoch seconds"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, as a person types it
    return parsed.timestamp()


def _matches(
    record: DeadLetter, reason_contains: str | None, since: float | None, request_id: str | None
) -> bool:
    if reason_contains and reason_contains.lower() not in record.reason.lower():
        return False
    if since is not None and record.timestamp_ms / 1000 < since:
        return False
    return not (request_id and record.request_id != request_id)


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
        if record.source_topic() is None:
            report.unreplayable.append((record, f"unreadable source header {record.source!r}"))
        elif record.truncated:
            report.unreplayable.append((record, "the dead letter holds only a truncated copy"))
        elif record.source_topic() == settings.topic_dead_letter:
            report.unreplayable.append((record, "its source is the dead-letter topic itself"))
        else:
            replayable.append(record)
    if dry_run or not replayable:
        return report
    _reopen_jobs(settings, replayable)
    _produce(settings, replayable, timeout)
    for record in replayable:
        log.add(record.partition, record.offset)
    _commit(settings, log, timeout)
    report.replayed = replayable
    return report


def _reopen_jobs(settings: DlqSettings, records: Iterable[DeadLetter]) -> None:
    """Publish a re-open (PENDING, ``reopen``) status record for each known job.

    Only on the status topic, not straight into Redis: provenance applies it in log order, so the
    new run's updates (which the replayed record causes, after this record is acknowledged) come
    after it, and the old run's come before it, whatever the machines' clocks say.
    """

    updates = {}
    for record in records:
        if not record.request_id:
            continue
        submitted_at = _submitted_at(record.value)
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


def _submitted_at(value: bytes) -> float | None:
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    sub = data.get("submitted_at") if isinstance(data, dict) else None
    return float(sub) if isinstance(sub, int | float) and not isinstance(sub, bool) else None


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
            headers.append(
                (
                    REPLAY_OF,
                    f"{settings.topic_dead_letter}:{record.partition}:{record.offset}".encode(),
                )
            )

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


def _commit(settings: DlqSettings, log: ReplayLog, timeout: float) -> None:
    consumer = _consumer(settings, settings.dlq_replayer_group)
    try:
        results = consumer.commit(
            offsets=log.commits(settings.topic_dead_letter), asynchronous=False
        )
        failed = [tp for tp in results or [] if tp.error is not None]
        if failed:
            raise RuntimeError(f"could not record the replay: {failed}")
    finally:
        consumer.close()


# ----------------------------------------------------------------------------- CLI


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _table(records: Sequence[DeadLetter]) -> str:
    rows = [("RECORD", "AGE", "SERVICE", "SOURCE", "REQUEST_ID", "REPLAYED", "REASON")]
    for r in records:
        rows.append(
            (
                f"{r.partition}:{r.offset}",
                _age(r.age_s),
                r.service,
                r.source,
                r.request_id or "-",
                "yes" if r.replayed else "no",
                r.reason if len(r.reason) <= 100 else r.reason[:97] + "...",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m penguin12.dlq",
        description="List and replay Penguin12's dead-letter topic (settings: PENGUIN12_* env).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    list_cmd = sub.add_parser("list", help="the most recent dead letters, oldest first")
    list_cmd.add_argument("--limit", type=int, default=50, help="how many (per partition read)")
    list_cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    replay_cmd = sub.add_parser("replay", help="re-produce dead letters to their source topic")
    replay_cmd.add_argument("--reason-contains", help="case-insensitive substring of the reason")
    replay_cmd.add_argument(
        "--since", type=parse_since, help="dead-lettered since: 90s, 30m, 2h, 7d, ISO-8601, epoch"
    )
    replay_cmd.add_argument("--request-id", help="only this job's records")
    replay_cmd.add_argument("--limit", type=int, help="at most this many records")
    replay_cmd.add_argument("--dry-run", action="store_true", help="show, replay nothing")
    replay_cmd.add_argument("--json", action="store_true", help="a JSON report")
    args = parser.parse_args(argv)
    settings = DlqSettings()

    if args.command == "list":
        records = list_dead_letters(settings, args.limit)
        if args.json:
            for record in records:
                print(json.dumps(record.summary()))
        elif not records:
            print(f"{settings.topic_dead_letter} is empty")
        else:
            print(_table(records))
        return 0

    report = replay(
        settings,
        reason_contains=args.reason_contains,
        since=args.since,
        request_id=args.request_id,
        limit=args.limit,
        dry_run=args.dry_run,
    )
    if args.json:
        print(json.dumps(report.summary()))
    else:
        verb = "would replay" if report.dry_run else "replayed"
        done = report.selected if report.dry_run else report.replayed
        if done:
            print(_table(done))
        print(
            f"{verb} {len(done)} record(s); skipped {report.skipped_already_replayed} already "
            f"replayed; {len(report.unreplayable)} unreplayable"
        )
        for record, why in report.unreplayable:
            print(f"  unreplayable {record.partition}:{record.offset}: {why}")
    return 1 if report.unreplayable else 0


if __name__ == "__main__":
    sys.exit(main())
