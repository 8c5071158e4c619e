"""The classifier's one settings object: the worker part (``PENGUIN12_*``) and the model part
(``PENGUIN12_MODEL_*``), read once by `classifier.main`."""

from __future__ import annotations

from penguin12.settings import WorkerSettings
from penguin12_model import ModelSettings


class ClassifierSettings(WorkerSettings, ModelSettings):
    service_name: str = "classifier"
    consumer_group: str = "classifier"
    metrics_port: int = 9120
    max_batch_size: int = 64
