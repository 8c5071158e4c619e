"""What every scenario runs inside: a healthy stack, steady load, and the verdict on the jobs.

A scenario does its fault inside `under_load`; on the way out the load stops, every accepted job
gets until the recovery deadline to become terminal, and the common targets are checked: zero
lost, zero backwards, only 202/429/503 answers, no component dying that the fault left alone.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chaos.config import Profile
from chaos.load import Load, Poller
from chaos.processes import all_ready, components, devstack_up, read_pid
from chaos.tracking import Tracker


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


@dataclass
class Context:
    profile: Profile
    images: list[bytes]
    log: Path
    http: httpx.Client

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def ensure_up(self) -> None:
        if not all(all_ready(self.http).values()):
            devstack_up(self.log)
        wait_until(lambda: all(all_ready(self.http).values()), 180, "every component ready")


@dataclass
class Outcome:
    """One scenario's verdict: its figures, its named checks (all must hold) and what it saw."""

    name: str
    description: str
    counts: dict[str, int] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    victims: set[str] = field(default_factory=set)  # components the scenario itself stops
    seconds: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(self.checks.values())


@contextlib.contextmanager
def under_load(ctx: Context, outcome: Outcome) -> Iterator[Tracker]:
    """Start load and polling; afterwards wait for recovery and fill in the counts."""
    tracker = Tracker()
    profile = ctx.profile
    load = Load(
        tracker, ctx.images, profile.clients, profile.max_submissions, profile.rate_per_client
    )
    poller = Poller(tracker)
    pids = {name: read_pid(name) for name in components()}
    load.start()
    poller.start()
    try:
        yield tracker
    finally:
        load.stop()
        settle_started = time.monotonic()
        deadline = settle_started + profile.recovery_deadline_s
        while tracker.open_ids() and time.monotonic() < deadline:
            time.sleep(0.25)
        poller.stop()
        outcome.details["settle_s"] = round(time.monotonic() - settle_started, 1)
        summarise(outcome, tracker, load)
        # A component that died (and was restarted by `up`) although the scenario left it alone.
        crashed = sorted(
            name
            for name, pid in pids.items()
            if pid is not None and name not in outcome.victims and read_pid(name) != pid
        )
        outcome.checks["no component died on its own"] = not crashed
        if crashed:
            outcome.details["died_on_their_own"] = crashed
            outcome.notes.append(
                f"died without being touched (see the end of .run/logs/<name>.log): {crashed}"
            )


def summarise(outcome: Outcome, tracker: Tracker, load: Load) -> None:
    jobs = list(tracker.jobs.values())
    finals = Counter(j.terminal for j in jobs)
    backwards = [j for j in jobs if j.backwards]
    lost = [j for j in jobs if j.terminal is None]
    answers = load.counts
    outcome.counts.update(
        {key: answers[key] for key in ("submitted", "accepted", "refused", "unavailable")},
        timeouts=answers["timeouts"],
        other=answers["other"],
        completed=finals["COMPLETED"],
        failed=finals["FAILED"],
        lost=len(lost),
        backwards=len(backwards),
    )
    outcome.checks["zero lost"] = not lost
    outcome.checks["zero backwards"] = not backwards
    outcome.checks["some load accepted"] = answers["accepted"] > 0
    unexpected = {c: n for c, n in load.codes.items() if c not in (202, 429, 503)}
    outcome.checks["only 202/429/503 answers"] = not unexpected
    outcome.details.update(
        http_codes=dict(load.codes),
        status_poll_5xx=dict(tracker.status_5xx),
        status_poll_errors=tracker.poll_errors,
        first_poll_404=tracker.first_poll_404,
        lost_examples=[{"id": j.request_id, "seen": j.seen} for j in lost[:5]],
        backwards_examples=[
            {"id": j.request_id, "seen": j.seen, "moves": j.backwards} for j in backwards[:5]
        ],
        failed_errors=Counter(e.split(":")[0][:120] for e in tracker.errors.values()).most_common(
            5
        ),
    )
    # 503 (+ Retry-After) is the designed answer while Redis is away; anything else is a bug.
    outcome.checks["status API answered no 5xx but 503"] = all(
        code == 503 for code in tracker.status_5xx
    )
    if tracker.status_5xx:
        outcome.notes.append(
            f"GET /v1/status answered 5xx during the fault: {dict(tracker.status_5xx)}"
        )
    if unexpected:
        outcome.notes.append(f"unexpected submit answers: {unexpected}")
