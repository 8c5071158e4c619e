"""The BentoML peer (benchmark only, never shipped): the same model behind ``@bentoml.task``.

What a user would pick instead of Penguin12 off the shelf: submit an image, poll the task's
status, fetch the verdict. The task is batchable, so BentoML's adaptive batching groups concurrent
submissions (up to ``max_batch_size`` within ``max_latency_ms``) into one model run; inside it the
images are prepared with the same `prepare_image` and run through the same backbone and head as
our services. Runs in its own virtual environment (BentoML's pins conflict with our lock), made by
bench/vs_bentoml.py; the settings come from the environment it sets:

    PENGUIN12_BENTO_MODEL_DIR    the served bundle (the benchmark's demo bundle)
    PENGUIN12_BENTO_THREADS      the runtime's intra-op threads (0: all cores)
    PENGUIN12_BENTO_WORKERS      BentoML worker processes
    PENGUIN12_BENTO_MAX_BATCH    adaptive batching's max_batch_size
    PENGUIN12_BENTO_MAX_LATENCY_MS  adaptive batching's max_latency_ms
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

_WORKERS = int(os.environ.get("PENGUIN12_BENTO_WORKERS", "1"))
_MAX_BATCH = int(os.environ.get("PENGUIN12_BENTO_MAX_BATCH", "16"))
# BentoML's default for tasks (60 s): a shorter one makes its dispatcher refuse work under load
# ("process is overloaded"), and the task then FAILS; a queue should queue.
_MAX_LATENCY_MS = int(os.environ.get("PENGUIN12_BENTO_MAX_LATENCY_MS", "60000"))


# Per-request access logging off: our services log one line per job, not per HTTP request.
@bentoml.service(workers=_WORKERS, traffic={"timeout": 600}, logging={"access": {"enabled": False}})
class Detector:
    def __init__(self) -> None:
        from penguin12_model import ClassifierModel, FeatureExtractorModel, ModelSettings

        settings = ModelSettings(
            source="local",
            dir=Path(os.environ["PENGUIN12_BENTO_MODEL_DIR"]),
            num_threads=int(os.environ.get("PENGUIN12_BENTO_THREADS", "0")),
        )
        self.backbone = FeatureExtractorModel(settings)
        self.head = ClassifierModel(settings)
        self.backbone.load()
        self.head.load()

    @bentoml.api(route="/readyz")
    def ready(self) -> dict[str, str]:
        return {"status": "ready"}

    @bentoml.task(batchable=True, max_batch_size=_MAX_BATCH, max_latency_ms=_MAX_LATENCY_MS)
    def infer(self, files: list[Path]) -> list[dict[str, Any]]:
        from penguin12.imaging import prepare_image

        pixels = np.stack(
            [
                prepare_image(
                    path.read_bytes(),
                    preprocessing=self.backbone.preprocessing,
                    max_pixels=40_000_000,
                ).pixels
                for path in files
            ]
        )
        predictions = self.head.predict(self.backbone.embed(pixels))
        return [
            {
                "prediction": p.prediction,
                "confidence": p.confidence,
                "demo": self.backbone.info.demo,
            }
            for p in predictions
        ]
