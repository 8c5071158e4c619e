"""Issue #13: the pipeline on a replicated cluster that loses brokers.

Real brokers from the project's Kafka jars: a 3-broker KRaft cluster (plus its controller) at
replication factor 3 and min.insync.replicas 2 whose brokers are killed with SIGKILL under steady
load, and the topic set-up's replication checks. JVM heaps are small and the deadlines generous:
this machine may be shared and slow. (The secured broker is in test_secure_transport.py.)
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from conftest import ROOT, Infra, Stack, wait_for
from penguin12.kafka import ensure_topics
from penguin12.settings import CommonSettings
from penguin12_devstack.kafka import (
    KafkaCluster,
    ensure_kafka_jars,
    start_kafka_cluster,
)
from penguin12_devstack.ports import free_ports

RANK = {"PENDING": 0, "PROCESSING_FEATURES": 1, "CLASSIFYING": 2, "COMPLETED": 3, "FAILED": 3}


@dataclass
class Seen:
    submitted_at: float
    history: list[str] = field(default_factory=list)
    finished_at: float | None = None


class Traffic:
    """Steady load (one submission every `interval_s`) and a poller recording every job's path."""

    def __init__(self, stack: Stack, image: bytes, interval_s: float = 0.5):
        self._stack = stack
        self._image = image
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.jobs: dict[str, Seen] = {}
        self.answers: list[tuple[float, int]] = []  # (time, HTTP status or 0 = no answer)
        self._threads = [
            threading.Thread(target=self._submit, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_submitting()
        self._threads[1].join(timeout=30)

    def stop_submitting(self) -> None:
        self._stop.set()
        self._threads[0].join(timeout=30)

    def _submit(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    response = client.post(
                        self._stack.url("preprocessor", "/v1/infer"),
                        files={"file": ("photo.jpg", self._image, "image/jpeg")},
                    )
                    code = response.status_code
                except httpx.HTTPError:
                    code = 0
                now = time.monotonic()
                with self._lock:
                    self.answers.append((now, code))
                    if code == 202:
                        self.jobs[response.json()["request_id"]] = Seen(now)
                self._stop.wait(max(0.0, self._interval_s - (now - began)))

    def _poll(self) -> None:
        with httpx.Client(timeout=10) as client:
            while True:
                open_ids = self.open_ids()
                if self._stop.is_set() and (not open_ids or self._deadline_passed()):
                    return
                for request_id in open_ids:
                    try:
                        response = client.get(
                            self._stack.url("provenance", f"/v1/status/{request_id}")
                        )
                    except httpx.HTTPError:
                        continue
                    if response.status_code == 404:
                        status = "MISSING"
                    elif response.status_code == 200:
                        status = response.json()["status"]
                    else:
                        continue
                    job = self.jobs[request_id]
                    if not job.history or job.history[-1] != status:
                        job.history.append(status)
                    if status in ("COMPLETED", "FAILED") and job.finished_at is None:
                        job.finished_at = time.monotonic()
                time.sleep(0.2)

    _final_deadline: float | None = None

    def _deadline_passed(self) -> bool:
        return self._final_deadline is not None and time.monotonic() > self._final_deadline

    def finish(self, timeout: float) -> None:
        """Stop submitting; let the poller follow open jobs for up to ``timeout`` seconds."""
        self._final_deadline = time.monotonic() + timeout
        self.stop_submitting()
        self._threads[1].join(timeout=timeout + 30)

    def open_ids(self) -> list[str]:
        with self._lock:
            return [i for i, j in self.jobs.items() if j.finished_at is None]

    def first_finished(self) -> float:
        with self._lock:
            return min(j.finished_at for j in self.jobs.values() if j.finished_at)

    def completions_after(self, t: float) -> int:
        with self._lock:
            return sum(1 for j in self.jobs.values() if j.finished_at and j.finished_at > t)

    def submitted_and_completed_after(self, t: float) -> int:
        with self._lock:
            return sum(
                1 for j in self.jobs.values() if j.submitted_at > t and j.finished_at is not None
            )

    def answers_since(self, t: float) -> list[int]:
        with self._lock:
            return [code for at, code in self.answers if at > t]

    def longest_gap(self, start: float, end: float) -> float:
        """Longest time without a completed job within [start, end] (ends count as events)."""
        with self._lock:
            done = sorted(j.finished_at for j in self.jobs.values() if j.finished_at)
        points = [start, *(t for t in done if start < t < end), end]
        return max(b - a for a, b in itertools.pairwise(points))

    def lost(self) -> list[str]:
        return [i for i, j in self.jobs.items() if j.history[-1:] != ["COMPLETED"]]

    def backwards(self) -> list[str]:
        out = []
        for request_id, job in self.jobs.items():
            ranks = [RANK.get(s, -1) for s in job.history]
            if any(b < a for a, b in itertools.pairwise(ranks)):
                out.append(request_id)
        return out


def leaders(admin: AdminClient, topics: list[str]) -> dict[tuple[str, int], tuple[int, list[int]]]:
    metadata = admin.list_topics(timeout=10)
    return {
        (name, p): (part.leader, list(part.isrs))
        for name in topics
        if name in metadata.topics
        for p, part in metadata.topics[name].partitions.items()
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    *ports, controller = free_ports(4)
    kafka = start_kafka_cluster(
        jars_dir=ensure_kafka_jars(ROOT / ".cache" / "kafka"),
        base_dir=tmp_path / "cluster",
        log_dir=tmp_path / "cluster-logs",
        ports=ports,
        controller_port=controller,
        heap="256m",
    )
    try:
        kafka.wait_ready(300)
        yield kafka
    finally:
        kafka.stop()


@pytest.mark.timeout(1200)  # four JVMs and four services on a possibly shared 2-core machine
def test_losing_brokers_loses_no_job_and_refuses_what_it_cannot_store(
    cluster: KafkaCluster, make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    """(b) kill -9 the broker leading the most partitions under load; (c) it comes back and
    catches up; (d) with 2 of 3 brokers gone submissions answer 503, and all recovers."""
    stack = make_stack(
        PENGUIN12_KAFKA_BOOTSTRAP=cluster.bootstrap,
        PENGUIN12_KAFKA_REPLICATION_FACTOR="3",
        PENGUIN12_KAFKA_MIN_INSYNC_REPLICAS="2",
        PENGUIN12_MAX_BATCH_SIZE="1",
    ).start_all()
    topics = [stack.topic(n) for n in ("preprocessed", "features", "status", "dead-letter")]
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    layout = leaders(admin, topics)
    assert layout and all(len(isr) == 3 for _, isr in layout.values()), layout
    figures: dict[str, object] = {}

    with Traffic(stack, next(iter(photos.values()))) as traffic:
        wait_for(lambda: traffic.completions_after(0) >= 5, 180, 0.5, "first completions")

        # Baseline from this run: the longest wait between completions under load, no fault.
        first_done = traffic.first_finished()
        wait_for(lambda: time.monotonic() > first_done + 15, 60, 0.5, "15 s of steady load")
        figures["baseline_gap_s"] = round(traffic.longest_gap(first_done, time.monotonic()), 1)

        # (b) the broker that leads the most partitions (all topics, internal ones included)
        everything = [t for t in admin.list_topics(timeout=10).topics]
        counts: dict[int, int] = {}
        for leader, _ in leaders(admin, everything).values():
            counts[leader] = counts.get(leader, 0) + 1
        victim = max(counts, key=lambda b: counts[b])
        killed_at = time.monotonic()
        cluster.kill(victim)
        wait_for(
            lambda: traffic.submitted_and_completed_after(killed_at) >= 10,
            240,
            0.5,
            "jobs submitted after the kill to complete",
        )
        wait_for(lambda: time.monotonic() > killed_at + 30, 60, 0.5, "30 s of load")
        figures["victim_led_partitions"] = f"{counts[victim]} of {sum(counts.values())}"
        figures["stall_s"] = round(traffic.longest_gap(killed_at, time.monotonic()), 1)
        figures["refused_during_failover"] = sum(c != 202 for c in traffic.answers_since(killed_at))
        moved = leaders(admin, topics)
        assert all(leader != victim for leader, _ in moved.values()), moved

        # (c) back on its data: it recovers and rejoins every ISR
        restarted_at = time.monotonic()
        cluster.restart(victim).wait_ready(180)
        wait_for(
            lambda: all(victim in isr for _, isr in leaders(admin, topics).values()),
            240,
            1.0,
            f"broker {victim} to catch up (back in every ISR)",
        )
        figures["catch_up_s"] = round(time.monotonic() - restarted_at, 1)

        # (d) two of three brokers gone: nothing can be stored on 2 replicas, so nothing is accepted
        gone = [b for b in cluster.brokers if b != victim]
        down_at = time.monotonic()
        for node in gone:
            cluster.kill(node)

        def refusing() -> bool:
            recent = traffic.answers_since(down_at)
            return len(recent) >= 3 and recent[-3:] == [503, 503, 503]

        wait_for(refusing, 180, 0.5, "submissions to answer 503 with one broker left")
        figures["first_503_after_s"] = round(
            next(at for at, code in traffic.answers if at > down_at and code == 503) - down_at, 1
        )
        # Everything answered meanwhile is either a refusal or a job that must complete below.
        wait_for(lambda: time.monotonic() > down_at + 20, 60, 0.5, "20 s with one broker")
        outage_answers = traffic.answers_since(down_at)
        figures["outage_answers"] = {c: outage_answers.count(c) for c in set(outage_answers)}
        assert set(outage_answers) <= {202, 503}, outage_answers

        back_at = time.monotonic()
        for node in gone:
            cluster.restart(node)
        cluster.wait_ready(240)
        wait_for(
            lambda: traffic.submitted_and_completed_after(back_at) >= 5,
            300,
            0.5,
            "jobs to complete again once the brokers are back",
        )
        figures["recovered_after_s"] = round(time.monotonic() - back_at, 1)
        traffic.finish(timeout=300)

    figures["accepted"] = len(traffic.jobs)
    figures["lost"] = len(traffic.lost())
    figures["moved_backwards"] = len(traffic.backwards())
    print(f"\nbroker-loss figures: {figures}")
    assert traffic.lost() == [], {i: traffic.jobs[i].history for i in traffic.lost()[:5]}
    assert traffic.backwards() == [], {i: traffic.jobs[i].history for i in traffic.backwards()[:5]}


# ----------------------------------------------------------------------------- topic set-up


def test_topics_get_the_replication_asked_for_or_a_clear_error(
    infra: Infra, caplog: pytest.LogCaptureFixture
) -> None:
    """On the session's single broker: RF 3 cannot be had, and says so; existing RF-1 topics
    are left alone but named in a warning."""
    suffix = uuid.uuid4().hex[:8]
    wanted = CommonSettings(
        kafka_bootstrap=infra.bootstrap,
        topic_preprocessed=f"rf-{suffix}.preprocessed",
        topic_features=f"rf-{suffix}.features",
        topic_status=f"rf-{suffix}.status",
        topic_dead_letter=f"rf-{suffix}.dead-letter",
        kafka_replication_factor=3,
        kafka_min_insync_replicas=2,
    )
    with pytest.raises(RuntimeError, match="must not exceed the number of brokers"):
        ensure_topics(wanted)
    ensure_topics(wanted.model_copy(update={"kafka_replication_factor": 1}))
    with caplog.at_level(logging.WARNING, logger="penguin12.kafka"):
        ensure_topics(wanted)
    assert f"topic rf-{suffix}.status exists with replication factor 1, settings ask for 3" in (
        caplog.text
    )
