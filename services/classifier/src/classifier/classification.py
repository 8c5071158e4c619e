"""The batch handler: run the head on a batch of embeddings and publish each verdict."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from opentelemetry import trace

from classifier.settings import ClassifierSettings
from penguin12.evidence.verdict import apply_declarations
from penguin12.logs import request_context
from penguin12.schemas import FeaturesMessage, JobStatus, ModelInfo, Result, StatusUpdate
from penguin12.worker import Output, Record, status_output
from penguin12_model import ClassifierModel

log = logging.getLogger("penguin12.classifier")
tracer = trace.get_tracer("penguin12.classifier")


@dataclass
class Classification:
    """The classifier's `StreamWorker` handler (one call per batch of embeddings)."""

    settings: ClassifierSettings
    model: ClassifierModel
    # The served model as results name it (the model is loaded before the handler is built).
    model_info: ModelInfo = field(init=False)

    def __post_init__(self) -> None:
        self.model_info = self.model.info

    def __call__(self, records: list[Record[FeaturesMessage]]) -> list[Output]:
        for record in records:
            self._check(record.payload)
        embeddings = np.stack([r.payload.vector() for r in records])
        spans = [
            tracer.start_span(
                "classify",
                context=r.trace_context,
                attributes={"penguin12.request_id": r.payload.request_id},
            )
            for r in records
        ]
        try:
            predictions = self.model.predict(embeddings)
        finally:
            for span in spans:
                span.end()
        outputs = []
        for record, prediction, span in zip(records, predictions, spans, strict=True):
            features = record.payload
            model_verdict = Result(
                prediction=prediction.prediction,
                confidence=round(prediction.confidence, 6),
                fake_probability=round(prediction.fake_probability, 6),
                assessment=prediction.assessment,
                model=self.model_info,
                demo=self.model_info.demo,
            )
            result = apply_declarations(model_verdict, features.evidence or [])
            with request_context(features.request_id):
                log.info(
                    "COMPLETED: %s (%.4f, %s)",
                    result.prediction,
                    result.confidence,
                    result.assessment,
                )
            update = StatusUpdate(
                request_id=features.request_id,
                submitted_at=features.submitted_at,
                status=JobStatus.COMPLETED,
                service=self.settings.service_name,
                result=result,
            )
            outputs.append(status_output(self.settings, update, trace.set_span_in_context(span)))
        return outputs

    def _check(self, features: FeaturesMessage) -> None:
        """Features from another model cannot be classified by this head: fail the job clearly."""
        if features.model.version != self.model_info.version:
            raise ValueError(
                f"features come from model {features.model.version}, "
                f"but this classifier runs {self.model_info.version}"
            )
        dim = self.model.config.embedding_dim
        if features.vector().shape != (dim,):
            raise ValueError(
                f"embedding has {features.vector().size} values, the head expects {dim}"
            )
