"""What users would pick instead of Penguin12: one synchronous FastAPI endpoint (not shipped).

``POST /v1/infer-sync`` reads the upload, prepares it with the same `prepare_image`, runs the same
backbone and head inline (batch of one) and answers with the verdict: the obvious "just wrap the
model in FastAPI" service, run the obvious way (one uvicorn process, a plain ``def`` endpoint, so
FastAPI runs requests in its thread pool). Only bench/vs_sync.py starts it.

    uv run python -m bench.sync_baseline --port 8765 --model-dir .cache/models/demo-efficientnet_b0-seed0
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, UploadFile


def create_app(model_dir: Path, threads: int = 0) -> FastAPI:
    from penguin12.imaging import ImageRejected, prepare_image
    from penguin12_model import ClassifierModel, FeatureExtractorModel, ModelSettings

    # 0 = all cores, what the runtimes do out of the box (and what a user would run).
    settings = ModelSettings(source="local", dir=model_dir, num_threads=threads)
    backbone, head = FeatureExtractorModel(settings), ClassifierModel(settings)
    backbone.load()
    head.load()
    app = FastAPI(title="sync baseline (benchmark only)")

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/infer-sync")
    def infer(file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        data = file.file.read()
        try:
            image = prepare_image(data, preprocessing=backbone.preprocessing, max_pixels=40_000_000)
        except ImageRejected as exc:
            raise HTTPException(exc.status_code, str(exc)) from exc
        prediction = head.predict(backbone.embed(image.pixels[None]))[0]
        return {
            "prediction": prediction.prediction,
            "confidence": prediction.confidence,
            "demo": backbone.info.demo,
        }

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = all cores)")
    args = parser.parse_args()
    uvicorn.run(create_app(args.model_dir, args.threads), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
