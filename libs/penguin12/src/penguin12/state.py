"""Job state in Redis DB0, and its one owner: the layout, the rules and every write.

Updates arrive at least once and from several producers, so they can repeat or arrive out of
order. One Lua script applies an update atomically and only if it does not move the job back:
a lower-ranked status is ignored and a final status (rank `FINAL_RANK`: COMPLETED or FAILED) is
final, until the dead-letter replayer re-opens a failed job (`reopen_update`).

Everything else (the preprocessor's PENDING, provenance's recorder and state rebuild, the DLQ
re-open, webhooks) goes through this module's functions, never through the Redis keys.
"""

from __future__ import annotations

import json
import time
from typing import Any, NamedTuple

import redis
import redis.asyncio as aioredis

from penguin12.schemas import STATUS_RANK, JobState, JobStatus, Result, StatusUpdate
from penguin12.settings import RedisSettings

# A job at this rank is finished (COMPLETED or FAILED): nothing but a re-open moves it.
FINAL_RANK = STATUS_RANK[JobStatus.COMPLETED]


def is_final(status: JobStatus) -> bool:
    """COMPLETED or FAILED: the job's verdict (or its failure) is known."""
    return STATUS_RANK[status] >= FINAL_RANK


def reopen_update(request_id: str, submitted_at: float, service: str) -> StatusUpdate:
    """The status record that starts a new run of a job (`dlq replay`); see `_APPLY`."""
    return StatusUpdate(
        request_id=request_id,
        submitted_at=submitted_at,
        status=JobStatus.PENDING,
        service=service,
        reopen=True,
    )


KEY_PREFIX = "penguin12:job:"
_MARKER_PREFIX = "penguin12:marker:"
# Non-terminal jobs by submission time: what the deadline sweeper looks at.
OPEN_JOBS_KEY = "penguin12:jobs:open"
# Live status (issue #6): every applied change is published on EVENTS_PREFIX + request_id.
EVENTS_PREFIX = "penguin12:job-events:"
# What to subscribe to (PSUBSCRIBE) to hear of every job's changes; `changed_job` names the job.
JOB_EVENTS_PATTERN = EVENTS_PREFIX + "*"


def changed_job(channel: str) -> str:
    """The request id a change event (on a `JOB_EVENTS_PATTERN` channel) is about."""
    return channel.removeprefix(EVENTS_PREFIX)


CALLBACK_FIELD = "callback_url"

OWNER_FIELD = "owner"
# How many times the job was re-opened (`dlq replay`): which run a webhook belongs to.
RUN_FIELD = "run"

# ARGV: status, rank, submitted_at, at, result, error, retention_s, request_id, reopen,
# events channel, callback_url, owner. Publishing from inside the script saves a round trip.
#
# Re-open (`reopen`, see penguin12_ops.dlq): a FAILED (or unknown, or still open) job goes back to
# PENDING as a new run: result and error are cleared, `run` counts up, and the deadline clock
# restarts from the re-open (`reopened_at` is its base in the open-jobs index). A COMPLETED job is
# never re-opened. Which updates belong to the new run is decided by the order of the status log
# (one job's records share a partition, and the replayer produces the re-open before the replayed
# record, so everything the new run causes comes after it), never by comparing the `at` clocks of
# different machines.
_APPLY = f"""
if ARGV[11] ~= '' then
  redis.call('HSETNX', KEYS[1], '{CALLBACK_FIELD}', ARGV[11])
end
if ARGV[12] ~= '' then
  redis.call('HSETNX', KEYS[1], '{OWNER_FIELD}', ARGV[12])
end
local rank = tonumber(ARGV[2])
local at = tonumber(ARGV[4])
if ARGV[9] == '1' then
  if redis.call('HGET', KEYS[1], 'status') == 'COMPLETED' then
    return 0
  end
  redis.call('HDEL', KEYS[1], 'result', 'error')
  redis.call('HSETNX', KEYS[1], 'submitted_at', ARGV[3])
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', rank, 'last_updated', at, 'reopened_at', at)
  redis.call('HINCRBY', KEYS[1], '{RUN_FIELD}', 1)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
  redis.call('ZADD', KEYS[2], at, ARGV[8])
  redis.call('PUBLISH', ARGV[10], ARGV[1])
  return 1
end
local current = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
if current >= {FINAL_RANK} or current > rank then
  return 0
end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_updated') or '0')
if current == rank and at <= last then
  return 0
end
redis.call('HSETNX', KEYS[1], 'submitted_at', ARGV[3])
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', rank, 'last_updated', math.max(at, last))
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[6]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
if rank >= {FINAL_RANK} then
  redis.call('ZREM', KEYS[2], ARGV[8])
else
  local base = redis.call('HGET', KEYS[1], 'reopened_at') or redis.call('HGET', KEYS[1], 'submitted_at')
  redis.call('ZADD', KEYS[2], 'NX', base, ARGV[8])
end
redis.call('PUBLISH', ARGV[10], ARGV[1])
return 1
"""


