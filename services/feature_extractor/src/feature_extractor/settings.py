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
    # Records taken from Kafka at once (Triton-style dynamic batching); the backbone runs on them
    # in runs of `backbone_batch_size` images, each as soon as its images are decoded, so the
    # decode of the next run overlaps the model. On a CPU, batches beyond ~4 save nothing per
    # image (docs/benchmarks.md, scenario 1); on a GPU, raise it to max_batch_size.
    max_batch_size: int = 16
    backbone_batch_size: int = Field(default=4, ge=1)
    # Backbone runs in flight at once, each on `num_threads` intra-op threads. On two cores, two
    # runs of one thread each were within the noise of one run of two (issue #14,
    # docs/benchmarks.md), and a lone image at idle finishes sooner on two threads.
    backbone_concurrency: int = Field(default=1, ge=1)
    # Deferred uploads (the preprocessor's defer_decode) are decoded here, on this many threads
    # (the decoder releases the GIL), within the same bounds the front door checked.
    decode_threads: int = Field(default=2, ge=1)
    max_image_pixels: int = 40_000_000
    # Two intra-op threads (they sleep between ops, never spin: penguin12_model.onnx_runtime): one
    # extractor completed 17-31 % more images per second than with one, for 4-15 % more CPU per
    # image (issue #14, docs/benchmarks.md). Same variable as the model part's.
    num_threads: int = Field(default=2, ge=0, validation_alias="PENGUIN12_MODEL_NUM_THREADS")
    max_decode_memory_mb: int = Field(default=512, ge=16)
    # Embeddings are a pure function of (pixels, model version): keep them a week.
    cache_ttl_s: int = 7 * 24 * 3600
