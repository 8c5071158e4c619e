"""The model services' one settings object: worker part and model part, each with its own names."""

from __future__ import annotations

import pytest

from classifier.settings import ClassifierSettings
from feature_extractor.settings import FeatureExtractorSettings
from penguin12.settings import WorkerSettings
from penguin12_model import ClassifierModel, FeatureExtractorModel, ModelSettings


@pytest.mark.parametrize("settings_class", [FeatureExtractorSettings, ClassifierSettings])
def test_model_services_read_both_parts_from_the_same_environment_variables(
    settings_class: type[FeatureExtractorSettings | ClassifierSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PENGUIN12_MODEL_SOURCE", "demo")
    monkeypatch.setenv("PENGUIN12_MODEL_NUM_THREADS", "3")
    monkeypatch.setenv("PENGUIN12_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("PENGUIN12_KAFKA_BOOTSTRAP", "kafka-1:9092")
    monkeypatch.setenv("PENGUIN12_METRICS_PORT", "9999")
    settings = settings_class()
    assert isinstance(settings, WorkerSettings) and isinstance(settings, ModelSettings)
    assert (settings.source, settings.num_threads) == ("demo", 3)
    assert (settings.max_batch_size, settings.metrics_port) == (8, 9999)
    assert settings.kafka_bootstrap == "kafka-1:9092"


def test_the_model_is_built_from_the_service_settings_object() -> None:
    """main passes its one settings object down: the model reads its part from it."""
    settings = FeatureExtractorSettings(source="demo", num_threads=2)
    assert FeatureExtractorModel(settings).settings is settings
    classifier = ClassifierSettings(source="demo")
    assert ClassifierModel(classifier).settings.source == "demo"
    assert classifier.max_batch_size == 64 and settings.max_batch_size == 16
