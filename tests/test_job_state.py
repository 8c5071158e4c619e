"""The job-state owner (penguin12.state), on a real Redis: its rules (state never moves
backwards; a re-open starts a new attempt, issue #11 item 6) and the public API that webhooks,
the rebuild, the DLQ re-open and the live notifier rely on instead of the Redis layout."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from support.statuses import RESULT, status_update

from conftest import Infra, wait_for
from penguin12.schemas import STATUS_RANK, TERMINAL_STATUSES, JobStatus, StatusUpdate
from penguin12.state import (
    FINAL_RANK,
    JOB_EVENTS_PATTERN,
    JobStore,
    changed_job,
    is_final,
    reopen_update,
)


@pytest.fixture
def store(infra: Infra) -> JobStore:
    return JobStore(redis.Redis.from_url(f"{infra.redis_url}/0"), retention_s=60)


def test_the_final_rank_is_the_terminal_statuses_and_nothing_else() -> None:
    assert {s for s in JobStatus if is_final(s)} == TERMINAL_STATUSES
    assert all(STATUS_RANK[s] < FINAL_RANK for s in JobStatus if s not in TERMINAL_STATUSES)


def test_finished_runs_name_final_jobs_with_a_callback_and_count_reopens(store: JobStore) -> None:
    hooked, silent, open_, unknown = (str(uuid.uuid4()) for _ in range(4))
    url = "https://hooks.example/done"
    store.apply_many(
        [
            status_update(hooked, JobStatus.PENDING, 1000.0, callback_url=url),
            status_update(hooked, JobStatus.FAILED, 1001.0, error="boom"),
            status_update(silent, JobStatus.FAILED, 1001.0, error="boom"),
            status_update(open_, JobStatus.PENDING, 1000.0, callback_url=url),
        ]
    )
    runs = store.finished_runs([hooked, silent, open_, unknown])
    assert [(r.request_id, r.callback_url, r.run) for r in runs] == [(hooked, url, 0)]
    assert store.callback_url(open_) == url and store.callback_url(silent) is None

    assert store.apply(reopen_update(hooked, 1000.0, service="dlq"))
    assert store.finished_runs([hooked]) == []  # open again: nothing is due
    store.apply(status_update(hooked, JobStatus.FAILED, 1002.0, error="again"))
    assert [r.run for r in store.finished_runs([hooked])] == [1]  # the second run


def test_the_rebuild_marker_is_per_status_topic(store: JobStore) -> None:
    topic = f"status-{uuid.uuid4()}"
    assert not store.is_complete(topic)  # a new (or flushed) Redis: rebuild
    store.mark_complete(topic)
    assert store.is_complete(topic) and not store.is_complete(f"{topic}-other")


def test_every_applied_change_is_announced_on_the_events_pattern(
    infra: Infra, store: JobStore
) -> None:
    listener = redis.Redis.from_url(f"{infra.redis_url}/0").pubsub()
    listener.psubscribe(JOB_EVENTS_PATTERN)
    assert listener.get_message(timeout=5)["type"] == "psubscribe"  # type: ignore[index]
    rid = str(uuid.uuid4())
    store.apply(status_update(rid, JobStatus.PENDING, 1000.0))
    store.apply(status_update(rid, JobStatus.PENDING, 1000.0))  # a repeat changes nothing: silent
    message = listener.get_message(timeout=5)
    assert message is not None and changed_job(message["channel"].decode()) == rid
    assert message["data"] == b"PENDING"
    assert listener.get_message(timeout=0.5) is None
    listener.close()


def test_state_never_moves_backwards(infra: Infra) -> None:
    store = JobStore(redis.Redis.from_url(f"{infra.redis_url}/0"), retention_s=60)
    rid = str(uuid.uuid4())

    def update(status: JobStatus, at: float, error: str | None = None) -> bool:
        return store.apply(
            StatusUpdate(
                request_id=rid, submitted_at=100.0, status=status, at=at, service="t", error=error
            )
        )

    assert update(JobStatus.PROCESSING_FEATURES, 101.0)
    assert not update(JobStatus.PENDING, 100.0)  # late PENDING: ignored
    assert update(JobStatus.FAILED, 103.0, "boom")
    assert not update(JobStatus.PROCESSING_FEATURES, 104.0)  # redelivery after the end
    assert not update(JobStatus.COMPLETED, 105.0)  # a terminal state is final
    state = store.get(rid)
    assert state is not None
    assert (state.status, state.submitted_at, state.last_updated, state.error) == (
        JobStatus.FAILED,
        100.0,
        103.0,
        "boom",
    )
    assert 0 < store._redis.ttl(f"penguin12:job:{rid}") <= 60  # type: ignore[attr-defined]


def test_a_batch_of_updates_applies_in_order_and_publishes_each_change(infra: Infra) -> None:
    client = redis.Redis.from_url(f"{infra.redis_url}/0")
    store = JobStore(client, retention_s=60)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    events = client.pubsub()
    events.subscribe(f"penguin12:job-events:{a}", f"penguin12:job-events:{b}")
    wait_for(lambda: events.get_message(timeout=0.1) is None, 5)  # subscribe confirmations read

    def update(rid: str, status: JobStatus, at: float, **extra: str) -> StatusUpdate:
        return StatusUpdate(
            request_id=rid, submitted_at=100.0, status=status, at=at, service="t", **extra
        )

    applied = store.apply_many(
        [
            update(a, JobStatus.PROCESSING_FEATURES, 101.0, callback_url="https://hook.example/a"),
            update(b, JobStatus.PENDING, 100.0),
            update(a, JobStatus.PENDING, 100.5),  # late: ignored, but its callback URL is kept
            update(a, JobStatus.FAILED, 103.0, error="boom"),
            update(a, JobStatus.COMPLETED, 104.0),  # a terminal state is final
        ]
    )
    assert applied == [True, True, False, True, False]
    state_a, state_b = store.get(a), store.get(b)
    assert state_a is not None and (state_a.status, state_a.error) == (JobStatus.FAILED, "boom")
    assert state_b is not None and state_b.status == JobStatus.PENDING
    assert client.hget(f"penguin12:job:{a}", "callback_url") == b"https://hook.example/a"
    published: list[tuple[bytes, bytes]] = []

    def three_events() -> bool:
        message = events.get_message(timeout=0.2)
        if message and message["type"] == "message":
            published.append((message["channel"], message["data"]))
        return len(published) == 3

    wait_for(three_events, 10)
    assert published == [
        (f"penguin12:job-events:{a}".encode(), b"PROCESSING_FEATURES"),
        (f"penguin12:job-events:{b}".encode(), b"PENDING"),
        (f"penguin12:job-events:{a}".encode(), b"FAILED"),
    ]
    events.close()
    assert store.apply_many([]) == []


def test_a_reopened_job_starts_a_new_attempt_and_a_replay_agrees(infra: Infra) -> None:
    """`dlq replay` re-opens a FAILED job; rebuilding from the log must reach the same answer.

    The history is in status-log order: a late FAILED of the first run comes before the re-open
    (the replayer produces the re-open after everything the first run wrote), so it is the new
    run's updates, after the re-open, that count.
    """
    rid = str(uuid.uuid4())
    history = [
        StatusUpdate(
            request_id=rid, submitted_at=1.0, status=JobStatus.PENDING, at=1.0, service="t"
        ),
        StatusUpdate(
            request_id=rid,
            submitted_at=1.0,
            status=JobStatus.FAILED,
            at=2.0,
            service="t",
            error="bug",
        ),
        StatusUpdate(
            request_id=rid,
            submitted_at=1.0,
            status=JobStatus.FAILED,
            at=2.5,
            service="t",
            error="late",
        ),
        StatusUpdate(
            request_id=rid,
            submitted_at=1.0,
            status=JobStatus.PENDING,
            at=3.0,
            service="dlq",
            reopen=True,
        ),
        StatusUpdate(
            request_id=rid,
            submitted_at=1.0,
            status=JobStatus.PROCESSING_FEATURES,
            at=4.0,
            service="t",
        ),
    ]
    client = redis.Redis.from_url(f"{infra.redis_url}/0")
    for _ in range(2):  # live, then again as a rebuild from the status topic would
        client.delete(f"penguin12:job:{rid}")
        store = JobStore(client, retention_s=60)
        for update in history:
            store.apply(update)
        state = store.get(rid)
        assert state is not None
        assert (state.status, state.error, state.last_updated) == (
            JobStatus.PROCESSING_FEATURES,
            None,
            4.0,
        )


@pytest.mark.parametrize("skew_s", [-3.0, 3.0])
def test_reopen_then_complete_whatever_the_clock_skew(infra: Infra, skew_s: float) -> None:
    """The replayer's clock is ``skew_s`` ahead of (or behind) the workers': the new run's
    COMPLETED still counts, because order comes from the status log, not from ``at``."""
    store = JobStore(redis.Redis.from_url(f"{infra.redis_url}/0"), retention_s=60)
    rid = str(uuid.uuid4())
    worker_now = 5000.0
    applied = store.apply_many(
        [
            status_update(rid, JobStatus.PENDING, 1000.0),
            status_update(rid, JobStatus.FAILED, 1001.0, error="dead-lettered"),
            status_update(rid, JobStatus.PENDING, worker_now + skew_s, reopen=True),
            status_update(rid, JobStatus.PROCESSING_FEATURES, worker_now + 0.1),
            status_update(rid, JobStatus.CLASSIFYING, worker_now + 0.2),
            status_update(rid, JobStatus.COMPLETED, worker_now + 0.3),
        ]
    )
    assert applied == [True] * 6
    state = store.get(rid)
    assert state is not None and state.status == JobStatus.COMPLETED and state.error is None
    assert state.result == RESULT and state.submitted_at == 1000.0


def test_reopen_never_moves_a_completed_job_back(infra: Infra) -> None:
    store = JobStore(redis.Redis.from_url(f"{infra.redis_url}/0"), retention_s=60)
    rid = str(uuid.uuid4())
    store.apply_many(
        [
            status_update(rid, JobStatus.PENDING, 1000.0),
            status_update(rid, JobStatus.COMPLETED, 1002.0),
        ]
    )
    assert store.apply_many([status_update(rid, JobStatus.PENDING, 1003.0, reopen=True)]) == [False]
    state = store.get(rid)
    assert state is not None and state.status == JobStatus.COMPLETED and state.result == RESULT


def test_a_reopened_job_gets_a_fresh_deadline_and_a_new_webhook(infra: Infra) -> None:
    from provenance.webhooks.queue import WebhookQueue

    client = redis.Redis.from_url(f"{infra.redis_url}/0")
    store = JobStore(client, retention_s=600)
    hooks = WebhookQueue(client, store, retention_s=600)
    rid, now = str(uuid.uuid4()), time.time()
    old = now - 7200  # submitted two hours ago, past a one-hour deadline
    store.apply_many(
        [
            status_update(rid, JobStatus.PENDING, old, submitted_at=old, callback_url="https://h.example/x"),
            status_update(rid, JobStatus.FAILED, old + 1, submitted_at=old, error="dead-lettered"),
        ]
    )  # fmt: skip
    assert hooks.enqueue_finished([rid]) == 1  # the FAILED webhook
    assert hooks.enqueue_finished([rid]) == 0  # once
    store.apply(status_update(rid, JobStatus.PENDING, now, submitted_at=old, reopen=True))
    # The deadline counts from the re-open, not from the first submission.
    assert rid not in {r for r, _ in store.overdue(now - 3600, limit=10_000)}
    assert rid in {r for r, _ in store.overdue(now + 3600, limit=10_000)}
    assert hooks.enqueue_finished([rid]) == 0  # not finished yet
    store.apply(status_update(rid, JobStatus.PROCESSING_FEATURES, now + 1, submitted_at=old))
    assert rid not in {r for r, _ in store.overdue(now - 3600, limit=10_000)}
    store.apply(status_update(rid, JobStatus.COMPLETED, now + 2, submitted_at=old))
    assert hooks.enqueue_finished([rid]) == 1  # the new run's final state is sent again
    assert hooks.enqueue_finished([rid]) == 0
    assert hooks.meta(rid)["state"] == "pending"
    state = store.get(rid)
    assert state is not None and state.submitted_at == old  # the job's own history is kept


# -------------------------------------------------------- state rebuild (issue #11, item 10)