class FinishedRun(NamedTuple):
    """A finished job's webhook target and run number (``run`` counts its re-opens)."""

    request_id: str
    callback_url: str
    run: int


def redis_options(settings: RedisSettings | None) -> dict[str, Any]:
    """Credentials and TLS CA from the settings, for every Redis client (both DBs).

    A password in the URL (redis://:pw@host/0) works as well; the settings keep it out of URLs,
    which are easier to leak into logs. TLS itself is the URL's scheme: rediss://.
    """
    if settings is None:
        return {}
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password.get_secret_value():
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_ssl_ca_file:
        options["ssl_ca_certs"] = settings.redis_ssl_ca_file
    return options


def redis_client(url: str, settings: RedisSettings | None = None) -> redis.Redis:
    """A client that fails fast: a Redis outage must not hang request handlers."""
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, **redis_options(settings)
    )


def async_redis_client(url: str, settings: RedisSettings | None = None) -> aioredis.Redis:
    """`redis_client` for the event loop: a request handler reads and writes without a thread."""
    return aioredis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, **redis_options(settings)
    )


class JobStore:
    """Read and write job state; ``retention_s`` bounds how long a finished job is remembered.

    The blocking methods serve the workers' threads; the ``*_async`` ones (given ``aclient``, an
    asyncio client of the same database) serve request handlers on the event loop.
    """

    def __init__(
        self, client: redis.Redis, retention_s: int, aclient: aioredis.Redis | None = None
    ):
        self._redis = client
        self._aredis = aclient
        self._retention_s = retention_s
        self._apply = client.register_script(_APPLY)
        self._apply_async = aclient.register_script(_APPLY) if aclient is not None else None

    @classmethod
    def from_url(
        cls, url: str, retention_s: int, settings: RedisSettings | None = None
    ) -> JobStore:
        return cls(redis_client(url, settings), retention_s)

    def apply(self, update: StatusUpdate) -> bool:
        """Apply ``update`` unless it would move the job backwards; True if it changed the state."""
        return self.apply_many([update])[0]

    def apply_many(self, updates: list[StatusUpdate]) -> list[bool]:
        """Apply a consumer batch in one round trip (not atomic as a whole; each update is).

        Each applied change is published on ``EVENTS_PREFIX + request_id`` for live-status
        waiters (issue #6); the job keeps its callback URL even when the PENDING record is late.
        """
        if not updates:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for update in updates:
            self._apply(keys=_apply_keys(update), args=self._apply_args(update), client=pipe)
        return [bool(applied) for applied in pipe.execute()]

    async def apply_async(self, update: StatusUpdate) -> bool:
        """`apply` on the event loop."""
        if self._apply_async is None:
            raise RuntimeError("JobStore was built without an asyncio client")
        applied = await self._apply_async(keys=_apply_keys(update), args=self._apply_args(update))
        return bool(applied)

    def _apply_args(self, update: StatusUpdate) -> list[str | int]:
        return [
            update.status.value,
            STATUS_RANK[update.status],
            repr(update.submitted_at),
            repr(update.at),
            update.result.model_dump_json() if update.result else "",
            update.error or "",
            self._retention_s,
            update.request_id,
            "1" if update.reopen else "0",
            EVENTS_PREFIX + update.request_id,
            update.callback_url or "",
            update.owner or "",
        ]

    def get(self, request_id: str) -> JobState | None:
        return self.read(request_id)[0]

    def get_for(self, request_id: str, owner: str | None) -> JobState | None:
        """The job's state if ``owner`` may see it (None: anyone may), else None, as if unknown:
        with API keys on, a job is visible only to the key that submitted it."""
        return _visible(*self.read(request_id), owner)

    def read(self, request_id: str) -> tuple[JobState | None, str | None]:
        """The job's state and its owner (who submitted it, when API keys are on), in one read."""
        raw: dict[bytes, bytes] = self._redis.hgetall(KEY_PREFIX + request_id)  # type: ignore[assignment]
        return _job_state(request_id, raw)

    async def get_for_async(self, request_id: str, owner: str | None) -> JobState | None:
        """`get_for` on the event loop."""
        if self._aredis is None:
            raise RuntimeError("JobStore was built without an asyncio client")
        raw: dict[bytes, bytes] = await self._aredis.hgetall(KEY_PREFIX + request_id)  # type: ignore[assignment]
        return _visible(*_job_state(request_id, raw), owner)

    def overdue(self, submitted_before: float, limit: int = 500) -> list[tuple[str, float]]:
        """Jobs still open that were submitted before ``submitted_before``, oldest first."""
        rows: list[tuple[bytes, float]] = self._redis.zrangebyscore(  # type: ignore[assignment]
            OPEN_JOBS_KEY, "-inf", submitted_before, start=0, num=limit, withscores=True
        )
        return [(rid.decode(), float(score)) for rid, score in rows]

    def forget_open(self, request_id: str) -> None:
        self._redis.zrem(OPEN_JOBS_KEY, request_id)

    def finished_runs(self, request_ids: list[str]) -> list[FinishedRun]:
        """Those of these jobs that are final and have a callback URL, each with its run number
        (how often it was re-opened): what a webhook is due for. One round trip."""
        if not request_ids:
            return []
        with self._redis.pipeline(transaction=False) as pipe:
            for request_id in request_ids:
                pipe.hmget(KEY_PREFIX + request_id, "rank", CALLBACK_FIELD, RUN_FIELD)
            rows: list[list[bytes | None]] = pipe.execute()
        finished = []
        for request_id, (rank, url, run) in zip(request_ids, rows, strict=True):
            if rank is not None and int(rank) >= FINAL_RANK and url is not None:
                finished.append(FinishedRun(request_id, url.decode(), int(run or b"0")))
        return finished

    def callback_url(self, request_id: str) -> str | None:
        """Where the job's final state is POSTed, if its submitter asked for that."""
        value = self._redis.hget(KEY_PREFIX + request_id, CALLBACK_FIELD)
        return value.decode() if isinstance(value, bytes) else None

    def is_complete(self, topic: str) -> bool:
        """Whether the state holds everything ``topic`` (the status log) says; a flushed or new
        Redis lacks the marker, and then the state is rebuilt from the log."""
        return bool(self._redis.exists(f"{_MARKER_PREFIX}state-complete:{topic}"))

    def mark_complete(self, topic: str) -> None:
        """The rebuild from ``topic`` is finished (or the state was never lost)."""
        self._redis.set(f"{_MARKER_PREFIX}state-complete:{topic}", repr(time.time()))

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._redis.close()

    async def close_async(self) -> None:
        """Close both clients (call it from the event loop the asyncio client served)."""
        self.close()
        if self._aredis is not None:
            await self._aredis.aclose()


def _apply_keys(update: StatusUpdate) -> list[str]:
    return [KEY_PREFIX + update.request_id, OPEN_JOBS_KEY]


def _visible(state: JobState | None, job_owner: str | None, owner: str | None) -> JobState | None:
    """The state if ``owner`` may see it (None: anyone may), else None, as if the job were unknown."""
    if state is None or owner is None or job_owner == owner:
        return state
    return None


def _job_state(request_id: str, raw: dict[bytes, bytes]) -> tuple[JobState | None, str | None]:
    """A job's hash as its state and owner; (None, None) for an unknown job."""
    if not raw:
        return None, None
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    return JobState(
        request_id=request_id,
        status=JobStatus(fields["status"]),
        submitted_at=float(fields["submitted_at"]),
        last_updated=float(fields["last_updated"]),
        result=Result.model_validate(json.loads(fields["result"])) if "result" in fields else None,
        error=fields.get("error"),
    ), fields.get(OWNER_FIELD)
