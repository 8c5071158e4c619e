"""Classifier settings (environment variables prefixed ``PENGUIN12_``)."""

from __future__ import annotations

from penguin12.runner import WorkerSettings


class ClassifierSettings(WorkerSettings):
    service_name: str = "classifier"
    consumer_group: str = "classifier"
    metrics_port: int = 9120
    max_batch_size: int = 64
