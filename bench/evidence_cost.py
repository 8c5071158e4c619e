"""What reading evidence (C2PA, XMP, PNG text, EXIF) costs per upload, in the preprocessor's process.

Two questions, both measured in this one process so the ratios compare like with like:
- plain JPEGs (the benchmark corpus: real photographs, 100-300 KB, no provenance metadata): the
  CPU time of `read_evidence` as a fraction of the CPU time of `prepare_image` with the
  preprocessor's default preprocessing (CLIP's), its own work per upload. Target: under 10 %.
- hostile files built to make the readers slow or big (huge XMP, malformed and deeply nested
  manifests, thousands of text chunks, a zTXt bomb, a flood of EXIF tags): the worst CPU time
  and the worst peak memory of one read. Targets: under 50 ms and under 20 MB. Memory is the
  process's peak RSS growth during the read (native allocations by the C2PA library included),
  with the kernel's peak counter reset before each read; tracemalloc's Python-only peak is
  reported beside it.

CPU time is the thread's own (`time.thread_time`), so other work on a shared machine does not
inflate it; each figure is the median of several repeats, and the worst case is also reported as
the slowest single repeat.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Result, Target, log, parse_args
from bench.corpus import describe, load_corpus

SCENARIO = "9_evidence_cost"


def _cpu_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.thread_time()
        fn()
        out.append(1e3 * (time.thread_time() - t))
    return out


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


# Run in a fresh interpreter per file, so that memory freed by earlier work cannot hide what one
# read allocates: the C2PA library is loaded and warmed on another file first, then the kernel's
# peak-RSS counter is reset and the one read is made.
_FRESH_READ = """
import sys
from penguin12.evidence import read_evidence
from bench.evidence_cost import _rss_kb
read_evidence(open(sys.argv[2], "rb").read())
data = open(sys.argv[1], "rb").read()
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
before = _rss_kb("VmRSS:")
read_evidence(data)
print(max(0, _rss_kb("VmHWM:") - before) / 1024)
"""


def _peak_rss_growth_mb(data: bytes, warm: bytes) -> float | None:
    """Peak RSS growth of one read in a fresh process; None where the peak cannot be reset."""
    with tempfile.TemporaryDirectory() as tmp:
        path, warm_path = Path(tmp) / "file", Path(tmp) / "warm"
        path.write_bytes(data)
        warm_path.write_bytes(warm)
        proc = subprocess.run(
            [sys.executable, "-c", _FRESH_READ, str(path), str(warm_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log(f"peak RSS not measured: {proc.stderr.strip()[-300:]}")
        return None


def _python_peak_mb(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def plain_cost(corpus: list[bytes], rounds: int) -> dict[str, Any]:
    from penguin12.evidence import read_evidence
    from penguin12.imaging import CLIP_PREPROCESSING, prepare_image

    prepare, evidence = [], []
    for _ in range(rounds):  # interleaved, so both see the same machine
        for data in corpus:
            prepare += _cpu_ms(
                lambda d=data: prepare_image(
                    d, preprocessing=CLIP_PREPROCESSING, max_pixels=40_000_000
                ),
                1,
            )
            evidence += _cpu_ms(lambda d=data: read_evidence(d), 1)
    found = sum(1 for data in corpus if read_evidence(data))
    p, e = statistics.median(prepare), statistics.median(evidence)
    return {
        "uploads": len(corpus),
        "rounds": rounds,
        "prepare_image_cpu_ms_median": round(p, 3),
        "read_evidence_cpu_ms_median": round(e, 4),
        "prepare_image_cpu_ms_mean": round(statistics.fmean(prepare), 3),
        "read_evidence_cpu_ms_mean": round(statistics.fmean(evidence), 4),
        "ratio_median": round(e / p, 5),
        "ratio_mean": round(statistics.fmean(evidence) / statistics.fmean(prepare), 5),
        "uploads_with_findings": found,
    }


def _big_jpeg(target_bytes: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    side = int((target_bytes / 2.1) ** 0.5)  # noise at quality 100: about 2 bytes per pixel
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=100)
    return buffer.getvalue()


def hostile_cost(repeats: int) -> dict[str, Any]:
    from penguin12.evidence import read_evidence
    from tests.corpus import provenance

    files = provenance.hostile()
    chain = provenance.signing_chain()
    files["valid_manifest_photo"] = provenance.c2pa_signed(load_corpus(1)[0], chain=chain)
    # The largest upload allowed (10 MB), signed: the manifest's hash covers every byte.
    files["valid_manifest_10mb"] = provenance.c2pa_signed(_big_jpeg(9_500_000), chain=chain)
    out: dict[str, Any] = {}
    for name, data in files.items():
        read_evidence(data)  # warm: the C2PA library loads on first use
        times = _cpu_ms(lambda d=data: read_evidence(d), repeats)
        rss = _peak_rss_growth_mb(data, warm=files["valid_manifest_photo"])
        out[name] = {
            "bytes": len(data),
            "cpu_ms_median": round(statistics.median(times), 3),
            "cpu_ms_max": round(max(times), 3),
            "peak_rss_growth_mb": None if rss is None else round(rss, 2),
            "python_peak_mb": round(_python_peak_mb(lambda d=data: read_evidence(d)), 3),
            "findings": [f"{f.source}/{f.finding}" for f in read_evidence(data)],
        }
        log(f"{name}: {out[name]}")
    return out


def main() -> None:
    _, mode = parse_args(__doc__ or "")
    result = Result(
        SCENARIO, "Evidence reading: cost on plain JPEGs, worst case on hostile files", mode
    )
    corpus = load_corpus(mode.pick(60, 240))
    result.config = {"corpus": describe(corpus)}
    log(f"plain JPEGs: prepare_image vs read_evidence on {len(corpus)} uploads")
    plain = plain_cost(corpus, mode.pick(3, 5))
    log(f"plain: {plain}")
    hostile = hostile_cost(mode.pick(7, 21))
    worst_cpu = max(v["cpu_ms_median"] for v in hostile.values())
    worst_name = max(hostile, key=lambda k: hostile[k]["cpu_ms_median"])
    worst_mem = max(
        max(v["peak_rss_growth_mb"] or 0.0, v["python_peak_mb"]) for v in hostile.values()
    )
    result.figures = {"plain_jpeg": plain, "hostile": hostile}
    result.targets = [
        Target(
            "extra CPU per plain JPEG / preprocessing CPU",
            plain["ratio_mean"],
            0.10,
            higher_is_better=False,
            note="mean read_evidence CPU over mean prepare_image CPU, same process and uploads",
        ),
        Target(
            "worst hostile file, CPU per read",
            worst_cpu,
            50.0,
            higher_is_better=False,
            unit=" ms",
            note=f"median of repeats; the worst file is {worst_name}",
        ),
        Target(
            "worst hostile file, peak memory per read",
            worst_mem,
            20.0,
            higher_is_better=False,
            unit=" MB",
            note="the larger of peak RSS growth in a fresh process and tracemalloc's peak",
        ),
    ]
    result.write(
        f"evidence on plain JPEGs: {plain['read_evidence_cpu_ms_mean']:.3f} ms vs "
        f"{plain['prepare_image_cpu_ms_mean']:.2f} ms preprocessing "
        f"({100 * plain['ratio_mean']:.2f} %); worst hostile file {worst_cpu:.1f} ms "
        f"({worst_name}), {worst_mem:.1f} MB"
    )


if __name__ == "__main__":
    main()
