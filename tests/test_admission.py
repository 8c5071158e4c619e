"""Admission under pressure and failure: the backlog bound, Kafka outages and slow
acknowledgements, a crash between send and 202, deadlines, and job state expired or lost and
rebuilt from the status topic. (API keys and rate limits: test_access.py; idempotency keys:
test_idempotency.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
import redis

from conftest import Infra, Stack, read_topic, wait_for
from penguin12_devstack.kafka import KafkaBroker

HANDED_TO_KAFKA = "job handed to Kafka; awaiting its acknowledgement"


def test_backlog_bound_answers_429_then_recovers(
    make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_MAX_BACKLOG="3", PENGUIN12_BACKLOG_CHECK_INTERVAL_S="0.2")
    stack.start("provenance")
    stack.start("preprocessor")  # no workers yet: the queue only grows
    accepted = [stack.submit(photos["rocket.jpg"]).json()["request_id"] for _ in range(4)]
    wait_for(lambda: stack.metric("preprocessor", "penguin12_backlog_records") >= 4, 30)
    refused = stack.submit(photos["rocket.jpg"])
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "10"
    assert "queue holds more than 3 jobs" in refused.json()["detail"]

    stack.start("feature_extractor-0")
    stack.start("classifier")
    for request_id in accepted:
        assert stack.wait_final(request_id)["status"] == "COMPLETED"
    wait_for(lambda: stack.submit(photos["rocket.jpg"]).status_code == 202, 30, 0.5)


def _readyz(stack: Stack) -> tuple[int, dict[str, str]]:
    response = httpx.get(stack.url("preprocessor", "/readyz"), timeout=10)
    return response.status_code, response.json()


def test_kafka_outage_answers_503_fast_and_recovers(
    make_stack: Callable[..., Stack],
    infra: Infra,
    own_kafka: Callable[[], KafkaBroker],
    photos: dict[str, bytes],
) -> None:
    broker = own_kafka()
    stack = make_stack(
        PENGUIN12_KAFKA_BOOTSTRAP=broker.bootstrap,
        PENGUIN12_REJOIN_TIMEOUT_S="3",
    )
    stack.start_all()
    assert (
        stack.wait_final(stack.submit(photos["chelsea.jpg"]).json()["request_id"])["status"]
        == "COMPLETED"
    )

    broker.stop()
    started = time.monotonic()
    wait_for(lambda: stack.submit(photos["chelsea.jpg"]).status_code == 503, 15, 0.2)
    refused = stack.submit(photos["chelsea.jpg"])
    elapsed = time.monotonic() - started
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert "nothing was queued" in refused.json()["detail"]
    assert elapsed < 15
    # Readiness names the missing dependency (and turns green again below).
    wait_for(
        lambda: _readyz(stack) == (503, {"kafka": "unreachable", "redis": "ok"}),
        30,
        0.3,
        "the preprocessor's /readyz to report Kafka down",
    )

    # Longer than the consumers' session timeout: each worker leaves its group and, once out of it
    # for PENGUIN12_REJOIN_TIMEOUT_S, replaces its consumer (librdkafka has been seen never to
    # rejoin by itself after such an outage).
    consumers = ("feature_extractor-0", "classifier", "provenance")
    wait_for(
        lambda: all(
            "replacing the consumer" in stack.processes[n].log_file.read_text() for n in consumers
        ),
        90,
        0.5,
        "every consumer to be replaced while outside its group",
    )

    own_kafka()  # same ports, same data: the services reconnect by themselves
    wait_for(
        lambda: _readyz(stack) == (200, {"kafka": "ok", "redis": "ok"}), 90, 0.5, "ready again"
    )
    response = wait_for(
        lambda: (r := stack.submit(photos["chelsea.jpg"])).status_code == 202 and r, 90, 0.5
    )
    assert stack.wait_final(response.json()["request_id"], 90)["status"] == "COMPLETED"


def test_a_job_that_never_finishes_fails_with_a_timeout(
    make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_JOB_DEADLINE_S="1", PENGUIN12_MAINTENANCE_INTERVAL_S="0.3")
    stack.start("provenance")
    stack.start("preprocessor")  # no workers: the job can never complete
    request_id = stack.submit(photos["coffee.jpg"]).json()["request_id"]
    final = stack.wait_final(request_id, 30)
    assert final["status"] == "FAILED"
    assert "timed out: no result within 1 s" in final["error"]


def test_lost_job_state_is_rebuilt_from_the_status_topic(
    make_stack: Callable[..., Stack], infra: Infra, photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_MAINTENANCE_INTERVAL_S="0.3").start_all()
    request_id = stack.submit(photos["astronaut.jpg"]).json()["request_id"]
    before = stack.wait_final(request_id)

    state_db = redis.Redis.from_url(f"{infra.redis_url}/0")
    state_db.delete(
        f"penguin12:job:{request_id}", f"penguin12:marker:state-complete:{stack.topic('status')}"
    )
    assert stack.status(request_id).status_code == 404  # gone...

    after = wait_for(lambda: (r := stack.status(request_id)).status_code == 200 and r.json(), 30)
    assert after == before  # ...and rebuilt exactly, from the status topic


def test_job_state_expires_after_its_retention_and_answers_404(
    make_stack: Callable[..., Stack], photos: dict[str, bytes]
) -> None:
    stack = make_stack(PENGUIN12_JOB_RETENTION_S="4").start_all()
    request_id = stack.submit(photos["retina.jpg"]).json()["request_id"]
    assert stack.wait_final(request_id)["status"] == "COMPLETED"
    gone = wait_for(
        lambda: (r := stack.status(request_id)).status_code == 404 and r, 60, 0.5, "expiry"
    )
    assert "never submitted or has expired" in gone.json()["detail"]
    # It stays gone: nothing (the maintenance loop, a rebuild) brings an expired job back.
    wait_for(lambda: stack.metric("provenance", "penguin12_messages_total") > 0, 10)
    assert stack.status(request_id).status_code == 404


def test_provenance_rebuild_command_restores_lost_state(
    make_stack: Callable[..., Stack], infra: Infra, photos: dict[str, bytes]
) -> None:
    # A long maintenance interval: nothing rebuilds by itself during the test.
    stack = make_stack(PENGUIN12_MAINTENANCE_INTERVAL_S="3600").start_all()
    ids = [
        stack.submit(photos[name]).json()["request_id"] for name in ("chelsea.jpg", "coffee.jpg")
    ]
    before = {rid: stack.wait_final(rid) for rid in ids}
    state_db = redis.Redis.from_url(f"{infra.redis_url}/0")
    state_db.delete(*(f"penguin12:job:{rid}" for rid in ids))
    assert all(stack.status(rid).status_code == 404 for rid in ids)

    done = subprocess.run(
        [sys.executable, "-m", "provenance", "rebuild"],
        env={**os.environ, **stack.env, "PENGUIN12_CONSUMER_GROUP": f"provenance-{stack.suffix}"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert {rid: stack.status(rid).json() for rid in ids} == before


class RefusedJobWasQueued(AssertionError):
    """The upload was answered 503, yet its records reached the topics."""


@pytest.mark.xfail(
    strict=True,
    raises=RefusedJobWasQueued,
    reason="known defect: a 503 after a delivery timeout does not retract records the paused "
    "broker already received; they are appended when it resumes and the job runs with an id "
    "nobody was given (needs transactional publishing or a cancellation record)",
)
def test_kafka_slow_to_acknowledge_answers_503_and_queues_nothing(
    make_stack: Callable[..., Stack], own_kafka: Callable[[], KafkaBroker], photos: dict[str, bytes]
) -> None:
    """The broker is up (its port answers) but does not acknowledge: a paused JVM (SIGSTOP), as
    in a long GC pause or a stalled disk. The answer is 503 + Retry-After, and the topics prove
    that nothing of the refused upload was queued, even once the broker resumes."""
    broker = own_kafka()
    assert broker.process is not None
    stack = make_stack(PENGUIN12_KAFKA_BOOTSTRAP=broker.bootstrap, PENGUIN12_DELIVERY_TIMEOUT_S="2")
    stack.start("provenance")
    stack.start("preprocessor")
    accepted = stack.submit(photos["astronaut.jpg"])
    assert accepted.status_code == 202, accepted.text
    accepted_id = accepted.json()["request_id"]

    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        refused = stack.submit(photos["rocket.jpg"])
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "request_id" not in refused.json()

    # Once the broker has caught up on what it was sent while paused, the topics hold exactly
    # the accepted jobs.
    recovered = wait_for(
        lambda: (r := stack.submit(photos["rocket.jpg"])).status_code == 202 and r, 60, 0.5
    )
    accepted_ids = {accepted_id, recovered.json()["request_id"]}
    queued = {
        topic: {m.key().decode() for m in read_topic(broker.bootstrap, stack.topic(topic))}
        for topic in ("preprocessed", "status")
    }
    assert all(accepted_ids <= keys for keys in queued.values()), queued
    if any(keys != accepted_ids for keys in queued.values()):
        raise RefusedJobWasQueued(queued)


def test_kill_9_of_the_preprocessor_between_send_and_202(
    make_stack: Callable[..., Stack], own_kafka: Callable[[], KafkaBroker], photos: dict[str, bytes]
) -> None:
    """The preprocessor has sent the job to Kafka and is waiting for the acknowledgement (the
    broker is paused) when it dies. The client never got a 202; whatever of the job reached the
    topic is carried through to a final state, so nothing is left half-queued."""
    broker = own_kafka()
    assert broker.process is not None
    stack = make_stack(
        PENGUIN12_KAFKA_BOOTSTRAP=broker.bootstrap,
        PENGUIN12_DELIVERY_TIMEOUT_S="60",
        PENGUIN12_LOG_LEVEL="DEBUG",  # the preprocessor says when a job is handed to Kafka
    ).start_all()
    warm = stack.submit(photos["chelsea.jpg"]).json()["request_id"]
    assert stack.wait_final(warm)["status"] == "COMPLETED"
    preprocessor = stack.processes["preprocessor"]
    handed_over = preprocessor.log_file.read_text().count(HANDED_TO_KAFKA)

    outcome: list[object] = []

    def upload() -> None:
        try:
            outcome.append(stack.submit(photos["retina.jpg"] + uuid.uuid4().bytes))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        client = threading.Thread(target=upload)
        client.start()
        # Provably in flight: the job was handed to the producer (the preprocessor logs it) and
        # no answer has come back.
        wait_for(
            lambda: preprocessor.log_file.read_text().count(HANDED_TO_KAFKA) > handed_over,
            60,
            0.1,
            "the preprocessor to hand the job to Kafka",
        )
        assert client.is_alive() and not outcome
        preprocessor.kill()
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    client.join(60)
    [answer] = outcome
    assert isinstance(answer, httpx.HTTPError), answer  # no 202 was ever given

    stack.start("preprocessor")
    # Every job the topic holds reaches a final state: none is stuck between "sent" and "202".
    queued = [m.key().decode() for m in read_topic(broker.bootstrap, stack.topic("preprocessed"))]
    assert warm in queued
    for request_id in queued:
        assert stack.wait_final(request_id, 120)["status"] == "COMPLETED"
    after = stack.submit(photos["coffee.jpg"])
    assert after.status_code == 202
    assert stack.wait_final(after.json()["request_id"], 120)["status"] == "COMPLETED"
