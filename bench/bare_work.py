"""Scenario 1 — bare work, the limit: decode + preprocess + backbone + head in one process.

The same JPEGs the pipeline gets are prepared with the project's own
`penguin12.imaging.prepare_image`, then embedded by `FeatureExtractorModel` (whatever runtime it
uses by default; ``--runtime`` passes another to `ModelSettings` once the engine has one) and
classified by `ClassifierModel`. Both cores are used: decoding runs in a thread pool while the
model runs. Several splits of the two cores (the runtime's intra-op threads, model threads, decode
threads) and batch sizes are tried, each a few times (the best trial counts: on a shared machine it
is the least disturbed), and the fastest is the limit the pipeline is compared with (scenario 2).
No Kafka, no Redis, no HTTP, no JSON: only the work itself.

    uv run python -m bench.bare_work [--full] [--runtime NAME] [--batch 16]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from bench.common import ProcMonitor, Result, log, parse_args, wait_quiet
from bench.corpus import describe, load_corpus
from bench.stack import MODEL_CACHE, model_dir

SCENARIO = "1_bare_work"


def _add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime",
        default=None,
        help="inference runtime passed to ModelSettings (default: the engine's own default)",
    )
    parser.add_argument(
        "--batch", type=int, default=16, help="images per model call (the feature extractor's max)"
    )


def build_models(runtime: str | None, threads: int) -> tuple[Any, Any, str]:
    """The project's own engines on the efficientnet_b0 demo bundle, with ``threads`` intra-op
    threads and ``runtime`` if given; returns them and the runtime actually serving."""
    from penguin12_model import ClassifierModel, FeatureExtractorModel, ModelSettings

    kwargs: dict[str, Any] = {"source": "local", "dir": model_dir(), "num_threads": threads}
    kwargs["cache_dir"] = MODEL_CACHE
    fields = ModelSettings.model_fields
    runtime_field = next((f for f in ("runtime", "engine", "backend") if f in fields), None)
    if runtime is not None:
        if runtime_field is None:
            raise SystemExit(
                f"--runtime {runtime!r}: ModelSettings has no runtime setting yet "
                "(only torch eager is supported)"
            )
        kwargs[runtime_field] = runtime
    settings = ModelSettings(**kwargs)
    fe, head = FeatureExtractorModel(settings), ClassifierModel(settings)
    fe.load()
    head.load()
    asked = str(getattr(settings, runtime_field)) if runtime_field else "torch"
    used = str(getattr(fe, "runtime", "torch"))
    return fe, head, used if used == asked else f"{used} ({asked})"


def run_config(
    corpus: list[bytes],
    fe: Any,
    head: Any,
    *,
    intra_threads: int,
    model_threads: int,
    decode_threads: int,
    batch: int,
    seconds: float,
) -> dict[str, Any]:
    """Images/s: ``model_threads`` threads each run the model (``intra_threads`` intra-op threads)
    on batches that ``decode_threads`` threads prepare ahead (0: each model thread decodes inline).
    """
    import torch

    from penguin12.imaging import prepare_image

    torch.set_num_threads(intra_threads)
    lock = threading.Lock()
    cursor = 0
    done = 0
    model_s = 0.0

    def prepare(data: bytes) -> np.ndarray:
        return prepare_image(data, preprocessing=fe.preprocessing, max_pixels=40_000_000).pixels

    def next_bytes() -> bytes:
        nonlocal cursor
        with lock:
            cursor += 1
            return corpus[cursor % len(corpus)]

    def model_loop(pool: ThreadPoolExecutor | None, deadline: float) -> None:
        nonlocal done, model_s
        torch.set_num_threads(intra_threads)
        queue: deque[Future[np.ndarray]] = deque()

        def refill() -> None:
            while pool is not None and len(queue) < 2 * batch:
                queue.append(pool.submit(prepare, next_bytes()))

        refill()
        while time.perf_counter() < deadline:
            if pool is None:
                images = [prepare(next_bytes()) for _ in range(batch)]
            else:
                images = [queue.popleft().result() for _ in range(batch)]
                refill()  # the next batch decodes while this one runs
            t = time.perf_counter()
            head.predict(fe.embed(np.stack(images)))
            elapsed = time.perf_counter() - t
            with lock:
                model_s += elapsed
                done += batch
        for future in queue:
            future.cancel()

    with ProcMonitor({}) as monitor:
        started = time.perf_counter()
        deadline = started + seconds
        pool = ThreadPoolExecutor(decode_threads) if decode_threads else None
        try:
            workers = [
                threading.Thread(target=model_loop, args=(pool, deadline))
                for _ in range(model_threads)
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        elapsed = time.perf_counter() - started
    cpu = monitor.result
    cores = cpu["cpu_cores_by_process"].get("bench", 0.0)
    return {
        "intra_threads": intra_threads,
        "model_threads": model_threads,
        "decode_threads": decode_threads,
        "batch": batch,
        "images": done,
        "seconds": round(elapsed, 2),
        "images_per_s": round(done / elapsed, 2),
        "cpu_ms_per_image": round(1e3 * cores * elapsed / done, 2) if done else None,
        "model_busy_share": round(model_s / elapsed / model_threads, 3),
        "cpu_cores": cores,
        "foreign_busy_cores": cpu["foreign_busy_cores"],
    }


def best_of(trials: int, **kwargs: Any) -> dict[str, Any]:
    """The best of ``trials`` runs: on a shared machine the best is the least disturbed."""
    runs = [run_config(**kwargs) for _ in range(trials)]
    best = max(runs, key=lambda r: r["images_per_s"])
    best["trials_images_per_s"] = [r["images_per_s"] for r in runs]
    return best


def unit_costs(corpus: list[bytes], fe: Any, head: Any) -> dict[str, float]:
    """Single-thread cost of each part, per image (ms): what the limit is made of."""
    import torch

    from penguin12.imaging import prepare_image

    torch.set_num_threads(1)
    n = min(len(corpus), 48)
    t = time.perf_counter()
    pixels = [
        prepare_image(d, preprocessing=fe.preprocessing, max_pixels=40_000_000).pixels
        for d in corpus[:n]
    ]
    out: dict[str, float] = {"prepare_image_ms": round(1e3 * (time.perf_counter() - t) / n, 2)}
    for batch in (1, 4, 16):
        stack = np.stack((pixels * (batch // len(pixels) + 1))[:batch])
        fe.embed(stack)
        reps = max(1, 32 // batch)
        t = time.perf_counter()
        for _ in range(reps):
            embeddings = fe.embed(stack)
        out[f"backbone_ms_batch{batch}"] = round(
            1e3 * (time.perf_counter() - t) / (reps * batch), 2
        )
    t = time.perf_counter()
    for _ in range(20):
        head.predict(embeddings)
    out["head_ms"] = round(1e3 * (time.perf_counter() - t) / (20 * len(embeddings)), 3)
    return out


def main() -> None:
    args, mode = parse_args(__doc__ or "", _add_args)
    result = Result(SCENARIO, "Bare work: decode + backbone + head in one process", mode)
    corpus = load_corpus(mode.pick(96, 256))
    seconds = mode.pick(4.0, 6.0)
    trials = mode.pick(2, 3)
    models: dict[int, tuple[Any, Any, str]] = {}

    def engines(threads: int) -> tuple[Any, Any, str]:
        if threads not in models:
            models[threads] = build_models(args.runtime, threads)
        return models[threads]

    fe, _, runtime = engines(1)
    result.config = {
        "corpus": describe(corpus),
        "seconds_per_trial": seconds,
        "trials_per_config": trials,
        "runtime": runtime,
        "model": fe.info.model_dump(),
        "quiet": wait_quiet([], mode.pick(10, 60)),
    }
    b = args.batch
    # (torch intra-op threads, model threads, decode threads, batch)
    configs = [(2, 1, 0, b), (2, 1, 1, b), (1, 1, 1, b), (1, 2, 1, b), (1, 1, 1, 1), (1, 2, 1, 1)]
    if mode.full:
        configs += [(2, 1, 2, b), (1, 2, 2, b), (1, 1, 1, 4), (1, 2, 1, 4), (2, 1, 1, 1)]
    runs = []
    for intra_threads, model_threads, decode_threads, batch in configs:
        fe, head, _ = engines(intra_threads)
        run = best_of(
            trials,
            corpus=corpus,
            fe=fe,
            head=head,
            intra_threads=intra_threads,
            model_threads=model_threads,
            decode_threads=decode_threads,
            batch=batch,
            seconds=seconds,
        )
        log(
            f"intra-op {intra_threads} thr x {model_threads} model thr, decode "
            f"{decode_threads or 'inline'}, batch {batch}: {run['images_per_s']} img/s, "
            f"{run['cpu_ms_per_image']} CPU-ms/img (others used {run['foreign_busy_cores']} cores)"
        )
        runs.append(run)
    best = max(runs, key=lambda r: r["images_per_s"])
    result.figures = {
        "images_per_s": best["images_per_s"],
        "cpu_ms_per_image": best["cpu_ms_per_image"],
        "best": best,
        "configs": runs,
        "unit_costs_single_thread": unit_costs(corpus, *engines(1)[:2]),
    }
    result.write(
        f"limit {best['images_per_s']:.1f} img/s ({runtime}, batch {best['batch']}, "
        f"{best['model_threads']} model thr x intra-op {best['intra_threads']} + decode "
        f"{best['decode_threads'] or 'inline'}; {best['cpu_ms_per_image']} CPU-ms/img)"
    )


if __name__ == "__main__":
    main()
