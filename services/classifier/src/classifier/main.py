"""Classifier process: load the head, then turn embeddings into verdicts."""

from __future__ import annotations

from classifier.classification import Classification
from classifier.settings import ClassifierSettings
from penguin12.kafka import AsyncProducer
from penguin12.runner import run_model_worker, stream_worker
from penguin12.schemas import FeaturesMessage
from penguin12.worker import StreamWorker
from penguin12_model import ClassifierModel


def build_worker(
    settings: ClassifierSettings, model: ClassifierModel, producer: AsyncProducer | None = None
) -> StreamWorker[FeaturesMessage]:
    handler = Classification(settings, model)
    return stream_worker(settings, settings.topic_features, FeaturesMessage, handler, producer)


def main() -> None:
    settings = ClassifierSettings()
    model = ClassifierModel(settings)
    run_model_worker(settings, model, lambda producer: build_worker(settings, model, producer))
