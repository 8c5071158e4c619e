"""On demand: A/B the pipeline's own cost, lever by lever, in one run.

Scenario 2's saturated closed loop (one feature extractor, long-polling users) is measured once per
variant, the variants interleaved over ``--rounds`` rounds so that a slow minute of the machine
does not favour one of them; a variant is a label and the service environment it sets. Prints and
writes (bench/results/levers.json) the CPU-ms per completed image of every process, the median over
the rounds. Not part of `make bench`: run it to decide on a lever, as docs/benchmarks.md did.

    uv run python -m bench.levers --variant base= \\
        --variant fetch=PENGUIN12_KAFKA_FETCH_WAIT_MAX_MS=20,PENGUIN12_KAFKA_FETCH_MIN_BYTES=65536
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from typing import Any

from bench.common import RESULTS, log, wait_quiet
from bench.corpus import QUICK_CORPUS, load_corpus
from bench.load import build_bodies
from bench.pipeline_saturated import measure, warm_up_pipeline
from bench.stack import BenchStack, infra


def _variant(text: str) -> tuple[str, dict[str, str]]:
    label, _, assignments = text.partition("=")
    env = dict(item.split("=", 1) for item in filter(None, assignments.split(",")))
    return label, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", action="append", type=_variant, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fe", type=int, default=1, help="feature extractor processes")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window")
    args = parser.parse_args()
    bodies = build_bodies(load_corpus(QUICK_CORPUS))
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in args.variant}
    with infra() as inf:
        warm_up_pipeline(inf, bodies, args.clients)
        for round_ in range(args.rounds):
            for label, env in args.variant:
                with BenchStack(
                    inf, f"levers-{label}-{round_}", feature_extractors=args.fe, extra_env=env
                ) as stack:
                    wait_quiet(stack.pids().values(), 10)
                    stack.infra.redis(1).flushdb()  # the same images again: no cache hits
                    run = asyncio.run(
                        measure(
                            stack,
                            bodies,
                            clients=args.clients,
                            warmup_s=5.0,
                            measure_s=args.seconds,
                        )
                    )
                    runs[label].append(run)
                    log(
                        f"{label} round {round_}: {run['completed_per_s']} completed/s, "
                        f"{run['system_cpu_ms_per_image']} CPU-ms/img "
                        f"{run['cpu_ms_per_image_by_process']}, accept p99 "
                        f"{run['accept_latency'].get('p99_ms')} ms, extractor ms per batch "
                        f"{run['fe_ms_per_batch']} (batch {run['fe_mean_batch_size']}), others "
                        f"{run['cpu']['foreign_busy_cores']} cores"
                    )
    summary = {}
    for label, rows in runs.items():
        processes = sorted({p for r in rows for p in r["cpu_ms_per_image_by_process"]})
        summary[label] = {
            "completed_per_s": statistics.median(r["completed_per_s"] for r in rows),
            "system_cpu_ms_per_image": statistics.median(
                r["system_cpu_ms_per_image"] for r in rows
            ),
            "by_process": {
                p: round(
                    statistics.median(r["cpu_ms_per_image_by_process"].get(p, 0.0) for r in rows), 2
                )
                for p in processes
            },
        }
        log(f"{label}: {json.dumps(summary[label])}")
    out = RESULTS / "levers.json"
    out.write_text(
        json.dumps({"variants": dict(args.variant), "summary": summary, "runs": runs}, indent=1)
    )
    log(f"written {out}")


if __name__ == "__main__":
    main()
