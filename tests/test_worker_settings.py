"""The model services' one settings object: worker part and model part, each from its own prefix."""

from __future__ import annotations

import pytest

from classifier.settings import ClassifierSettings
from feature_extractor.settings import FeatureExtractorSettings
from penguin12.settings import WorkerSettings
from penguin12_model import ModelSettings


@pytest.mark.parametrize("settings_class", [FeatureExtractorSettings, ClassifierSettings])
def test_model_services_read_both_parts_from_the_same_environment_variables(
    settings_class: type[FeatureExtractorSettings | ClassifierSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PENGUIN12_MODEL_SOURCE", "demo")
    monkeypatch.setenv("PENGUIN12_MODEL_NUM_THREADS", "3")
    monkeypatch.setenv("PENGUIN12_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("PENGUIN12_KAFKA_BOOTSTRAP", "kafka-1:9092")
    settings = settings_class()
    model = settings.model
    assert isinstance(model, ModelSettings)
    assert isinstance(settings, WorkerSettings)
    assert (model.source, model.num_threads) == ("demo", 3)
    assert settings.max_batch_size == 8 and settings.kafka_bootstrap == "kafka-1:9092"
    # The model part does not leak into the worker part's namespace, nor the other way round.
    assert "source" not in settings_class.model_fields
    assert "max_batch_size" not in ModelSettings.model_fields


def test_the_model_part_can_be_given_in_code() -> None:
    settings = FeatureExtractorSettings(model=ModelSettings(source="demo"))
    assert settings.model.source == "demo" and settings.max_batch_size == 16
