"""Live status: long-poll (`?wait=N`) and Server-Sent Events, on the real stack.

Some tests drive a job's state by hand (the same monotonic `JobStore.apply` the services use, on
the stack's Redis) so that each change happens exactly when the test wants it.

Timing checks here assert behaviour, with margins that hold on a loaded 2-core machine: a request
woke on the change (long before its `wait`), or was held until its `wait`. How fast the wake-up is
belongs to the benchmarks (`make bench`), not to a test that must not flake.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Stack, wait_for
from penguin12.schemas import JobStatus, ModelInfo, Result, StatusUpdate
from penguin12.state import JobStore, redis_client

ORDER = ["PENDING", "PROCESSING_FEATURES", "CLASSIFYING", "COMPLETED"]
# A long `wait`, so that "answered on the change" and "answered at the timeout" stay far apart
# even when the machine is busy: an answer within half of it came from the change.
LONG_WAIT_S = 40
WOKE_WITHIN_S = LONG_WAIT_S / 2


@pytest.fixture
def store(stack: Stack) -> Iterator[JobStore]:
    client = redis_client(stack.env["PENGUIN12_STATE_REDIS_URL"])
    yield JobStore(client, 600)
    client.close()


class Job:
    """A job whose state the test moves by hand."""

    def __init__(self, store: JobStore):
        self.store = store
        self.request_id = str(uuid.uuid4())
        self.submitted_at = time.time()
        self.move(JobStatus.PENDING)

    def move(self, status: JobStatus) -> float:
        result = None
        if status == JobStatus.COMPLETED:
            model = ModelInfo(name="test", version="0123456789ab", architecture="tiny", demo=True)
            result = Result(
                prediction="REAL", confidence=0.9, fake_probability=0.1, model=model, demo=True
            )
        self.store.apply(
            StatusUpdate(
                request_id=self.request_id,
                submitted_at=self.submitted_at,
                status=status,
                service="test",
                result=result,
            )
        )
        return time.monotonic()


def _waiters(stack: Stack) -> float:
    return stack.metric("provenance", "penguin12_status_waiters")


def _long_poll(stack: Stack, request_id: str, **params: Any) -> tuple[httpx.Response, float]:
    """The answer, and when it came."""
    response = httpx.get(
        stack.url("provenance", f"/v1/status/{request_id}"), params=params, timeout=60
    )
    return response, time.monotonic()


def test_long_poll_returns_as_soon_as_the_status_changes(stack: Stack, store: JobStore) -> None:
    job = Job(store)
    answers: list[tuple[httpx.Response, float]] = []
    waiters_before = _waiters(stack)
    poller = threading.Thread(
        target=lambda: answers.append(
            _long_poll(stack, job.request_id, wait=LONG_WAIT_S, since="PENDING")
        )
    )
    poller.start()
    # Once the request is parked on the job, move the job on.
    wait_for(lambda: _waiters(stack) > waiters_before, 10, 0.02, "the long-poll to park")
    changed_at = job.move(JobStatus.PROCESSING_FEATURES)
    poller.join(LONG_WAIT_S + 30)
    [(response, answered_at)] = answers
    assert response.status_code == 200
    assert response.json()["status"] == "PROCESSING_FEATURES"
    # Woken by the change, not held to the end of its wait.
    assert answered_at - changed_at < WOKE_WITHIN_S, answered_at - changed_at


def test_long_poll_answers_the_current_state_at_its_timeout(stack: Stack, store: JobStore) -> None:
    job = Job(store)
    started = time.monotonic()
    response, answered_at = _long_poll(stack, job.request_id, wait=2)
    assert response.status_code == 200
    assert response.json()["status"] == "PENDING"
    assert answered_at - started >= 1.9  # held for its wait, then answered (however busy)


def test_long_poll_answers_at_once_when_already_changed_or_final(
    stack: Stack, store: JobStore
) -> None:
    job = Job(store)
    job.move(JobStatus.CLASSIFYING)
    started = time.monotonic()
    response, answered_at = _long_poll(stack, job.request_id, wait=LONG_WAIT_S, since="PENDING")
    assert response.json()["status"] == "CLASSIFYING"
    assert answered_at - started < WOKE_WITHIN_S  # not held: it had already moved on
    job.move(JobStatus.COMPLETED)
    started = time.monotonic()
    final, final_at = _long_poll(stack, job.request_id, wait=LONG_WAIT_S)  # final is enough
    body = final.json()
    assert body["status"] == "COMPLETED" and body["result"]["prediction"] == "REAL"
    assert final_at - started < WOKE_WITHIN_S


def test_long_poll_until_final_sleeps_through_the_steps(stack: Stack, store: JobStore) -> None:
    job = Job(store)
    answers: list[tuple[httpx.Response, float]] = []
    waiters_before = _waiters(stack)
    poller = threading.Thread(
        target=lambda: answers.append(
            _long_poll(stack, job.request_id, wait=LONG_WAIT_S, since="PENDING", until="final")
        )
    )
    poller.start()
    wait_for(lambda: _waiters(stack) > waiters_before, 10, 0.02, "the long-poll to park")
    job.move(JobStatus.PROCESSING_FEATURES)
    job.move(JobStatus.CLASSIFYING)
    # Still parked after the intermediate steps: each woke it (in milliseconds), none answered it.
    poller.join(1.0)
    assert poller.is_alive() and not answers
    finished_at = job.move(JobStatus.COMPLETED)
    poller.join(LONG_WAIT_S + 30)
    [(response, answered_at)] = answers
    assert response.json()["status"] == "COMPLETED"
    assert answered_at - finished_at < WOKE_WITHIN_S
    # At its timeout it answers with the state it has, like a plain long-poll.
    other = Job(store)
    started = time.monotonic()
    timed_out, at = _long_poll(stack, other.request_id, wait=2, until="final")
    assert timed_out.json()["status"] == "PENDING" and at - started >= 1.9


def test_long_poll_errors(stack: Stack) -> None:
    unknown = _long_poll(stack, str(uuid.uuid4()), wait=5)[0]
    assert unknown.status_code == 404 and "never submitted" in unknown.json()["detail"]
    url = stack.url("provenance", "/v1/status/x")
    assert httpx.get(url, params={"wait": -1}, timeout=10).status_code == 422
    assert httpx.get(url, params={"wait": 1, "since": "NOPE"}, timeout=10).status_code == 422
    assert httpx.get(url, params={"wait": 1, "until": "later"}, timeout=10).status_code == 422


def _events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    event, data = "message", list[str]()
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data.append(line.partition(":")[2].strip())


def test_sse_streams_each_change_and_ends_at_the_final_state(stack: Stack, store: JobStore) -> None:
    job = Job(store)
    url = stack.url("provenance", f"/v1/status/{job.request_id}/events")
    seen: list[str] = []
    with httpx.stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event, state in _events(response):
            assert event == "status" and state["request_id"] == job.request_id
            seen.append(state["status"])
            # Move the job on only after the stream has told us where it is.
            following = {"PENDING": JobStatus.CLASSIFYING, "CLASSIFYING": JobStatus.COMPLETED}
            if state["status"] in following:
                job.move(following[state["status"]])
    # The server closed the stream after COMPLETED.
    assert seen == ["PENDING", "CLASSIFYING", "COMPLETED"]


def test_sse_client_that_goes_away_frees_its_waiter(stack: Stack, store: JobStore) -> None:
    job = Job(store)
    before = _waiters(stack)
    url = stack.url("provenance", f"/v1/status/{job.request_id}/events")
    with httpx.stream("GET", url, timeout=30) as response:
        events = _events(response)  # (dropping the iterator would close the connection)
        assert next(events)[1]["status"] == "PENDING"
        wait_for(lambda: _waiters(stack) > before, 10, 0.02, "the stream's waiter")
    # The client hung up on a job that is still running: the server lets go of it.
    wait_for(lambda: _waiters(stack) == before, 15, 0.05, "the waiter to be released")


def test_sse_follows_a_real_job_to_completed(stack: Stack, photos: dict[str, bytes]) -> None:
    ticket = stack.submit(photos["coffee.jpg"]).json()
    states: list[dict[str, Any]] = []
    with httpx.stream("GET", ticket["status_url"] + "/events", timeout=60) as response:
        assert response.status_code == 200
        states = [state for _event, state in _events(response)]
    statuses = [s["status"] for s in states]
    assert statuses[-1] == "COMPLETED", statuses
    assert statuses == sorted(statuses, key=ORDER.index)
    assert states[-1]["result"]["demo"] is True


def test_sse_unknown_job_is_a_json_404(stack: Stack) -> None:
    response = httpx.get(stack.url("provenance", f"/v1/status/{uuid.uuid4()}/events"), timeout=10)
    assert response.status_code == 404
    assert "never submitted" in response.json()["detail"]


def test_plain_status_is_unchanged_by_live_status(stack: Stack, store: JobStore) -> None:
    job = Job(store)
    response = httpx.get(stack.url("provenance", f"/v1/status/{job.request_id}"), timeout=10)
    assert response.status_code == 200
    assert set(response.json()) == {"request_id", "status", "submitted_at", "last_updated"}


def test_a_final_only_waiter_is_woken_by_final_statuses_only() -> None:
    """`until=final` long-polls are not woken (nor re-read the state) at every step of a job
    (issue #14); an unknown status (a lost subscription) still wakes everyone."""
    import asyncio

    from provenance.notifier import StatusNotifier

    async def scenario() -> list[tuple[str | None, bool, bool]]:
        notifier = StatusNotifier("redis://127.0.0.1:1/0", {})  # nothing listens: never connects
        seen = []
        try:
            with (
                notifier.watch("job-1", final_only=True) as final,
                notifier.watch("job-1") as every,
                notifier.watch("job-2", final_only=True) as other,
            ):
                for status in ("PROCESSING_FEATURES", "CLASSIFYING", "COMPLETED", None):
                    final.clear()
                    every.clear()
                    notifier._wake("job-1", status)
                    seen.append((status, final.is_set(), every.is_set()))
                assert not other.is_set()  # another job's changes do not wake it
                notifier._wake()  # the subscription was lost: every waiter re-reads
                assert other.is_set()
        finally:
            await notifier.stop()
        return seen

    assert asyncio.run(scenario()) == [
        ("PROCESSING_FEATURES", False, True),
        ("CLASSIFYING", False, True),
        ("COMPLETED", True, True),
        (None, True, True),
    ]
