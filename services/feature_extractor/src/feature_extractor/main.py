"""Feature extractor process: load the backbone, then consume prepared images in micro-batches."""

from __future__ import annotations

import logging

from feature_extractor.cache import EmbeddingCache
from feature_extractor.extraction import FeatureExtraction
from feature_extractor.settings import FeatureExtractorSettings
from penguin12.kafka import AsyncProducer
from penguin12.runner import run_model_worker
from penguin12.schemas import ImageJob
from penguin12.state import redis_options
from penguin12.worker import EarlyOutputs, StreamWorker
from penguin12_model import FeatureExtractorModel, ModelSettings

log = logging.getLogger("penguin12.feature_extractor")


def build_worker(
    settings: FeatureExtractorSettings, model: FeatureExtractorModel, producer: AsyncProducer
) -> StreamWorker[ImageJob]:
    cache = EmbeddingCache.from_url(
        settings.cache_redis_url, model.info.version, settings.cache_ttl_s, redis_options(settings)
    )
    early = EarlyOutputs(producer)
    return StreamWorker(
        settings=settings,
        group_id=settings.consumer_group,
        source_topic=settings.topic_preprocessed,
        schema=ImageJob,
        handle_batch=FeatureExtraction(settings, model, cache, early),
        early=early,
        max_batch_size=settings.max_batch_size,
        max_batch_wait_s=settings.max_batch_wait_ms / 1000,
        producer=producer,
    )


def main() -> None:
    settings = FeatureExtractorSettings()
    model = FeatureExtractorModel(ModelSettings())

    run_model_worker(settings, model, lambda producer: build_worker(settings, model, producer))
