"""Embedding cache in Redis DB1, keyed by model version and the prepared pixels' sha256.

The cache is an optimisation: if Redis is down every lookup is a miss and the job still runs.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from penguin12.metrics import CACHE_REQUESTS

log = logging.getLogger("penguin12.feature_extractor.cache")


class EmbeddingCache:
    def __init__(self, client: redis.Redis, model_version: str, ttl_s: int):
        self._redis = client
        self._prefix = f"penguin12:emb:{model_version}:"
        self._ttl_s = ttl_s

    @classmethod
    def from_url(
        cls, url: str, model_version: str, ttl_s: int, options: dict[str, Any] | None = None
    ) -> EmbeddingCache:
        client = redis.Redis.from_url(
            url, socket_timeout=1, socket_connect_timeout=1, **(options or {})
        )
        return cls(client, model_version, ttl_s)

    def get_many(self, digests: list[str]) -> list[bytes | None]:
        try:
            values: list[bytes | None] = self._redis.mget(  # type: ignore[assignment]
                [self._prefix + d for d in digests]
            )
        except redis.RedisError as exc:
            log.warning("embedding cache unavailable, computing instead: %s", exc)
            CACHE_REQUESTS.labels(result="error").inc(len(digests))
            return [None] * len(digests)
        hits = sum(v is not None for v in values)
        CACHE_REQUESTS.labels(result="hit").inc(hits)
        CACHE_REQUESTS.labels(result="miss").inc(len(values) - hits)
        return values

    def put_many(self, items: dict[str, bytes]) -> None:
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for digest, value in items.items():
                    pipe.set(self._prefix + digest, value, ex=self._ttl_s)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not store embeddings in the cache: %s", exc)
