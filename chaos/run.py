"""`make chaos`: prove the locally running system under faults, load and poison.

Runs against the stack `make run` starts (it starts it when it is not running), on 127.0.0.1 only.
Each scenario runs under steady load: a bounded, closed-loop submitter of real photos (a few
concurrent clients, each waiting for its answer before sending the next), while a poller follows
every accepted job's status and records the sequence of statuses it saw. Then a fault:

    kill-<service>      kill -9 a service, then `python -m penguin12_devstack up` (starts what is missing)
    restart-kafka       stop the broker (SIGTERM; kill -9 in CHAOS_FULL), then `up`
    restart-redis       stop Redis (SIGTERM; kill -9 in CHAOS_FULL), then `up`
    broker-loss         (a Kafka cluster: PENGUIN12_KAFKA_BROKERS=3) kill -9 the broker leading the
                        most partitions (reports the seconds completions stalled), restart it and
                        wait until it is back in every ISR, then kill two of three: submissions
                        must answer 503, never 202, until the brokers return
    slow-classifier     SIGSTOP the classifier for a while (backlog grows), then SIGCONT (it drains)
    flush-state         FLUSHDB on Redis DB0 (job state) mid-run: provenance must rebuild it from the
                        status topic, and every job must answer again, never lower than before
    poison              garbage, wrong schema version, missing fields and ~2 MB records written
                        straight into every topic: consumers survive, the dead-letter topic gets
                        them with a reason, their jobs (where the id is readable) are FAILED
    decode-bombs        32 (CHAOS_FULL: 64) small files that decode big, sent at once: the
                        preprocessor stays under 1 GiB, answers each (202, 413, or 503 with
                        Retry-After), and every bomb it accepts completes like the load's jobs

Per scenario it prints: submitted, accepted (202), refused (503/429: allowed while a dependency is
down), unavailable (no HTTP answer: the preprocessor itself was down), completed, failed, lost
(accepted, not terminal by the recovery deadline) and backwards (a job whose observed status
moved back, e.g. CLASSIFYING after COMPLETED, or 404 after it had a status). Targets: zero lost,
zero backwards, and the scenario's own checks. Exit status 1 when any target is missed.

    uv run python chaos/run.py                  # quick: every scenario, a few minutes
    CHAOS_FULL=1 uv run python chaos/run.py     # longer phases, more load, kill -9 everywhere
    uv run python chaos/run.py --only kill-classifier,poison
    uv run python chaos/run.py --list
    PENGUIN12_KAFKA_BROKERS=3 uv run python chaos/run.py   # on a 3-broker cluster (`make stop` first)

On a cluster, `broker-loss` replaces `restart-kafka` in the default list; on one broker it is left out.

A JSON summary goes to chaos/results/chaos-<time>.json (and latest.json).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".run"
RESULTS = ROOT / "chaos" / "results"
PHOTOS = Path(os.environ.get("PENGUIN12_CHAOS_PHOTOS", ROOT.parent / "shared" / "data" / "photos"))
PREPROCESSOR = os.environ.get("PENGUIN12_CHAOS_PREPROCESSOR_URL", "http://127.0.0.1:8000")
PROVENANCE = os.environ.get("PENGUIN12_CHAOS_PROVENANCE_URL", "http://127.0.0.1:8001")
API_KEY = os.environ.get("PENGUIN12_CHAOS_API_KEY", "")

RANK = {"PENDING": 0, "PROCESSING_FEATURES": 1, "CLASSIFYING": 2, "COMPLETED": 3, "FAILED": 3}
TERMINAL = {"COMPLETED", "FAILED"}
MISSING = "MISSING"  # a 404 for a job that was accepted


@dataclass(frozen=True)
class Profile:
    full: bool
    clients: int  # concurrent closed-loop submitters
    rate_per_client: float  # at most this many submissions per second per client
    warmup_s: float  # load before the fault
    fault_s: float  # how long the fault lasts (down, stopped)
    after_s: float  # load after recovery
    recovery_deadline_s: float  # after load stops, every accepted job must be terminal by then
    max_submissions: int  # per scenario, a hard bound on requests
    kill_signal: signal.Signals  # for Kafka and Redis

    @staticmethod
    def from_env() -> Profile:
        if os.environ.get("CHAOS_FULL", "") not in ("", "0"):
            return Profile(True, 4, 2.0, 15, 30, 20, 300, 3000, signal.SIGKILL)
        return Profile(False, 2, 1.5, 4, 8, 4, 120, 1000, signal.SIGTERM)


# ----------------------------------------------------------------------------- processes


def kafka_brokers() -> int:
    """The local Kafka's size, as `make run` reads it (PENGUIN12_KAFKA_BROKERS)."""
    return int(os.environ.get("PENGUIN12_KAFKA_BROKERS", "1"))


def pid_file(component: str) -> Path:
    if component in ("kafka", "redis"):
        return RUN / "data" / component / f"{component}.pid"
    if component.startswith("kafka-"):  # kafka-controller, kafka-broker-<id> (a cluster)
        return RUN / "data" / "kafka-cluster" / component.removeprefix("kafka-") / "kafka.pid"
    return RUN / "services" / component / "service.pid"


