"""The feature extractor's one settings object: the worker part (``PENGUIN12_*``) and the model
part (``PENGUIN12_MODEL_*``), read once by `feature_extractor.main`."""

from __future__ import annotations

from pydantic import Field

from penguin12.settings import WorkerSettings
from penguin12_model import ModelSettings


class FeatureExtractorSettings(WorkerSettings, ModelSettings):
    service_name: str = "feature_extractor"
    consumer_group: str = "feature_extractor"
    metrics_port: int = 9110
    # One backbone run per micro-batch (Triton-style dynamic batching).
    max_batch_size: int = 16
    # Deferred uploads (the preprocessor's defer_decode) are decoded here, on this many threads
    # (the decoder releases the GIL), within the same bounds the front door checked.
    decode_threads: int = Field(default=2, ge=1)
    max_image_pixels: int = 40_000_000
    max_decode_memory_mb: int = Field(default=512, ge=16)
    # Embeddings are a pure function of (pixels, model version): keep them a week.
    cache_ttl_s: int = 7 * 24 * 3600
