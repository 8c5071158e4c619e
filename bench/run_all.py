"""`make bench` / `make bench-full`: every scenario in turn, then a table of the results.

One Kafka and one Redis (free ports, a temporary directory) serve all scenarios; each scenario
runs as its own process, starts its own services on fresh topics and ports, prints one summary
line and writes bench/results/<scenario>.json. The table is printed and written to
bench/results/summary.md (the figures docs/benchmarks.md publishes come from `make bench-full`).

    uv run python -m bench.run_all [--full] [--only 2,5] [--model embedded]

``--model embedded`` runs the scenarios on the real default detector (CLIP ViT-B/16 INT8 + probe)
instead of the efficientnet_b0 demo bundle: scenario 1 is then the bare encoder's best throughput
(intra-op threads x model threads), and scenario 2 the saturated pipeline divided by it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

from bench.common import RESULTS, Mode, load_result, log, machine_info
from bench.corpus import ensure_corpus
from bench.stack import infra, model_dir

# (result name, module, full mode only)
SCENARIOS = [
    ("1_bare_work", "bench.bare_work", False),
    ("2_pipeline_saturated", "bench.pipeline_saturated", False),
    ("3_ingest", "bench.ingest", False),
    ("4_vs_sync", "bench.vs_sync", False),
    ("5_latency", "bench.latency", False),
    ("6_growth", "bench.growth", False),
    ("7_extractor_stage", "bench.extractor_stage", False),
    ("8_hostile_uploads", "bench.hostile_uploads", False),
    ("9_evidence_cost", "bench.evidence_cost", False),
    ("10_vs_bentoml", "bench.vs_bentoml", False),
    ("diag_kafka_cost", "bench.kafka_cost", True),
    ("diag_status_store_cost", "bench.status_store_cost", True),
]


def table(names: list[str]) -> str:
    """Markdown: one row per target, with the figure it was judged on."""
    rows = ["| scenario | target | goal | measured | ratio | status |", "|---|---|---|---|---|---|"]
    for name in names:
        data = load_result(name)
        if data is None:
            rows.append(f"| {name} | (no result) | | | | |")
            continue
        if not data["targets"]:
            rows.append(f"| {name} | {data['summary'].split('] ', 1)[-1]} | | | | |")
        for t in data["targets"]:
            rows.append(
                f"| {name} | {t['name']} | {t['goal']} | {t['measured']} | "
                f"{t['ratio_to_goal']} | {t['status']} |"
            )
    return "\n".join(rows)


def cpu_table(names: list[str]) -> str:
    """Markdown: scenario 2's CPU-ms per completed image by process, with and without each of
    issue #14's levers that a setting turns off, all from this run."""
    data = load_result("2_pipeline_saturated") if "2_pipeline_saturated" in names else None
    if data is None:
        return ""
    runs = data["figures"]["runs"]
    order = (
        "fe1-decode-at-door",
        "fe1-no-overlap",
        "fe1-threads1",
        "fe1-fuller-fetches",
        "fe1",
        "fe2",
    )
    cols = [(k, runs[k]) for k in order if k in runs]
    names: list[str] = []
    for _, run in cols:
        names += [n for n in run.get("cpu_ms_per_image_by_process", {}) if n not in names]
    head = "| process | " + " | ".join(k for k, _ in cols) + " |"
    rows = [head, "|---" * (len(cols) + 1) + "|"]
    for name in names:
        cells = [str(run.get("cpu_ms_per_image_by_process", {}).get(name, "")) for _, run in cols]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows.append(
        "| **all** | " + " | ".join(str(r["system_cpu_ms_per_image"]) for _, r in cols) + " |"
    )
    rows.append("| completed/s | " + " | ".join(str(r["completed_per_s"]) for _, r in cols) + " |")
    rows.append(
        "| others' cores | "
        + " | ".join(str(r["cpu"]["foreign_busy_cores"]) for _, r in cols)
        + " |"
    )
    bare = data["figures"].get("bare_cpu_ms_per_image")
    return (
        "\n\nCPU-ms per completed image, by process (scenario 2; bare work: "
        f"{bare} CPU-ms per image):\n\n" + "\n".join(rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="report mode (longer)")
    parser.add_argument("--only", default="", help="scenario numbers to run, e.g. 2,5")
    parser.add_argument(
        "--model",
        choices=("demo", "embedded"),
        default=os.environ.get("PENGUIN12_BENCH_MODEL", "demo"),
        help="the bundle served: the efficientnet_b0 demo (default) or the embedded detector",
    )
    args = parser.parse_args()
    os.environ["PENGUIN12_BENCH_MODEL"] = args.model  # the scenarios are child processes
    mode = Mode(args.full)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    chosen = [
        (n, m)
        for n, m, full_only in SCENARIOS
        if (not only or n.split("_")[0] in only) and (mode.full or not full_only)
    ]
    started = time.monotonic()
    machine = machine_info()
    log(
        f"{mode.name} benchmarks on {machine['cpu_model']} ({machine['cores']} cores), "
        f"torch {machine['torch']}"
    )
    model_dir()  # the served bundle, made or fetched once before anything is timed
    ensure_corpus(3000 if mode.full else 1000)
    outcomes: dict[str, Any] = {}
    with infra() as inf:
        env = {**os.environ, **inf.env(), "PENGUIN12_BENCH_FULL": "1" if mode.full else "0"}
        for name, module in chosen:
            log(f"--- {name}")
            proc = subprocess.run(
                [sys.executable, "-m", module],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
                timeout=3600,
                check=False,
            )
            sys.stdout.write(proc.stdout)
            sys.stdout.flush()
            outcomes[name] = proc.returncode
            if proc.returncode:
                log(f"{name} failed with exit code {proc.returncode}")
    summary = table([n for n, _ in chosen]) + cpu_table([n for n, _ in chosen])
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = (
        f"{mode.name} run, {machine['date_utc']}, {machine['cpu_model']}, {machine['cores']} "
        f"cores, torch {machine['torch']}, commit {machine['git_commit']}, "
        f"{time.monotonic() - started:.0f} s\n\n"
    )
    (RESULTS / "summary.md").write_text(header + summary + "\n")
    print("\n" + header + summary)
    sys.exit(1 if any(outcomes.values()) else 0)


if __name__ == "__main__":
    main()