def read_pid(component: str) -> int | None:
    try:
        pid = int(pid_file(component).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def signal_component(component: str, sig: signal.Signals) -> int:
    pid = read_pid(component)
    if pid is None:
        raise RuntimeError(f"{component} is not running (no live pid in {pid_file(component)})")
    os.kill(pid, sig)
    return pid


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def devstack_up(log: Path) -> float:
    """`python -m penguin12_devstack up`: starts only what is missing, waits until ready."""
    started = time.monotonic()
    with open(log, "a") as out:
        out.write(f"\n=== up at {time.strftime('%H:%M:%S')}\n")
        out.flush()
        result = subprocess.run(
            [sys.executable, "-m", "penguin12_devstack", "up"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"`penguin12_devstack up` failed ({result.returncode}); see {log}")
    return time.monotonic() - started


def components() -> list[str]:
    services = RUN / "services"
    names = sorted(d.name for d in services.iterdir()) if services.is_dir() else []
    brokers = kafka_brokers()
    if brokers > 1:
        kafka = ["kafka-controller", *(f"kafka-broker-{i}" for i in range(1, brokers + 1))]
    else:
        kafka = ["kafka"]
    return [*kafka, "redis", *names]


def worker_names() -> list[str]:
    services = RUN / "services"
    names = sorted(d.name for d in services.iterdir()) if services.is_dir() else []
    return [n for n in names if n.startswith("feature_extractor")] + ["classifier"]


def readiness_urls() -> dict[str, str]:
    urls = {"preprocessor": f"{PREPROCESSOR}/readyz", "provenance": f"{PROVENANCE}/readyz"}
    urls["classifier"] = "http://127.0.0.1:9120/readyz"
    for name in worker_names():
        if name.startswith("feature_extractor-"):
            urls[name] = f"http://127.0.0.1:{9110 + int(name.rsplit('-', 1)[1])}/readyz"
    return urls


def all_ready(client: httpx.Client) -> dict[str, bool]:
    out = {}
    for name, url in readiness_urls().items():
        try:
            out[name] = client.get(url, timeout=3).status_code == 200
        except httpx.HTTPError:
            out[name] = False
    return out


# ----------------------------------------------------------------------------- load


def photo_variants(count: int, seed: int = 12) -> list[bytes]:
    """Real photos, each variant with a small coloured patch, so most jobs miss the cache."""
    from PIL import Image

    photos = sorted(PHOTOS.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos in {PHOTOS} (set PENGUIN12_CHAOS_PHOTOS)")
    rng = random.Random(seed)
    images = [Image.open(p).convert("RGB") for p in photos]
    out = []
    for i in range(count):
        image = images[i % len(images)].copy()
        w, h = image.size
        patch = max(8, min(w, h) // 6)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        x, y = rng.randrange(w - patch), rng.randrange(h - patch)
        image.paste(colour, (x, y, x + patch, y + patch))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=88)
        out.append(buffer.getvalue())
    return out


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
            rank = RANK.get(status, -1)
            if rank < job.max_rank or (job.terminal is not None and status != job.terminal):
                job.backwards.append(f"{'/'.join(job.seen[-2:])}->{status}")
            job.max_rank = max(job.max_rank, rank)
            if status in TERMINAL and job.terminal is None:
                job.terminal = status
                job.finished_at = time.time()
            job.seen.append(status)


class Load:
    """Closed-loop submitters, bounded in count and time, all to 127.0.0.1."""

    def __init__(
        self,
        tracker: Tracker,
        images: list[bytes],
        clients: int,
        max_submissions: int,
        rate_per_client: float,
    ):
        self.tracker = tracker
        self.interval = 1.0 / rate_per_client
        self.images = images
        self.clients = clients
        self.max_submissions = max_submissions
        self.counts: Counter[str] = Counter()
        self.codes: Counter[int] = Counter()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.stop_event.clear()
        self.threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True, name=f"submit-{i}")
            for i in range(self.clients)
        ]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _take(self) -> bool:
        with self.lock:
            if self.counts["submitted"] >= self.max_submissions:
                return False
            self.counts["submitted"] += 1
            return True

    def _client(self, index: int) -> None:
        rng = random.Random(index)
        headers = {"X-API-Key": API_KEY} if API_KEY else {}
        with httpx.Client(timeout=20, headers=headers) as client:
            next_at = time.monotonic()
            while not self.stop_event.is_set() and self._take():
                data = rng.choice(self.images)
                next_at += self.interval
                pause = 0.0
                try:
                    response = client.post(
                        f"{PREPROCESSOR}/v1/infer",
                        files={"file": ("photo.jpg", data, "image/jpeg")},
                    )
                except httpx.TimeoutException:
                    # No answer in time: the job may or may not be queued; never counted accepted.
                    with self.lock:
                        self.counts["timeouts"] += 1
                except httpx.HTTPError:
                    with self.lock:
                        self.counts["unavailable"] += 1
                    pause = 0.5
                else:
                    code = response.status_code
                    self.tracker.answered(code)
                    with self.lock:
                        self.codes[code] += 1
                    if code == 202:
                        self.tracker.add(response.json()["request_id"])
                        with self.lock:
                            self.counts["accepted"] += 1
                    elif code in (429, 503):
                        with self.lock:
                            self.counts["refused"] += 1
                        pause = min(1.0, float(response.headers.get("Retry-After", "1") or 1))
                    else:
                        with self.lock:
                            self.counts["other"] += 1
                        pause = 0.5
                now = time.monotonic()
                next_at = max(next_at, now - self.interval)  # no burst to catch up after a stall
                self.stop_event.wait(max(pause, next_at - now))


class Poller:
    """Follows every open job's status until it is terminal."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="poller")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)

    def poll_once(self, client: httpx.Client, request_id: str) -> None:
        try:
            response = client.get(f"{PROVENANCE}/v1/status/{request_id}")
        except httpx.HTTPError:
            self.tracker.poll_errors += 1
            return
        if response.status_code == 200:
            body = response.json()
            if body["status"] == "FAILED":
                self.tracker.errors[request_id] = str(body.get("error"))
            self.tracker.observe(request_id, body["status"])
        elif response.status_code == 404:
            self.tracker.observe(request_id, MISSING)
        elif response.status_code >= 500:
            with self.tracker.lock:
                self.tracker.status_5xx[response.status_code] += 1

    def _run(self) -> None:
        headers = {"X-API-Key": API_KEY} if API_KEY else {}
        with httpx.Client(timeout=5, headers=headers) as client:
            while not self.stop_event.is_set():
                ids = self.tracker.open_ids()
                for request_id in ids:
                    if self.stop_event.is_set():
                        return
                    self.poll_once(client, request_id)
                self.stop_event.wait(0.2 if ids else 0.5)


# ----------------------------------------------------------------------------- scenarios


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
class Outcome:
    name: str
    description: str
    counts: dict[str, int] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    victims: set[str] = field(default_factory=set)  # components the scenario itself stops

    @property
    def passed(self) -> bool:
        return self.error is None and all(self.checks.values())


@contextlib.contextmanager
def under_load(ctx: Context, outcome: Outcome) -> Iterator[Tracker]:
    """Start load and polling; afterwards wait for recovery and fill in the counts."""
    tracker = Tracker()
    load = Load(
        tracker,
        ctx.images,
        ctx.profile.clients,
        ctx.profile.max_submissions,
        ctx.profile.rate_per_client,
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
        deadline = settle_started + ctx.profile.recovery_deadline_s
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
    outcome.counts.update(
        submitted=load.counts["submitted"],
        accepted=load.counts["accepted"],
        refused=load.counts["refused"],
        unavailable=load.counts["unavailable"],
        timeouts=load.counts["timeouts"],
        other=load.counts["other"],
        completed=finals["COMPLETED"],
        failed=finals["FAILED"],
        lost=len(lost),
        backwards=len(backwards),
    )
    outcome.checks["zero lost"] = not lost
    outcome.checks["zero backwards"] = not backwards
    outcome.checks["some load accepted"] = load.counts["accepted"] > 0
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


def kill_service(component: str) -> Callable[[Context], Outcome]:
    def run(ctx: Context) -> Outcome:
        outcome = Outcome(f"kill-{component}", f"kill -9 {component} under load, then `up`")
        outcome.victims.add(component)
        with under_load(ctx, outcome):
            ctx.wait(ctx.profile.warmup_s)
            pid = signal_component(component, signal.SIGKILL)
            wait_dead(pid, 10)
            outcome.notes.append(f"killed pid {pid}")
            ctx.wait(ctx.profile.fault_s)
            outcome.details["restart_s"] = round(devstack_up(ctx.log), 1)
            if ctx.profile.full:  # a second crash soon after the restart
                ctx.wait(3)
                pid = signal_component(component, signal.SIGKILL)
                wait_dead(pid, 10)
                outcome.details["restart2_s"] = round(devstack_up(ctx.log), 1)
            ctx.wait(ctx.profile.after_s)
        return outcome

    return run


def restart_infra(component: str) -> Callable[[Context], Outcome]:
    def run(ctx: Context) -> Outcome:
        sig = ctx.profile.kill_signal
        outcome = Outcome(f"restart-{component}", f"{sig.name} {component} under load, then `up`")
        outcome.victims.add(component)
        with under_load(ctx, outcome):
            ctx.wait(ctx.profile.warmup_s)
            pid = signal_component(component, sig)
            stopped = time.monotonic()
            if not wait_dead(pid, 60):
                os.kill(pid, signal.SIGKILL)
                wait_dead(pid, 10)
                outcome.notes.append(f"{component} ignored {sig.name} for 60 s: SIGKILLed")
            outcome.details["stop_s"] = round(time.monotonic() - stopped, 1)
            ctx.wait(ctx.profile.fault_s)
            outcome.details["restart_s"] = round(devstack_up(ctx.log), 1)
            ctx.wait(ctx.profile.after_s)
        return outcome

    return run


def slow_classifier(ctx: Context) -> Outcome:
    stop_s = ctx.profile.fault_s * 2
    outcome = Outcome("slow-classifier", f"SIGSTOP the classifier {stop_s:.0f} s, then SIGCONT")
    with under_load(ctx, outcome) as tracker:
        ctx.wait(ctx.profile.warmup_s)
        pid = signal_component("classifier", signal.SIGSTOP)
        try:
            ctx.wait(stop_s)
            with tracker.lock:
                backlog = sum(1 for j in tracker.jobs.values() if j.terminal is None)
            outcome.details["backlog_at_sigcont"] = backlog
        finally:
            os.kill(pid, signal.SIGCONT)
        started = time.monotonic()
        ctx.wait(ctx.profile.after_s)
    outcome.details["drain_s"] = round(time.monotonic() - started, 1)
    outcome.checks["backlog grew while stopped"] = outcome.details["backlog_at_sigcont"] > 0
    return outcome


def flush_state(ctx: Context) -> Outcome:
    import redis

    outcome = Outcome(
        "flush-state", "FLUSHDB Redis DB0 (job state) mid-run: provenance rebuilds it from Kafka"
    )
    from penguin12.settings import CommonSettings
    from penguin12.state import redis_options

    client = redis.Redis.from_url(_state_url(), socket_timeout=5, **redis_options(CommonSettings()))
    before: dict[str, int] = {}
    with under_load(ctx, outcome) as tracker:
        ctx.wait(ctx.profile.warmup_s)
        # Let the first jobs finish, so that finished answers have to come back too.
        wait_until(
            lambda: sum(1 for j in tracker.jobs.values() if j.terminal) >= 3, 60, "finished jobs"
        )
        with tracker.lock:
            before = {j.request_id: j.max_rank for j in tracker.jobs.values() if j.max_rank >= 0}
            tracker.tolerate_missing = True
        markers_before = sorted(k.decode() for k in client.scan_iter("penguin12:marker:*"))
        markers_before += [k for k in ["penguin12:state:epoch"] if client.exists(k)]
        client.flushdb()
        flushed_at = time.monotonic()
        outcome.notes.append(f"flushed DB0 holding {len(before)} known jobs")
        # How long until every job known before the flush answers again?
        back_after: float | None = None
        deadline = flushed_at + ctx.profile.recovery_deadline_s
        while time.monotonic() < deadline:
            missing = [rid for rid in before if _status_of(ctx.http, rid) is None]
            if not missing:
                back_after = time.monotonic() - flushed_at
                break
            time.sleep(0.5)
        markers_after = sorted(k.decode() for k in client.scan_iter("penguin12:marker:*"))
        markers_after += [k for k in ["penguin12:state:epoch"] if client.exists(k)]
        with tracker.lock:
            tracker.tolerate_missing = False
        ctx.wait(ctx.profile.after_s)
    not_back = [rid for rid in before if _status_of(ctx.http, rid) is None]
    lower = [rid for rid in before if RANK.get(_status_of(ctx.http, rid) or "", -1) < before[rid]]
    outcome.counts["known_before_flush"] = len(before)
    outcome.counts["not_back"] = len(not_back)
    outcome.counts["back_lower"] = len(lower)
    outcome.details.update(
        answers_back_after_s=None if back_after is None else round(back_after, 1),
        markers_before=markers_before,
        markers_after=markers_after,
        not_back_examples=not_back[:5],
    )
    outcome.checks["every answer came back"] = not not_back
    outcome.checks["no answer came back lower"] = not lower
    if not_back:
        outcome.notes.append(
            f"{len(not_back)} of {len(before)} jobs still 404 {ctx.profile.recovery_deadline_s:.0f} s "
            "after the flush: job state was NOT rebuilt from the status topic"
        )
    else:
        outcome.notes.append(f"all answers back {back_after:.1f} s after the flush")
    return outcome


def _state_url() -> str:
    port = os.environ.get("PENGUIN12_LOCAL_REDIS_PORT", "6379")
    return os.environ.get("PENGUIN12_STATE_REDIS_URL", f"redis://127.0.0.1:{port}/0")


def _status_of(client: httpx.Client, request_id: str) -> str | None:
    try:
        response = client.get(f"{PROVENANCE}/v1/status/{request_id}", timeout=5)
    except httpx.HTTPError:
        return None
    return str(response.json()["status"]) if response.status_code == 200 else None


# --- poison


@dataclass
class Poison:
    topic_key: str  # preprocessed / features / status / dead_letter
    kind: str
    value: bytes | None
    request_id: str | None = None
    expect_reason: str | None = None
    compression: str = "none"
    outcome: str = ""  # filled in: "produced", "refused by broker: ..."
    source: str | None = None  # "topic:partition:offset" once produced


def _poison_set() -> list[Poison]:
    now = time.time()

    def rid() -> str:
        return f"chaos-poison-{uuid.uuid4()}"

    def record(**fields: Any) -> bytes:
        return json.dumps(fields).encode()

    out: list[Poison] = []
    schemas = {
        "preprocessed": "ImageJob",
        "features": "FeaturesMessage",
        "status": "StatusUpdate",
    }
    # Too big to parse: the worker fails the job by the record's key (its request id).
    oversized = "-byte limit"
    for topic, schema in schemas.items():
        a, b, c, d, e = rid(), rid(), rid(), rid(), rid()
        incompressible = base64.b64encode(os.urandom(1_500_000)).decode()  # ~2 MB
        out += [
            Poison(topic, "garbage bytes", b"\x00\xff\xfe garbage \x9c" + os.urandom(64)),
            Poison(topic, "JSON array", b"[1, 2, 3]"),
            Poison(topic, "empty value", None),
            Poison(
                topic,
                "wrong schema version",
                record(schema_version=99, request_id=a, submitted_at=now),
                a,
                "unsupported schema_version",
            ),
            Poison(
                topic,
                "missing fields",
                record(schema_version=1, request_id=b, submitted_at=now),
                b,
                f"invalid {schema}",
            ),
            Poison(
                topic,
                "wrong types",
                record(schema_version=1, request_id=c, submitted_at="yesterday", status=7),
                c,
                f"invalid {schema}",
            ),
            Poison(
                topic,
                "oversized ~2 MB, incompressible",
                record(schema_version=1, request_id=d, submitted_at=now, junk=incompressible),
                d,
                oversized,
            ),
            Poison(
                topic,
                "oversized ~2 MB, compressible (lz4)",
                record(schema_version=1, request_id=e, submitted_at=now, junk="A" * 2_000_000),
                e,
                oversized,
                compression="lz4",
            ),
        ]
    out.append(Poison("dead_letter", "garbage without headers", b"\x00not a dead letter\xff"))
    return out


def poison(ctx: Context) -> Outcome:
    from confluent_kafka import KafkaError, Producer

    from penguin12.kafka import client_config
    from penguin12.settings import CommonSettings
    from penguin12_ops.dlq import DlqSettings, read_dead_letters

    settings = CommonSettings()
    topics = {
        "preprocessed": settings.topic_preprocessed,
        "features": settings.topic_features,
        "status": settings.topic_status,
        "dead_letter": settings.topic_dead_letter,
    }
    outcome = Outcome("poison", "poison records written straight into every topic, under load")
    dlq_settings = DlqSettings()
    dlq_start = _dlq_end(dlq_settings)
    records = _poison_set()
    with under_load(ctx, outcome):
        ctx.wait(ctx.profile.warmup_s)
        for compression in ("none", "lz4"):
            producer = Producer(
                {
                    **client_config(settings),
                    "message.max.bytes": 4_000_000,
                    "compression.type": compression,
                    "enable.idempotence": True,
                    "acks": "all",
                }
            )
            for item in [r for r in records if r.compression == compression]:

                def report(err: KafkaError | None, msg: Any, item: Poison = item) -> None:
                    if err is None:
                        item.outcome = "produced"
                        item.source = f"{msg.topic()}:{msg.partition()}:{msg.offset()}"
                    else:
                        item.outcome = f"refused by broker: {err.name()}"

                try:
                    producer.produce(
                        topics[item.topic_key], item.value, key=item.request_id, on_delivery=report
                    )
                except Exception as exc:
                    item.outcome = f"refused by producer: {exc}"
            producer.flush(30)
        # The consumers must carry on: load continues, and every produced poison is dead-lettered.
        ctx.wait(ctx.profile.after_s)
        expected = [r for r in records if r.outcome == "produced" and r.topic_key != "dead_letter"]

        def dead_letters() -> list[Any]:
            return [
                d
                for d in read_dead_letters(dlq_settings)
                if d.offset >= dlq_start.get(d.partition, 0)
            ]

        def all_dead_lettered() -> bool:
            sources = {d.source for d in dead_letters()}
            return all(r.source in sources for r in expected)

        with contextlib.suppress(TimeoutError):
            wait_until(all_dead_lettered, 60, "poison in the dead-letter topic")
        found = dead_letters()
    by_source = {d.source: d for d in found}
    states = _final_states(ctx.http, [r.request_id for r in records if r.request_id], 30)
    rows = []
    for item in records:
        row: dict[str, Any] = {
            "topic": item.topic_key,
            "kind": item.kind,
            "outcome": item.outcome or "no delivery report",
        }
        if item.outcome == "produced" and item.topic_key != "dead_letter":
            letter = by_source.get(item.source or "")
            row["dead_lettered"] = letter is not None
            row["reason"] = letter.reason if letter else None
            if item.request_id:
                state = states.get(item.request_id)
                row["job_status"] = state.get("status") if state else None
                row["job_error"] = (state or {}).get("error")
        rows.append(row)
    outcome.details["poison"] = rows
    produced = [r for r in rows if r.get("dead_lettered") is not None]
    outcome.counts["poison_produced"] = len(produced)
    outcome.counts["poison_refused_by_broker"] = sum(
        1 for r in rows if str(r["outcome"]).startswith("refused")
    )
    outcome.counts["dead_lettered"] = sum(1 for r in produced if r["dead_lettered"])
    if outcome.counts.get("lost"):
        outcome.notes.append(
            "jobs stopped finishing after the poison: a consumer is stuck on a record it cannot "
            "dead-letter (grep 'transient failure' .run/logs/*.log). The poison stays in the topic: "
            "until the workers are fixed, `make stop && rm -rf .run/data && make run` unsticks the "
            "local stack (it deletes the local Kafka and Redis data)"
        )
    outcome.checks["every produced poison dead-lettered"] = all(
        r["dead_lettered"] for r in produced
    )
    with_id = [
        (item, row)
        for item, row in zip(records, rows, strict=True)
        if "job_status" in row and item.request_id
    ]
    outcome.checks["poison with a readable id FAILED with its reason"] = all(
        row["job_status"] == "FAILED"
        and item.expect_reason is not None
        and item.expect_reason.lower() in (row["job_error"] or "").lower()
        for item, row in with_id
    )
    listing = subprocess.run(
        [sys.executable, "-m", "penguin12_ops.dlq", "list", "--limit", "100"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    outcome.checks["`penguin12-dlq list` reads the dead-letter topic"] = listing.returncode == 0
    if listing.returncode:
        outcome.notes.append(f"dlq list failed: {listing.stderr[-500:]}")
    return outcome


def _partition_layout(settings: Any, topics: list[str] | None = None) -> dict[Any, Any]:
    """(topic, partition) -> (leader, ISR) for ``topics`` (all topics, internal ones too: None)."""
    from confluent_kafka.admin import AdminClient

    from penguin12.kafka import client_config

    metadata = AdminClient(client_config(settings)).list_topics(timeout=10)
    names = topics if topics is not None else list(metadata.topics)
    return {
        (name, p): (part.leader, list(part.isrs))
        for name in names
        if name in metadata.topics
        for p, part in metadata.topics[name].partitions.items()
    }


def broker_loss(ctx: Context) -> Outcome:
    """Issue #13 on the local cluster: one broker lost, restarted, then two lost at once."""
    from penguin12.settings import CommonSettings

    outcome = Outcome(
        "broker-loss",
        "kill -9 the busiest broker, restart it, then lose 2 of 3 (503, never 202), restore",
    )
    brokers = kafka_brokers()
    if brokers < 3:
        outcome.error = (
            "needs a 3-broker cluster: `make stop`, then PENGUIN12_KAFKA_BROKERS=3 make chaos"
        )
        return outcome
    settings = CommonSettings(
        kafka_bootstrap=",".join(f"127.0.0.1:{p}" for p in _local_broker_ports(brokers))
    )
    pipeline = [
        settings.topic_preprocessed,
        settings.topic_features,
        settings.topic_status,
        settings.topic_dead_letter,
    ]
    with under_load(ctx, outcome) as tracker:
        ctx.wait(ctx.profile.warmup_s)
        wait_until(lambda: tracker.finished_after(0), 60, "a first finished job")
        # Baseline from this run: the longest wait between completions under the same load
        # before any fault (the stall below is read against it).
        ctx.wait(ctx.profile.warmup_s)
        outcome.details["baseline_gap_s"] = round(
            tracker.longest_completion_gap(tracker.first_finished(), time.time()), 1
        )
        counts = Counter(leader for leader, _ in _partition_layout(settings).values())
        victim, led = counts.most_common(1)[0]
        name = f"kafka-broker-{victim}"
        outcome.victims.add(name)
        killed_at = time.time()
        pid = signal_component(name, signal.SIGKILL)
        wait_dead(pid, 10)
        outcome.notes.append(f"killed broker {victim} (pid {pid}), leader of {led} partitions")
        wait_until(
            lambda: tracker.finished_after(killed_at, submitted_after=True) >= 3,
            180,
            "jobs submitted after the kill to finish",
        )
        ctx.wait(ctx.profile.fault_s)
        stall = tracker.longest_completion_gap(killed_at, time.time())
        outcome.details["stall_s"] = round(stall, 1)
        outcome.details["refused_during_failover"] = sum(
            c != 202 for c in tracker.answers_since(killed_at)
        )
        outcome.checks["jobs kept completing with a broker gone"] = True  # the wait above

        restarted_at = time.time()
        devstack_up(ctx.log)  # starts the missing broker on its data
        wait_until(
            lambda: all(victim in isr for _, isr in _partition_layout(settings, pipeline).values()),
            240,
            f"broker {victim} back in every ISR",
        )
        outcome.details["catch_up_s"] = round(time.time() - restarted_at, 1)

        others = [b for b in range(1, brokers + 1) if b != victim][:2]
        outcome.victims.update(f"kafka-broker-{b}" for b in others)
        down_at = time.time()
        for broker in others:
            wait_dead(signal_component(f"kafka-broker-{broker}", signal.SIGKILL), 10)

        def refusing() -> bool:
            recent = tracker.answers_since(down_at)
            return len(recent) >= 3 and recent[-3:] == [503, 503, 503]

        wait_until(refusing, 120, "503 answers with 2 of 3 brokers gone")
        first_503 = next(t for t, c in tracker.answers if t > down_at and c == 503)
        outcome.details["first_503_after_s"] = round(first_503 - down_at, 1)
        ctx.wait(ctx.profile.fault_s)
        # Before the first 503 a submission may still have been stored on 2 replicas: those 202s
        # are real jobs and must complete (the zero-lost check). After it, a 202 would be a lie.
        after = tracker.answers_since(first_503)
        outcome.details["answers_with_one_broker"] = dict(Counter(after))
        outcome.checks["no 202 once refusing with one broker"] = 202 not in after
        back_at = time.time()
        outcome.details["restart_s"] = round(devstack_up(ctx.log), 1)
        wait_until(
            lambda: tracker.finished_after(back_at, submitted_after=True) >= 3,
            240,
            "jobs to complete after the brokers returned",
        )
        outcome.details["recovered_after_s"] = round(time.time() - back_at, 1)
        ctx.wait(ctx.profile.after_s)
    return outcome


def _local_broker_ports(brokers: int) -> list[int]:
    from penguin12_devstack.stack import Ports

    return Ports().kafka_brokers(brokers)


def _dlq_end(settings: Any) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    from penguin12.kafka import client_config

    consumer = Consumer({**client_config(settings), "group.id": "chaos-probe"})
    try:
        topic = settings.topic_dead_letter
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        parts = sorted(metadata.partitions) if metadata and not metadata.error else []
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in parts
        }
    finally:
        consumer.close()


