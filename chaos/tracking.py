"""Every accepted job and every status seen for it: what "lost" and "backwards" are judged on.

The order a job may move in is penguin12's own (`STATUS_RANK`); a 404 after a job had a status
is a move backwards too, unless the scenario itself wiped the job state (flush-state).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from penguin12.schemas import STATUS_RANK, TERMINAL_STATUSES, JobStatus

MISSING = "MISSING"  # a 404 for a job that was accepted


def rank(status: str) -> int:
    """A status's place in a job's life; -1 for none (a 404)."""
    try:
        return STATUS_RANK[JobStatus(status)]
    except ValueError:
        return -1


def is_terminal(status: str | None) -> bool:
    return status in TERMINAL_STATUSES


@dataclass
class Job:
    request_id: str
    accepted_at: float
    seen: list[str] = field(default_factory=list)
    max_rank: int = -1
    terminal: str | None = None
    backwards: list[str] = field(default_factory=list)
    gap: bool = False  # answered 404 while state was known lost (flush-state)
    finished_at: float | None = None  # when the poller first saw it terminal (time.time())


class Tracker:
    """Every accepted job and every status the poller saw for it."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.tolerate_missing = False  # set while job state is known to be lost (flush-state)
        self.first_poll_404 = 0
        self.status_5xx = Counter[int]()
        self.poll_errors = 0
        self.errors: dict[str, str] = {}  # request id -> error of a FAILED job
        self.answers: list[tuple[float, int]] = []  # (time.time(), HTTP status) of each submission

    def answered(self, code: int) -> None:
        with self.lock:
            self.answers.append((time.time(), code))

    def answers_since(self, t: float) -> list[int]:
        with self.lock:
            return [code for at, code in self.answers if at > t]

    def longest_completion_gap(self, start: float, end: float) -> float:
        """Seconds within [start, end] without any job finishing (the ends count as events)."""
        with self.lock:
            done = sorted(j.finished_at for j in self.jobs.values() if j.finished_at)
        points = [start, *(t for t in done if start < t < end), end]
        return max(b - a for a, b in itertools.pairwise(points))

    def first_finished(self) -> float:
        with self.lock:
            return min((j.finished_at for j in self.jobs.values() if j.finished_at), default=0.0)

    def finished_after(self, t: float, submitted_after: bool = False) -> int:
        with self.lock:
            return sum(
                1
                for j in self.jobs.values()
                if j.finished_at
                and j.finished_at > t
                and (not submitted_after or j.accepted_at > t)
            )

    def finished_count(self) -> int:
        with self.lock:
            return sum(1 for j in self.jobs.values() if j.terminal)

    def add(self, request_id: str) -> None:
        with self.lock:
            self.jobs[request_id] = Job(request_id, time.time())

    def open_ids(self) -> list[str]:
        with self.lock:
            return [j.request_id for j in self.jobs.values() if j.terminal is None]

    def observe(self, request_id: str, status: str) -> None:
        with self.lock:
            job = self.jobs[request_id]
            if job.seen and job.seen[-1] == status:
                return
            if status == MISSING:
                if job.max_rank < 0 and not job.seen:
                    self.first_poll_404 += 1
                elif self.tolerate_missing:
                    job.gap = True
                else:
                    job.backwards.append(f"{job.seen[-1] if job.seen else '?'}->404")
                job.seen.append(status)
                return
            status_rank = rank(status)
            if status_rank < job.max_rank or (job.terminal is not None and status != job.terminal):
                job.backwards.append(f"{'/'.join(job.seen[-2:])}->{status}")
            job.max_rank = max(job.max_rank, status_rank)
            if is_terminal(status) and job.terminal is None:
                job.terminal = status
                job.finished_at = time.time()
            job.seen.append(status)

    def record_failure(self, request_id: str, error: str) -> None:
        with self.lock:
            self.errors[request_id] = error

    def status_error(self, code: int | None) -> None:
        """A status poll answered 5xx (``code``) or not at all (None)."""
        with self.lock:
            if code is None:
                self.poll_errors += 1
            else:
                self.status_5xx[code] += 1
