"""Inspect and re-drive the dead-letter topic: ``penguin12-dlq`` (or ``python -m penguin12_ops.dlq``).

    penguin12-dlq list   [--limit N] [--json]
    penguin12-dlq replay [--reason-contains S] [--since 2h|ISO-8601|epoch]
                         [--request-id ID] [--limit N] [--dry-run] [--json]

Every dead-lettered record carries the headers the worker loop wrote (`penguin12.deadletter`):
``penguin12.dlq.reason``, ``penguin12.dlq.service`` and ``penguin12.dlq.source`` =
``"topic:partition:offset"``; its key is the job's request id when it could be read, and its value
is the original record's value, byte for byte.

``replay`` re-produces each selected record's original value (and key, and trace headers) to its
source topic, so that after a fix the pipeline processes it again, and adds the header
``penguin12.replay.of = "<dead-letter topic>:<partition>:<offset>"`` so the re-driven record can be
told apart in logs. A job that was marked FAILED when its record was dead-lettered is re-opened
first with a PENDING status update marked ``reopen`` on the status topic (so a state rebuild
re-reads it too): its ``status_url`` follows the new run to COMPLETED instead of staying FAILED.
Re-open semantics (penguin12.state): a COMPLETED job is never re-opened; the new run's deadline
counts from the re-open; its final state is sent to the job's webhook again; which updates belong
to the new run is decided by the order of the status log, not by clocks. Records the worker had
to truncate (``penguin12.dlq.truncated`` header: the original was too large) cannot be replayed.

Which dead-letter offsets were replayed is recorded in a Kafka consumer group of its own
(``PENGUIN12_DLQ_REPLAYER_GROUP``, default ``penguin12-dlq-replayer``), see `replay_log`. A record
is therefore replayed once, whatever filters later runs use. Records are produced and
acknowledged (acks=all) before the commit, so a crash between the two replays a record twice
rather than never; the pipeline tolerates that (job state only moves forward). Run one replayer
at a time.

Modules: `records` (reading dead letters), `replay_log` (what was replayed), `replay` (re-open and
re-produce), `cli` (the command), `settings`.
"""

from penguin12_ops.dlq.cli import main, parse_since
from penguin12_ops.dlq.records import DeadLetter, list_dead_letters, read_dead_letters
from penguin12_ops.dlq.replay import ReplayReport, replay
from penguin12_ops.dlq.replay_log import ReplayLog, read_replay_log
from penguin12_ops.dlq.settings import DlqSettings

__all__ = [
    "DeadLetter",
    "DlqSettings",
    "ReplayLog",
    "ReplayReport",
    "list_dead_letters",
    "main",
    "parse_since",
    "read_dead_letters",
    "read_replay_log",
    "replay",
]
