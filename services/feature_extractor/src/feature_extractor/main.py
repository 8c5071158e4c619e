"""Feature extractor process: load the backbone, then consume prepared images in micro-batches."""

from __future__ import annotations

from feature_extractor.cache import EmbeddingCache
from feature_extractor.extraction import FeatureExtraction
from feature_extractor.settings import FeatureExtractorSettings
from penguin12.kafka import AsyncProducer
from penguin12.runner import run_model_worker, stream_worker
from penguin12.schemas import ImageJob
from penguin12.state import redis_options
from penguin12.worker import EarlyOutputs, StreamWorker
from penguin12_model import FeatureExtractorModel


def build_worker(
    settings: FeatureExtractorSettings, model: FeatureExtractorModel, producer: AsyncProducer
) -> StreamWorker[ImageJob]:
    cache = EmbeddingCache.from_url(
        settings.cache_redis_url, model.info.version, settings.cache_ttl_s, redis_options(settings)
    )
    early = EarlyOutputs(producer)
    handler = FeatureExtraction(settings, model, cache, early)
    return stream_worker(settings, settings.topic_preprocessed, ImageJob, handler, producer, early)


def main() -> None:
    settings = FeatureExtractorSettings()
    model = FeatureExtractorModel(settings)
    run_model_worker(settings, model, lambda producer: build_worker(settings, model, producer))
