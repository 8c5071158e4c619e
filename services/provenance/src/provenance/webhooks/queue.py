"""The webhook queue in Redis: enqueued once per finished run, leased to a dispatcher, logged.

What a job's state is (final? which run? which callback URL?) is the job store's to say
(`penguin12.state.JobStore.finished_runs`); this module keeps only the deliveries' own keys.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import redis

from penguin12.schemas import TERMINAL_STATUSES, StatusUpdate
from penguin12.state import JobStore
from penguin12.worker import Output, Record, RetryableError

log = logging.getLogger("penguin12.provenance.webhooks")

DUE_KEY = "penguin12:webhooks:due"
_HOOK_PREFIX = "penguin12:webhook:"


def _hook_key(request_id: str) -> str:
    return _HOOK_PREFIX + request_id


def _log_key(request_id: str) -> str:
    return _HOOK_PREFIX + request_id + ":log"


# Enqueue once per run: unless the delivery record is for this run (ARGV[5]) already (a re-opened
# job's new run gets a new delivery; `seq`, which numbers delivery ids, keeps counting across runs).
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 and (redis.call('HGET', KEYS[1], 'run') or '0') == ARGV[5] then
  return 0
end
redis.call('HSET', KEYS[1], 'url', ARGV[4], 'state', 'pending', 'attempts', 0, 'created_at', ARGV[1],
  'run', ARGV[5])
redis.call('HSETNX', KEYS[1], 'seq', 0)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# Lease up to ARGV[3] due deliveries: push their due time past the lease, return each id with
# its URL (the dispatcher picks by receiver without another round trip).
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  table.insert(out, id)
  table.insert(out, redis.call('HGET', ARGV[4] .. id, 'url') or '')
end
return out
"""


class WebhookQueue:
    """The Redis side: enqueue, claim, record attempts, read the delivery log."""

    def __init__(self, client: redis.Redis, store: JobStore, retention_s: int):
        self._redis = client
        self._store = store
        self._retention_s = retention_s
        self._enqueue = client.register_script(_ENQUEUE)
        self._claim = client.register_script(_CLAIM)

    def enqueue_finished(self, request_ids: list[str]) -> int:
        """Queue the webhook of each of these jobs that is finished and has a callback URL (once
        per run; the others are left alone).

        Reading the runs and enqueueing are two round trips: a job re-opened in between gets a
        delivery for its old run, which the dispatcher puts back to wait for the new run's end.
        """
        finished = self._store.finished_runs(request_ids)
        if not finished:
            return 0
        now = repr(time.time())
        with self._redis.pipeline(transaction=False) as pipe:
            for job in finished:
                self._enqueue(
                    keys=[_hook_key(job.request_id), DUE_KEY],
                    args=[now, job.request_id, self._retention_s, job.callback_url, job.run],
                    client=pipe,
                )
            return sum(int(n) for n in pipe.execute())

    def claim(self, limit: int, lease_s: float) -> list[tuple[str, str]]:
        """Lease up to ``limit`` due deliveries: (request id, callback URL) pairs."""
        now = time.time()
        flat = self._claim(
            keys=[DUE_KEY], args=[repr(now), repr(now + lease_s), limit, _HOOK_PREFIX]
        )
        text = [i.decode() if isinstance(i, bytes) else str(i) for i in flat]
        return list(zip(text[0::2], text[1::2], strict=True))

    def defer(self, request_id: str, delay_s: float) -> None:
        """Put a leased delivery back, due in ``delay_s`` (its receiver is busy)."""
        self._redis.zadd(DUE_KEY, {request_id: time.time() + delay_s})

    def next_sequence(self, request_id: str) -> int:
        """The number of this delivery among all the job's deliveries (its id's suffix)."""
        return int(self._redis.hincrby(_hook_key(request_id), "seq", 1))

    def next_due_in(self) -> float | None:
        first = self._redis.zrange(DUE_KEY, 0, 0, withscores=True)
        if not first:
            return None
        return max(0.0, float(first[0][1]) - time.time())

    def meta(self, request_id: str) -> dict[str, str]:
        raw: dict[bytes, bytes] = self._redis.hgetall(_hook_key(request_id))  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    def record(
        self,
        request_id: str,
        attempt: dict[str, Any],
        state: Literal["pending", "delivered", "failed"],
        retry_at: float | None,
    ) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(_log_key(request_id), json.dumps(attempt))
            pipe.expire(_log_key(request_id), self._retention_s)
            key = _hook_key(request_id)
            pipe.hset(key, "state", state)
            pipe.hset(key, "attempts", int(attempt["attempt"]))
            if retry_at is not None:
                pipe.hset(key, "next_attempt_at", repr(retry_at))
                pipe.zadd(DUE_KEY, {request_id: retry_at})
            else:
                pipe.zrem(DUE_KEY, request_id)
                pipe.hdel(key, "next_attempt_at")
            pipe.execute()

    def drop(self, request_id: str) -> None:
        self._redis.zrem(DUE_KEY, request_id)

    def wait_for_run_end(self, request_id: str) -> None:
        """The job was re-opened before this delivery went out: the new run's end enqueues it."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(DUE_KEY, request_id)
            pipe.hset(_hook_key(request_id), "run", "-1")
            pipe.execute()

    def attempts(self, request_id: str) -> list[dict[str, Any]]:
        raw: list[bytes] = self._redis.lrange(_log_key(request_id), 0, -1)  # type: ignore[assignment]
        return [json.loads(r) for r in raw]


class WebhookTrigger:
    """Wraps the status recorder: after a batch is applied, queue the finished jobs' webhooks.

    A job's webhook is due once it is final *and* its callback URL is known, in whichever order
    the records arrive (the PENDING record that carries the URL can come after COMPLETED: the
    pipeline may finish before the preprocessor's records are all written). So the check runs for
    every terminal record and every record that carries a callback URL, applied or repeated: a
    crash between the state write and the enqueue is healed by the redelivered record, and the
    enqueue itself happens once per run.
    """

    def __init__(
        self, inner: Callable[[list[Record[StatusUpdate]]], list[Output]], queue: WebhookQueue
    ):
        self._inner = inner
        self._queue = queue

    def __call__(self, records: list[Record[StatusUpdate]]) -> list[Output]:
        outputs = self._inner(records)
        candidates = list(
            dict.fromkeys(
                r.payload.request_id
                for r in records
                if r.payload.status in TERMINAL_STATUSES or r.payload.callback_url
            )
        )
        try:
            queued = self._queue.enqueue_finished(candidates)
        except redis.RedisError as exc:
            raise RetryableError(f"Redis unavailable (webhook queue): {exc}") from exc
        if queued:
            log.debug("queued %d webhook(s)", queued)
        return outputs
