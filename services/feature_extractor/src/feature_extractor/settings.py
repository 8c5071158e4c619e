"""Feature extractor settings (environment variables prefixed ``PENGUIN12_``)."""

from __future__ import annotations

from penguin12.runner import WorkerSettings


class FeatureExtractorSettings(WorkerSettings):
    service_name: str = "feature_extractor"
    consumer_group: str = "feature_extractor"
    metrics_port: int = 9110
    # One backbone run per micro-batch (Triton-style dynamic batching).
    max_batch_size: int = 16
    # Embeddings are a pure function of (pixels, model version): keep them a week.
    cache_ttl_s: int = 7 * 24 * 3600
