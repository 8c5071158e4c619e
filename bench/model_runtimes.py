"""Backbone runtime benchmark behind docs/model-performance.md.

    uv run python -m bench.model_runtimes [--rounds 5] [--procs 2] [--sections ...]

Sections:

* ``runtimes``: ``FeatureExtractorModel.embed`` (uint8 in, embeddings out, normalisation
  included) for torch eager (contiguous), channels_last, torch.compile, ONNX Runtime, each with
  2 and 1 intra-op threads where relevant, at batch 1/8/16. Variants run round-robin inside one
  process, so load from other processes hits all of them alike; medians and bests over rounds.
* ``malloc``: torch eager at batch 8/16/32 in child processes with and without
  ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` (glibc reads them at start), alternated.
* ``preprocess``: ``penguin12.imaging.prepare_image`` on the test photos with and without the
  JPEG draft decode.

The weights are the efficientnet_b0 demo bundle (random, seed 0): speed does not depend on the
values (no denormals occur; checked with forward hooks).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import machine_info
from penguin12_model import FeatureExtractorModel, ModelSettings
from penguin12_model.onnx_runtime import onnx_cache_path, session_options

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = Path(os.environ.get("PENGUIN12_PHOTOS", ROOT.parent / "shared" / "data" / "photos"))
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "17179869184"}

Runner = Callable[[np.ndarray], object]


def images(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def settings(cache: Path, **kw: Any) -> ModelSettings:
    return ModelSettings(source="demo", demo_architecture=ARCH, cache_dir=cache, **kw)


def torch_runner(fe: FeatureExtractorModel, threads: int) -> Runner:
    def run(x: np.ndarray) -> object:
        torch.set_num_threads(threads)
        return fe.embed(x)

    return run


def ort_runner(path: Path, threads: int, spinning: bool) -> Runner:
    import onnxruntime as ort

    opts = session_options(threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> object:
        return sess.run(None, {"images": x})[0]

    return run


def timed(run: Runner, x: np.ndarray, min_images: int) -> tuple[float, float, float]:
    """(images/s, process CPU ms per image, minor page faults per image) over
    ceil(min_images / batch) calls. CPU time and page faults hardly depend on other load."""
    calls = max(1, -(-min_images // len(x)))
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        run(x)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    n = calls * len(x)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return n / wall, cpu * 1e3 / n, faults / n


def section_runtimes(cache: Path, rounds: int, batches: list[int], compile_: bool) -> dict:
    torch.set_num_threads(2)
    eager = FeatureExtractorModel(settings(cache, runtime="torch", channels_last=False))
    cl = FeatureExtractorModel(settings(cache, runtime="torch", channels_last=True))
    ortm = FeatureExtractorModel(settings(cache, runtime="onnxruntime"))
    for m in (eager, cl, ortm):
        m.load()
    path = onnx_cache_path(cache, ortm.bundle)
    variants: dict[str, Runner] = {
        "torch eager (contiguous), 2 thr": torch_runner(eager, 2),
        "torch channels_last, 2 thr": torch_runner(cl, 2),
        "torch channels_last, 1 thr": torch_runner(cl, 1),
        "onnxruntime, 2 thr": ort_runner(path, 2, spinning=True),
        "onnxruntime, 2 thr, no spinning": ort_runner(path, 2, spinning=False),
        "onnxruntime, 1 thr": ort_runner(path, 1, spinning=True),
    }
    compile_s: dict[int, float] = {}
    if compile_:
        comp = FeatureExtractorModel(settings(cache, runtime="torch", channels_last=True))
        comp.load()
        comp._model = torch.compile(comp._model, dynamic=False)
        torch.set_num_threads(2)
        for b in batches:  # one static graph per batch size
            start = time.perf_counter()
            comp.embed(images(b))
            compile_s[b] = time.perf_counter() - start
            print(f"  torch.compile batch {b}: {compile_s[b]:.1f}s", file=sys.stderr)
        variants["torch.compile (inductor, channels_last), 2 thr"] = torch_runner(comp, 2)

    # Agreement with the reference (eager contiguous) on one batch.
    x8 = images(8, seed=3)
    ref = eager.embed(x8).astype(np.float64)
    scale = float(np.abs(ref).max())
    diffs = {
        name: float(np.abs(np.asarray(run(x8), dtype=np.float64) - ref).max() / scale)
        for name, run in variants.items()
    }

    results: dict[str, dict[int, list[tuple[float, float, float]]]] = {
        n: {b: [] for b in batches} for n in variants
    }
    for b in batches:
        x = images(b, seed=b)
        for run in variants.values():  # warm-up (allocator, oneDNN primitives, ORT arena)
            run(x)
        for r in range(rounds):
            order = list(variants.items())
            if r % 2:
                order.reverse()
            for name, run in order:
                results[name][b].append(timed(run, x, min_images=8))
        print(f"  batch {b} done", file=sys.stderr)
    torch.set_num_threads(2)
    return {"results": results, "compile_s": compile_s, "rel_diff": diffs}


def child_eager(cache: Path, rounds: int, batches: list[int]) -> dict:
    torch.set_num_threads(2)
    out: dict[str, dict[int, list[tuple[float, float, float]]]] = {}
    for cl in (False, True):
        fe = FeatureExtractorModel(settings(cache, runtime="torch", channels_last=cl))
        fe.load()
        name = "channels_last" if cl else "contiguous"
        out[name] = {}
        for b in batches:
            x = images(b)
            fe.embed(x)
            out[name][b] = [timed(fe.embed, x, min_images=b) for _ in range(rounds)]
    return out


def run_child(args: list[str], tuned_malloc: bool) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    if tuned_malloc:
        env.update(MALLOC_ENV)
    cmd = [sys.executable, "-m", "bench.model_runtimes", *args]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE)
    return json.loads(proc.stdout)


def alternate(procs: int, args: list[str]) -> dict[str, list[Any]]:
    """Run the child ``procs`` times per malloc setting, alternating which goes first."""
    out: dict[str, list[Any]] = {"default": [], "tuned": []}
    for p in range(procs):
        for label in ("default", "tuned") if p % 2 == 0 else ("tuned", "default"):
            out[label].append(run_child(args, tuned_malloc=label == "tuned"))
            print(f"  child {args[1]} {label} {p + 1}/{procs} done", file=sys.stderr)
    return out


def merge_runs(runs: list[dict]) -> dict:
    """Concatenate the per-round samples of several child processes."""
    merged: dict[str, Any] = {"results": {}, "rel_diff": {}, "compile_s": []}
    for run in runs:
        for name, per in run["results"].items():
            for b, vals in per.items():
                merged["results"].setdefault(name, {}).setdefault(int(b), []).extend(
                    tuple(v) for v in vals
                )
        for name, d in run["rel_diff"].items():
            merged["rel_diff"][name] = max(d, merged["rel_diff"].get(name, 0.0))
        if run["compile_s"]:
            merged["compile_s"].append({int(b): t for b, t in run["compile_s"].items()})
    return merged


def section_preprocess(rounds: int) -> dict:
    from PIL import Image, JpegImagePlugin

    from penguin12.imaging import Preprocessing, prepare_image

    photos = sorted(PHOTOS.glob("*.jpg"))
    data = {p.name: p.read_bytes() for p in photos}
    original = JpegImagePlugin.JpegImageFile.draft
    out: dict[str, dict[str, list[float]]] = {name: {"draft": [], "full": []} for name in data}

    def one(blob: bytes) -> float:
        start = time.perf_counter()
        for _ in range(5):
            prepare_image(blob, preprocessing=Preprocessing(), max_pixels=40_000_000)
        return (time.perf_counter() - start) / 5 * 1e3

    def no_draft(self: Any, mode: Any, size: Any) -> None:
        return None

    try:
        for _ in range(rounds):
            for name, blob in data.items():
                JpegImagePlugin.JpegImageFile.draft = original  # type: ignore[method-assign]
                out[name]["draft"].append(one(blob))
                JpegImagePlugin.JpegImageFile.draft = no_draft  # type: ignore[method-assign]
                out[name]["full"].append(one(blob))
    finally:
        JpegImagePlugin.JpegImageFile.draft = original  # type: ignore[method-assign]
    sizes = {}
    for p in photos:
        with Image.open(p) as im:
            sizes[p.name] = f"{im.width}x{im.height}"
    return {"times_ms": out, "sizes": sizes}


def med(v: list[float]) -> float:
    return statistics.median(v)


def runtime_table(rt: dict, ref_batch: int = 8) -> list[str]:
    res = rt["results"]
    batches = sorted({b for per in res.values() for b in per})
    eager = "torch eager (contiguous), 2 thr"
    b_ref = ref_batch if ref_batch in batches else batches[0]

    def tput(name: str, b: int) -> list[float]:
        return [v[0] for v in res[name][b]]

    fastest = max(med(tput(n, b_ref)) for n in res)
    lines = [
        "| runtime | "
        + " | ".join(f"batch {b} img/s, median (best)" for b in batches)
        + f" | vs eager (b={b_ref}) | vs fastest (b={b_ref}) | CPU ms/img (b={b_ref})"
        + f" | page faults/img (b={b_ref}) | max rel. diff vs eager |",
        "|---|" + "---|" * (len(batches) + 5),
    ]
    for name in res:
        cells = [f"{med(tput(name, b)):.1f} ({max(tput(name, b)):.1f})" for b in batches]
        m = med(tput(name, b_ref))
        cpu = med([v[1] for v in res[name][b_ref]])
        flt = med([v[2] for v in res[name][b_ref]])
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {m / med(tput(eager, b_ref)):.2f} | {m / fastest:.2f} | {cpu:.0f} | {flt:.0f}"
            + f" | {rt['rel_diff'].get(name, 0.0):.1e} |"
        )
    for i, comp in enumerate(rt.get("compile_s", [])):
        lines.append("")
        lines.append(
            f"torch.compile time per static batch size, process {i + 1}: "
            + ", ".join(f"batch {b}: {t:.0f} s" for b, t in comp.items())
        )
    return lines


def report(data: dict) -> str:
    lines: list[str] = []
    for label in ("default", "tuned"):
        key = f"runtimes_{label}"
        if key in data:
            lines.append("")
            lines.append(f"### {label} malloc" + (f" ({MALLOC_ENV})" if label == "tuned" else ""))
            lines.append("")
            lines.extend(runtime_table(data[key]))
    if "malloc" in data:
        mal = data["malloc"]
        lines.append("")
        lines.append(
            "| torch, 2 thr | batch | default malloc img/s, median (best) | tuned malloc img/s, "
            "median (best) | tuned / default, median of process pairs (range) "
            "| page faults/img default -> tuned | CPU ms/img default -> tuned |"
        )
        lines.append("|---|---|---|---|---|---|---|")

        def samples(label: str, fmt: str, b: int, i: int) -> list[float]:
            return [x[i] for proc in mal[label] for x in proc[fmt][str(b)]]

        for fmt in mal["default"][0]:
            for b in sorted(int(k) for k in mal["default"][0][fmt]):
                d, t = samples("default", fmt, b, 0), samples("tuned", fmt, b, 0)
                # Processes p (default) and p (tuned) ran back to back: compare within pairs.
                ratios = [
                    med([x[0] for x in tp[fmt][str(b)]]) / med([x[0] for x in dp[fmt][str(b)]])
                    for dp, tp in zip(mal["default"], mal["tuned"], strict=True)
                ]
                lines.append(
                    f"| {fmt} | {b} | {med(d):.1f} ({max(d):.1f}) | {med(t):.1f} ({max(t):.1f}) "
                    f"| {med(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) "
                    f"| {med(samples('default', fmt, b, 2)):.0f} -> "
                    f"{med(samples('tuned', fmt, b, 2)):.0f} "
                    f"| {med(samples('default', fmt, b, 1)):.0f} -> "
                    f"{med(samples('tuned', fmt, b, 1)):.0f} |"
                )
    if "preprocess" in data:
        pre = data["preprocess"]
        lines.append("")
        lines.append("| photo | size | with draft (ms) | without draft (ms) | speed-up |")
        lines.append("|---|---|---|---|---|")
        tot_d = tot_f = 0.0
        for name, times in pre["times_ms"].items():
            dr, fu = med(times["draft"]), med(times["full"])
            tot_d, tot_f = tot_d + dr, tot_f + fu
            lines.append(f"| {name} | {pre['sizes'][name]} | {dr:.2f} | {fu:.2f} | {fu / dr:.2f} |")
        lines.append(f"| all six | | {tot_d:.1f} | {tot_f:.1f} | {tot_f / tot_d:.2f} |")
    return "\n".join(lines)


ARCH = "efficientnet_b0"


def main() -> None:
    global ARCH
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sections", default="runtimes,malloc,preprocess")
    parser.add_argument("--rounds", type=int, default=4, help="round-robin rounds per process")
    parser.add_argument("--procs", type=int, default=2, help="process pairs (default/tuned)")
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--arch", default=ARCH)
    parser.add_argument("--cache", type=Path, default=Path(".cache/penguin12/models"))
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--child", choices=("runtimes", "eager"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    ARCH = args.arch
    logging.basicConfig(level=logging.ERROR)
    common = ["--cache", str(args.cache), "--arch", args.arch, "--rounds", str(args.rounds)]
    if args.child == "runtimes":
        result = section_runtimes(
            args.cache, args.rounds, args.batches or [1, 8, 16], not args.no_compile
        )
        print(json.dumps(result))
        return
    if args.child == "eager":
        print(json.dumps(child_eager(args.cache, args.rounds, args.batches or [8, 16, 32])))
        return
    import onnxruntime

    FeatureExtractorModel(settings(args.cache, runtime="onnxruntime")).load()  # demo + export
    sections = set(args.sections.split(","))
    data: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "cpu": machine_info()["cpu_model"],
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": os.getloadavg(),
    }
    if "runtimes" in sections:
        child = ["runtimes", *common]
        if args.batches:
            child += ["--batches", *map(str, args.batches)]
        if args.no_compile:
            child.append("--no-compile")
        runs = alternate(args.procs, ["--child", *child])
        data["runtimes_default"] = merge_runs(runs["default"])
        data["runtimes_tuned"] = merge_runs(runs["tuned"])
    if "malloc" in sections:
        data["malloc"] = alternate(
            args.procs, ["--child", "eager", *common, "--batches", "8", "16", "32"]
        )
    if "preprocess" in sections:
        data["preprocess"] = section_preprocess(max(args.rounds, 5))
    data["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    for key in ("machine", "cpu", "python", "torch", "onnxruntime", "date"):
        print(f"{key}: {data[key]}")
    print(f"load average before {data['load_before']}, after {data['load_after']}")
    print(report(data))


if __name__ == "__main__":
    main()
