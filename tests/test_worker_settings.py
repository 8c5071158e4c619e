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


def test_the_extractor_runs_two_sleeping_model_threads_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #14: two intra-op threads for the extractor (the classifier's head needs one), and
    ONNX Runtime's threads sleep between ops instead of spinning on cores the services share."""
    from penguin12_model.onnx_runtime import session_options

    monkeypatch.delenv("PENGUIN12_MODEL_NUM_THREADS", raising=False)
    assert FeatureExtractorSettings().num_threads == 2
    assert ClassifierSettings().num_threads == 1
    assert FeatureExtractorSettings(num_threads=1).num_threads == 1
    options = session_options(2)
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
