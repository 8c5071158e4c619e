"""flush-state: wipe the job state (Redis DB0) mid-run; provenance must rebuild it from Kafka."""

from __future__ import annotations

import os
import time

from chaos.harness import Context, Outcome, under_load, wait_until
from chaos.probes import status_of
from chaos.tracking import rank


def _state_url() -> str:
    port = os.environ.get("PENGUIN12_LOCAL_REDIS_PORT", "6379")
    return os.environ.get("PENGUIN12_STATE_REDIS_URL", f"redis://127.0.0.1:{port}/0")


def flush_state(ctx: Context) -> Outcome:
    import redis

    from penguin12.settings import CommonSettings
    from penguin12.state import JobStore, redis_options

    outcome = Outcome(
        "flush-state", "FLUSHDB Redis DB0 (job state) mid-run: provenance rebuilds it from Kafka"
    )
    settings = CommonSettings()
    client = redis.Redis.from_url(_state_url(), socket_timeout=5, **redis_options(settings))
    store = JobStore(client, retention_s=0)  # read-only here: asks whether a rebuild finished
    before: dict[str, int] = {}
    with under_load(ctx, outcome) as tracker:
        ctx.wait(ctx.profile.warmup_s)
        # Let the first jobs finish, so that finished answers have to come back too.
        wait_until(lambda: tracker.finished_count() >= 3, 60, "finished jobs")
        with tracker.lock:
            before = {j.request_id: j.max_rank for j in tracker.jobs.values() if j.max_rank >= 0}
            tracker.tolerate_missing = True
        complete_before = store.is_complete(settings.topic_status)
        client.flushdb()
        flushed_at = time.monotonic()
        outcome.notes.append(f"flushed DB0 holding {len(before)} known jobs")
        # How long until every job known before the flush answers again?
        back_after: float | None = None
        deadline = flushed_at + ctx.profile.recovery_deadline_s
        while time.monotonic() < deadline:
            missing = [rid for rid in before if status_of(ctx.http, rid) is None]
            if not missing:
                back_after = time.monotonic() - flushed_at
                break
            time.sleep(0.5)
        complete_after = store.is_complete(settings.topic_status)
        with tracker.lock:
            tracker.tolerate_missing = False
        ctx.wait(ctx.profile.after_s)
    now = {rid: status_of(ctx.http, rid) for rid in before}
    not_back = [rid for rid, status in now.items() if status is None]
    lower = [rid for rid, status in now.items() if rank(status or "") < before[rid]]
    outcome.counts["known_before_flush"] = len(before)
    outcome.counts["not_back"] = len(not_back)
    outcome.counts["back_lower"] = len(lower)
    outcome.details.update(
        answers_back_after_s=None if back_after is None else round(back_after, 1),
        state_complete_before_flush=complete_before,
        state_complete_after_recovery=complete_after,
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
