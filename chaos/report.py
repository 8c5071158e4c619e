"""What a chaos run tells its reader: a line per check as it goes, a table, a JSON summary."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from chaos.config import RESULTS, Profile
from chaos.harness import Outcome

COLUMNS = [
    "submitted",
    "accepted",
    "refused",
    "unavailable",
    "timeouts",
    "completed",
    "failed",
    "lost",
    "backwards",
]


def print_outcome(outcome: Outcome) -> None:
    print(f"    {json.dumps(outcome.counts)}  ({outcome.seconds} s)")
    for check, ok in outcome.checks.items():
        print(f"    [{'ok' if ok else 'MISSED'}] {check}")
    for note in outcome.notes:
        print(f"    note: {note}")
    if outcome.error:
        print(f"    ERROR: {outcome.error}")


def table(outcomes: list[Outcome]) -> str:
    head = ["scenario", *COLUMNS, "result"]
    rows = [head]
    for o in outcomes:
        rows.append(
            [o.name, *(str(o.counts.get(c, "-")) for c in COLUMNS), "PASS" if o.passed else "FAIL"]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )


def write_summary(
    profile: Profile, stamp: str, seconds: float, passed: bool, outcomes: list[Outcome]
) -> Path:
    """chaos/results/chaos-<stamp>.json, copied to latest.json; returns the stamped file."""
    summary: dict[str, Any] = {
        "mode": "full" if profile.full else "quick",
        "profile": {
            k: (v.name if isinstance(v, signal.Signals) else v) for k, v in vars(profile).items()
        },
        "started": stamp,
        "seconds": round(seconds, 1),
        "passed": passed,
        "scenarios": [
            {
                "name": o.name,
                "description": o.description,
                "passed": o.passed,
                "seconds": o.seconds,
                "counts": o.counts,
                "checks": o.checks,
                "notes": o.notes,
                "details": o.details,
                "error": o.error,
            }
            for o in outcomes
        ],
    }
    text = json.dumps(summary, indent=2)
    out = RESULTS / f"chaos-{stamp}.json"
    out.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return out
