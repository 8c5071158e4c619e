"""The ``penguin12-dlq`` command: argument parsing and the human-readable table."""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from datetime import datetime

from penguin12_ops.dlq.records import DeadLetter, list_dead_letters
from penguin12_ops.dlq.replay import ReplayReport, replay
from penguin12_ops.dlq.settings import DlqSettings


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="penguin12-dlq",
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
    return parser


def _print_list(settings: DlqSettings, records: list[DeadLetter], as_json: bool) -> None:
    if as_json:
        for record in records:
            print(json.dumps(record.summary()))
    elif not records:
        print(f"{settings.topic_dead_letter} is empty")
    else:
        print(_table(records))


def _print_report(report: ReplayReport) -> None:
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = DlqSettings()
    if args.command == "list":
        _print_list(settings, list_dead_letters(settings, args.limit), args.json)
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
        _print_report(report)
    return 1 if report.unreplayable else 0
