"""The job-state owner's public API (penguin12.state), on a real Redis: what webhooks, the
rebuild, the DLQ re-open and the live notifier rely on instead of the Redis layout."""

from __future__ import annotations

import uuid

import pytest
import redis

from conftest import Infra
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


def _update(rid: str, status: JobStatus, at: float, **extra: object) -> StatusUpdate:
    return StatusUpdate(
        request_id=rid, submitted_at=1000.0, status=status, at=at, service="t",
        **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def test_the_final_rank_is_the_terminal_statuses_and_nothing_else() -> None:
    assert {s for s in JobStatus if is_final(s)} == TERMINAL_STATUSES
    assert all(STATUS_RANK[s] < FINAL_RANK for s in JobStatus if s not in TERMINAL_STATUSES)


def test_finished_runs_name_final_jobs_with_a_callback_and_count_reopens(store: JobStore) -> None:
    hooked, silent, open_, unknown = (str(uuid.uuid4()) for _ in range(4))
    url = "https://hooks.example/done"
    store.apply_many(
        [
            _update(hooked, JobStatus.PENDING, 1000.0, callback_url=url),
            _update(hooked, JobStatus.FAILED, 1001.0, error="boom"),
            _update(silent, JobStatus.FAILED, 1001.0, error="boom"),
            _update(open_, JobStatus.PENDING, 1000.0, callback_url=url),
        ]
    )
    runs = store.finished_runs([hooked, silent, open_, unknown])
    assert [(r.request_id, r.callback_url, r.run) for r in runs] == [(hooked, url, 0)]
    assert store.callback_url(open_) == url and store.callback_url(silent) is None

    assert store.apply(reopen_update(hooked, 1000.0, service="dlq"))
    assert store.finished_runs([hooked]) == []  # open again: nothing is due
    store.apply(_update(hooked, JobStatus.FAILED, 1002.0, error="again"))
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
    store.apply(_update(rid, JobStatus.PENDING, 1000.0))
    store.apply(_update(rid, JobStatus.PENDING, 1000.0))  # a repeat changes nothing: silent
    message = listener.get_message(timeout=5)
    assert message is not None and changed_job(message["channel"].decode()) == rid
    assert message["data"] == b"PENDING"
    assert listener.get_message(timeout=0.5) is None
    listener.close()
