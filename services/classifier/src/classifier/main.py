"""Classifier process: load the head, then turn embeddings into verdicts."""

from __future__ import annotations

from classifier.classification import Classification
from classifier.settings import ClassifierSettings
from penguin12.kafka import AsyncProducer
from penguin12.runner import run_model_worker
from penguin12.schemas import FeaturesMessage
from penguin12.worker import StreamWorker
from penguin12_model import ClassifierModel, ModelSettings


def build_worker(
    settings: ClassifierSettings, model: ClassifierModel, producer: AsyncProducer | None = None
) -> StreamWorker[FeaturesMessage]:
    return StreamWorker(
        settings=settings,
        group_id=settings.consumer_group,
        source_topic=settings.topic_features,
        schema=FeaturesMessage,
        handle_batch=Classification(settings, model),
        max_batch_size=settings.max_batch_size,
        max_batch_wait_s=settings.max_batch_wait_ms / 1000,
        producer=producer,
    )


def main() -> None:
    settings = ClassifierSettings()
    model = ClassifierModel(ModelSettings())

    run_model_worker(settings, model, lambda producer: build_worker(settings, model, producer))