def _final_states(
    client: httpx.Client, request_ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """The status bodies of these jobs, waiting up to ``timeout`` in all for them to be final."""
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for request_id in request_ids:
            if request_id in found and found[request_id].get("status") in TERMINAL:
                continue
            try:
                response = client.get(f"{PROVENANCE}/v1/status/{request_id}", timeout=5)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                found[request_id] = response.json()
        done = all(found.get(r, {}).get("status") in TERMINAL for r in request_ids)
        if done or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


# --- hostile clients (issue #11)


def hostile_clients(ctx: Context) -> Outcome:
    """Idempotency races and dead-letter re-opens with skewed clocks, under load."""
    import concurrent.futures
    import uuid

    from confluent_kafka import Producer

    from penguin12.schemas import JobStatus, ModelInfo, Result, StatusUpdate, encode
    from penguin12.settings import CommonSettings

    outcome = Outcome(
        "hostile-clients",
        "same Idempotency-Key sent 8x at once; re-open + COMPLETED with the replayer's clock 3 s "
        "ahead/behind; re-open of a COMPLETED job",
    )
    headers = {"X-API-Key": API_KEY} if API_KEY else {}
    race_codes: Counter[int] = Counter()
    split_keys: list[str] = []
    with under_load(ctx, outcome) as tracker:
        ctx.wait(ctx.profile.warmup_s)

        # 1. Eight copies of one request at once: one job, the others 409 or its ticket.
        def post(key: str, image: bytes) -> httpx.Response:
            return httpx.post(
                f"{PREPROCESSOR}/v1/infer",
                files={"file": ("photo.jpg", image, "image/jpeg")},
                headers={**headers, "Idempotency-Key": key},
                timeout=30,
            )

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for round_ in range(5):
                key = f"chaos-{uuid.uuid4()}"
                image = ctx.images[round_ % len(ctx.images)]
                answers = list(pool.map(post, [key] * 8, [image] * 8))
                race_codes.update(r.status_code for r in answers)
                ids = {r.json()["request_id"] for r in answers if r.status_code == 202}
                if len(ids) > 1:
                    split_keys.append(key)
                for rid in ids:
                    tracker.add(rid)

        # 2. Re-open with skewed clocks, and a re-open of a COMPLETED job, on the status topic.
        settings = CommonSettings()
        model = ModelInfo(name="chaos", version="000000000000", architecture="tiny", demo=True)
        result = Result(
            prediction="REAL", confidence=0.9, fake_probability=0.1, model=model, demo=True
        )
        expected: dict[str, str] = {}
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
        now = time.time()
        for case, skew in (("ahead", 3.0), ("behind", -3.0), ("completed", 0.0)):
            rid = f"chaos-reopen-{case}-{uuid.uuid4().hex[:8]}"
            history = [
                StatusUpdate(request_id=rid, submitted_at=now, status=JobStatus.PENDING, at=now,
                             service="chaos"),
                StatusUpdate(request_id=rid, submitted_at=now, status=JobStatus.COMPLETED,
                             at=now + 1, service="chaos", result=result)
                if case == "completed"
                else StatusUpdate(request_id=rid, submitted_at=now, status=JobStatus.FAILED,
                                  at=now + 1, service="chaos", error="dead-lettered"),
                StatusUpdate(request_id=rid, submitted_at=now, status=JobStatus.PENDING,
                             at=now + 2 + skew, service="dlq-replayer", reopen=True),
            ]  # fmt: skip
            if case != "completed":
                history.append(
                    StatusUpdate(request_id=rid, submitted_at=now, status=JobStatus.COMPLETED,
                                 at=now + 2, service="chaos", result=result)
                )  # fmt: skip
            for update in history:
                producer.produce(settings.topic_status, encode(update), key=rid)
            expected[rid] = "COMPLETED"
        producer.flush(30)
        reopened = wait_until(
            lambda: all(_status_of(ctx.http, rid) == "COMPLETED" for rid in expected) or None,
            60,
            "the re-opened jobs to complete",
        )
        ctx.wait(ctx.profile.after_s)
    outcome.counts["race_requests"] = sum(race_codes.values())
    outcome.details["race_codes"] = dict(race_codes)
    outcome.checks["an Idempotency-Key race answers only 202 or 409"] = set(race_codes) <= {
        202,
        409,
    }
    outcome.checks["an Idempotency-Key names one job"] = not split_keys
    outcome.checks["re-opened jobs complete whatever the clock skew"] = bool(reopened)
    outcome.checks["a COMPLETED job stays COMPLETED after a re-open"] = all(
        _status_of(ctx.http, rid) == "COMPLETED" for rid in expected
    )
    return outcome


def decode_bombs(ctx: Context) -> Outcome:
    sys.path.insert(0, str(ROOT))
    from bench.hostile_uploads import build_mix, burst

    count = 64 if ctx.profile.full else 32
    outcome = Outcome(
        "decode-bombs",
        f"{count} small files that decode big (16-bit PNG, lossless WebP, RLE BMP) at once",
    )
    headers = {"X-API-Key": API_KEY} if API_KEY else None
    with under_load(ctx, outcome) as tracker:
        ctx.wait(ctx.profile.warmup_s)
        pid = read_pid("preprocessor")
        if pid is None:
            raise RuntimeError("the preprocessor is not running")
        result = burst(PREPROCESSOR, pid, build_mix(count), headers=headers)
        for bomb in result.outcomes:
            if bomb.request_id:  # followed to the end like the load's own jobs
                tracker.add(bomb.request_id)
        ctx.wait(ctx.profile.after_s)
    outcome.counts.update(bombs=len(result.outcomes), bombs_accepted=result.accepted)
    outcome.details.update(
        bomb_statuses=result.statuses,
        bomb_refusals=sorted({f"{b.status}: {b.detail}" for b in result.outcomes if b.detail}),
        preprocessor_rss_before_mb=round(result.rss_before / 2**20, 1),
        preprocessor_peak_rss_mb=round(result.peak_rss / 2**20, 1),
    )
    outcome.checks["every bomb answered"] = result.unanswered == 0
    outcome.checks["bombs: no 5xx but 503 with Retry-After"] = result.bad_server_errors == 0
    outcome.checks["preprocessor peak RSS < 1 GiB"] = result.peak_rss < 2**30
    outcome.checks["preprocessor alive and ready"] = result.alive_after and result.ready_after
    return outcome


SCENARIOS: dict[str, Callable[[Context], Outcome]] = {
    "kill-feature_extractor-0": kill_service("feature_extractor-0"),
    "kill-classifier": kill_service("classifier"),
    "kill-provenance": kill_service("provenance"),
    "kill-preprocessor": kill_service("preprocessor"),
    "restart-kafka": restart_infra("kafka"),
    "restart-redis": restart_infra("redis"),
    "broker-loss": broker_loss,
    "slow-classifier": slow_classifier,
    "flush-state": flush_state,
    "poison": poison,
    "hostile-clients": hostile_clients,
    "decode-bombs": decode_bombs,
}


# ----------------------------------------------------------------------------- main


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


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    default = [
        n for n in SCENARIOS if n != ("restart-kafka" if kafka_brokers() > 1 else "broker-loss")
    ]
    names = [n.strip() for n in args.only.split(",")] if args.only else default
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; see --list")

    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so a SIGSTOPped classifier gets SIGCONT.
    signal.signal(signal.SIGTERM, _interrupt)
    profile = Profile.from_env()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log = RESULTS / f"devstack-{stamp}.log"
    print(f"chaos: {'FULL' if profile.full else 'quick'} mode, scenarios: {', '.join(names)}")
    images = photo_variants(300 if profile.full else 120)
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with httpx.Client(timeout=5) as http:
        ctx = Context(profile, images, log, http)
        print("chaos: making sure the stack is up (`python -m penguin12_devstack up`) ...")
        ctx.ensure_up()
        for index, name in enumerate(names):
            if index:
                try:
                    ctx.ensure_up()  # every scenario starts from a healthy stack
                except Exception as exc:
                    print(f"\ncould not restore the stack, stopping here: {exc}")
                    break
            print(f"\n--- {name}", flush=True)
            t0 = time.monotonic()
            try:
                outcome = SCENARIOS[name](ctx)
            except KeyboardInterrupt:
                print("interrupted; bringing the stack back up")
                with contextlib.suppress(Exception):
                    devstack_up(log)
                raise
            except Exception as exc:
                outcome = Outcome(name, "crashed", error=f"{type(exc).__name__}: {exc}")
            outcome.seconds = round(time.monotonic() - t0, 1)
            outcomes.append(outcome)
            print(f"    {json.dumps(outcome.counts)}  ({outcome.seconds} s)")
            for check, ok in outcome.checks.items():
                print(f"    [{'ok' if ok else 'MISSED'}] {check}")
            for note in outcome.notes:
                print(f"    note: {note}")
            if outcome.error:
                print(f"    ERROR: {outcome.error}")
    print("\n" + table(outcomes))
    passed = all(o.passed for o in outcomes) and len(outcomes) == len(names)
    summary = {
        "mode": "full" if profile.full else "quick",
        "profile": {
            k: (v.name if isinstance(v, signal.Signals) else v) for k, v in vars(profile).items()
        },
        "started": stamp,
        "seconds": round(time.monotonic() - started, 1),
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
    out = RESULTS / f"chaos-{stamp}.json"
    out.write_text(json.dumps(summary, indent=2))
    (RESULTS / "latest.json").write_text(json.dumps(summary, indent=2))
    print(f"\nsummary: {out}  ({'PASS' if passed else 'FAIL'}, {summary['seconds']} s)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
