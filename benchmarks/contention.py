"""Training and scoring beside busy neighbours: the same run alone and with as many busy processes
as the machine has cores, with the old torch thread sizing and the new one (issue 12, defect 9).

    .venv/bin/python benchmarks/contention.py [--repeats 3] [--neighbours N] [--score-rows 400000]
        [--workdir /tmp/aeflow-contention] [--wait-quiet 120] [--write-doc]

Workloads, each timed inside a fresh interpreter (imports excluded):

- train: fitting the demo's model (configs/demo.toml's detector parameters) on 96,000 demo rows,
  the rows `make demo` trains on (6 days of 20,000 less the 20% holdout);
- score: ``tasks.scoring.score_batch`` on one demo batch of ``--score-rows`` rows with a
  champion of the same architecture (model loading excluded).

Thread sizing:

- before: as aeflow sized threads before this benchmark: torch (and its OpenMP, which spins while
  it waits) loaded before aeflow, torch's default thread count for training (all CPUs of the
  affinity mask for steps this big) and all CPUs but one for scoring;
- old-counts: the old thread counts with OpenMP sleeping (the wait policy's share of the change);
- after: aeflow's defaults (models/cpu.py): OpenMP sleeps while it waits, threads sized from the
  CPUs this process may use (affinity, cgroup quota) less those busy neighbours occupy.

Neighbours, started before the measured process and stopped after it:

- quiet: none (whatever else runs on the machine is recorded: load average, runnable tasks);
- CPU burners: ``--neighbours`` Python processes spinning in a loop (one busy thread each);
- torch jobs: ``--neighbours`` processes training a small MLP with torch's defaults (all CPUs'
  threads, OpenMP spinning), i.e. other ML jobs sharing the worker.

Each cell is the median of ``--repeats`` runs; ratios are loaded / quiet of the same sizing. The
target (issue 12): the new sizing at most 2.5x its quiet time with as many busy neighbours as
cores. ``--write-doc`` writes docs/benchmarks/contention.md.
"""

from __future__ import annotations

import os
import sys

# A "before" child loads torch, and with it OpenMP's spinning wait policy, before any aeflow
# package can ask OpenMP to sleep: as the old code did.
WAIT_POLICY_AT_TORCH_IMPORT = os.environ.get("OMP_WAIT_POLICY")
if sys.argv[1:3] == ["--child", "before"]:
    import torch  # noqa: F401

import argparse  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks._common import markdown_table, write_report  # noqa: E402

TRAIN_ROWS = 96_000
TRAIN_DAYS, TRAIN_ROWS_PER_DAY = 6, 20_000
SCORE_CHUNK_ROWS = 65_536
DATASET = "demo"
# "old-counts": the old thread counts with OpenMP sleeping, to tell the wait policy's share of the
# improvement from the thread count's.
SIZINGS = ("before", "old-counts", "after")
NEIGHBOURS = ("quiet", "cpu", "torch")
NEIGHBOUR_LABELS = {
    "quiet": "alone",
    "cpu": "CPU-burning neighbours",
    "torch": "torch-job neighbours",
}
OPENMP_SETTINGS = ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT")

BURN_CPU = "while True:\n    pass\n"
# A small MLP trained forever with torch's defaults: all CPUs' threads, OpenMP spinning.
TORCH_JOB = """
import torch
model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
optimizer = torch.optim.Adam(model.parameters())
x = torch.randn(4096, 64)
while True:
    optimizer.zero_grad()
    ((model(x) - x) ** 2).mean().backward()
    optimizer.step()
"""


# ----------------------------------------------------------------------------------- children
def demo_config():
    from flows.config import load_config

    return load_config(REPO_ROOT / "configs" / "demo.toml")


def training_frame(incoming: Path):
    """The first TRAIN_ROWS rows, by time, of the demo days in ``incoming``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.frames import feature_frame

    cfg = demo_config()
    files = sorted(incoming.glob("*.parquet"))[:TRAIN_DAYS]
    table = pa.concat_tables([pq.read_table(f) for f in files]).sort_by(cfg.columns.timestamp)
    return feature_frame(table.slice(0, TRAIN_ROWS), cfg.columns.numeric, cfg.columns.categorical)


def old_threads(workload: str) -> int:
    """The old rule: torch's default for training, all CPUs but one for one scored batch."""
    import torch

    cpus = len(os.sched_getaffinity(0))
    return torch.get_num_threads() if workload == "train" else max(1, cpus - 1)


def child(sizing: str, workload: str, workdir: str, root: str) -> dict:
    """One measurement in this (fresh) process: seconds, CPU seconds and torch threads used.
    ``root`` is the storage root holding the scoring batch and its champion."""
    work = Path(workdir)
    from models import AutoencoderDetector  # sets OpenMP's policy unless torch came first

    policy = WAIT_POLICY_AT_TORCH_IMPORT if sizing == "before" else os.environ["OMP_WAIT_POLICY"]
    import torch

    if sizing in ("before", "old-counts"):
        os.environ["AEFLOW_TORCH_THREADS"] = str(old_threads(workload))
    seen: list[int] = []
    if workload == "train":
        frame = training_frame(work / "train")
        detector = AutoencoderDetector(**demo_config().detector_params())
        started, cpu = time.perf_counter(), time.process_time()
        detector.fit(frame, progress=lambda *_: seen.append(torch.get_num_threads()))
    else:
        from tasks.io import Storage, list_batches
        from tasks.model_cache import load_model
        from tasks.scoring import score_batch
        from tasks.settings import ScoringSettings

        storage = Storage(root, DATASET)
        load_model(storage, None)
        torch.set_num_threads = _recording(torch.set_num_threads, seen)
        started, cpu = time.perf_counter(), time.process_time()
        score_batch(
            batch=list_batches(storage.incoming)[0],
            storage=storage,
            columns=demo_config().columns,
            scoring=ScoringSettings(chunk_rows=SCORE_CHUNK_ROWS),
            force=True,
        )
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "threads": sorted(set(seen)),
        "wait_policy": policy or "OpenMP's default (spin, then sleep)",
    }


def _recording(set_num_threads, seen: list[int]):
    def record(threads: int) -> None:
        seen.append(threads)
        set_num_threads(threads)

    return record


# ------------------------------------------------------------------------------------- parent
def prepare(workdir: Path, score_rows: int) -> Path:
    """Demo days to train on, and a storage root with one scoring batch and a champion of the
    demo's architecture (reused when present); returns the storage root."""
    from models import AutoencoderDetector
    from tasks.demo_data import generate_demo_data
    from tasks.io import Storage

    train = workdir / "train"
    if not (train / "2026-01-06.parquet").is_file():
        generate_demo_data(
            train, days=TRAIN_DAYS, rows_per_day=TRAIN_ROWS_PER_DAY, seed=0, drift_day=None,
            malformed_day=None,
        )  # fmt: skip
    root = workdir / f"root-{score_rows}"
    layout = Storage(str(root), DATASET)
    if not Path(layout.champion_file).is_file():
        incoming = Path(layout.incoming)
        generate_demo_data(
            incoming, days=1, rows_per_day=score_rows, seed=1, start_date="2026-02-01",
            drift_day=None, malformed_day=None,
        )  # fmt: skip
        params = {**demo_config().detector_params(), "epochs": 2}
        detector = AutoencoderDetector(**params).fit(training_frame(train))
        bundle = workdir / "bundle"
        detector.save(bundle)
        registry = layout.registry()
        registry.promote(registry.register(str(bundle)), "contention benchmark")
    return root


def start_neighbours(kind: str, count: int) -> list[subprocess.Popen]:
    if kind == "quiet":
        return []
    code = BURN_CPU if kind == "cpu" else TORCH_JOB
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_SETTINGS}
    neighbours = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL)
        for _ in range(count)
    ]
    time.sleep(3 if kind == "torch" else 1)  # imports done, all busy
    return neighbours


def stop_neighbours(neighbours: list[subprocess.Popen]) -> None:
    for neighbour in neighbours:
        neighbour.kill()
    for neighbour in neighbours:
        neighbour.wait()


def others_runnable() -> float:
    """Runnable tasks of other processes right now (models.cpu's measure)."""
    from models import cpu

    cpu._load_cache = None
    return cpu.busy_neighbours()


def wait_for_quiet(limit_s: float) -> float:
    """Wait up to ``limit_s`` seconds for a moment with no other runnable task; returns the
    runnable tasks of other processes when the wait ended."""
    deadline = time.monotonic() + limit_s
    while True:
        others = others_runnable()
        if others < 0.5 or time.monotonic() >= deadline:
            return others
        time.sleep(2)


def run_child(sizing: str, workload: str, workdir: Path, root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GX_ANALYTICS_ENABLED": "false"}
    for name in (*OPENMP_SETTINGS, "AEFLOW_TORCH_THREADS"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, __file__, "--child", sizing, workload, str(workdir), str(root)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{sizing} {workload} child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    """Every cell ``workload/neighbours/sizing``: the sizings run one after the other beside the
    same neighbours, so they share the machine's background load."""
    results: dict = {"cells": {}, "quiet_others": []}
    runs: dict[str, list[dict]] = {}
    for workload in args.workloads:
        for kind in NEIGHBOURS:
            for repeat in range(args.repeats):
                if kind == "quiet":
                    results["quiet_others"].append(wait_for_quiet(args.wait_quiet))
                neighbours = start_neighbours(kind, args.neighbours)
                try:
                    for sizing in args.sizings:
                        run = run_child(sizing, workload, args.workdir, args.root)
                        runs.setdefault(f"{workload}/{kind}/{sizing}", []).append(run)
                        print(f"{workload} {kind} {sizing} #{repeat + 1}: {run}", flush=True)
                finally:
                    stop_neighbours(neighbours)
    for key, cell_runs in runs.items():
        results["cells"][key] = {
            "seconds": statistics.median(r["seconds"] for r in cell_runs),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in cell_runs),
            "threads": sorted({t for r in cell_runs for t in r["threads"]}),
            "wait_policy": cell_runs[0]["wait_policy"],
            "runs": [round(r["seconds"], 2) for r in cell_runs],
        }
    return results


# ------------------------------------------------------------------------------------- report
SIZING_TEXT = {
    "before": "before: torch's default threads, OpenMP spinning",
    "old-counts": "the old thread counts, OpenMP sleeping",
    "after": "after: models/cpu.py",
}


def report(args: argparse.Namespace, results: dict) -> list[str]:
    cells = results["cells"]
    titles = {
        "train": f"train: the demo's model on {TRAIN_ROWS:,} rows",
        "score": f"score: one batch of {args.score_rows:,} rows",
    }

    def ratio(workload: str, kind: str, sizing: str) -> float:
        return (
            cells[f"{workload}/{kind}/{sizing}"]["seconds"]
            / (cells[f"{workload}/quiet/{sizing}"]["seconds"])
        )

    header = ["workload", "thread sizing", *[NEIGHBOUR_LABELS[k] + " s" for k in NEIGHBOURS]]
    rows, verdicts = [], []
    for workload in args.workloads:
        for sizing in args.sizings:
            row = [titles[workload], SIZING_TEXT[sizing]]
            for kind in NEIGHBOURS:
                seconds = cells[f"{workload}/{kind}/{sizing}"]["seconds"]
                factor = "" if kind == "quiet" else f" ({ratio(workload, kind, sizing):.1f}x)"
                row.append(f"{seconds:.1f}{factor}")
            rows.append(row)
        if "after" not in args.sizings:
            continue
        for kind in NEIGHBOURS[1:]:
            after = ratio(workload, kind, "after")
            text = (
                f"- {workload} beside {args.neighbours} {NEIGHBOUR_LABELS[kind]}: {after:.1f}x its "
                f"quiet time (target <= 2.5x: {'met' if after <= 2.5 else 'NOT met'})"
            )
            if "before" in args.sizings:
                before = cells[f"{workload}/{kind}/before"]["seconds"]
                now = cells[f"{workload}/{kind}/after"]["seconds"]
                text += (
                    f"; the old sizing: {ratio(workload, kind, 'before'):.1f}x its quiet time, "
                    f"{before / now:.1f}x as long as the new one beside the same neighbours"
                )
            verdicts.append(text + ".")
    detail_header = ["cell", "runs s", "median CPU s", "torch threads used", "OpenMP wait policy"]
    detail = [
        [key, ", ".join(f"{s:.1f}" for s in cell["runs"]), f"{cell['cpu_seconds']:.1f}",
         ", ".join(map(str, cell["threads"])) or "-", cell["wait_policy"]]
        for key, cell in cells.items()
    ]  # fmt: skip
    quiet_others = results["quiet_others"]
    return [
        f"- cores: {os.cpu_count()}; neighbours: {args.neighbours} per loaded run; median of "
        f"{args.repeats} run(s) per cell, each in a fresh process (imports excluded); the "
        "sizings run one after the other beside the same neighbours.",
        f"- load average (1, 5, 15 min) at start: {results['load_start']}; at end: "
        f"{results['load_end']}. Runnable tasks of other processes before the quiet runs: "
        f"{', '.join(f'{o:.0f}' for o in quiet_others)} (0 is a quiet machine; waited up to "
        f"{args.wait_quiet:.0f} s for it).",
        "",
        "## Seconds alone and beside as many busy neighbours as cores",
        "",
        markdown_table(header, rows),
        "",
        "Target (issue 12): with as many busy neighbours as cores, at most 2.5x the quiet time.",
        "",
        *verdicts,
        "",
        "## Every run",
        "",
        markdown_table(detail_header, detail),
        "",
        "Cells are `workload/neighbours/sizing`. CPU seconds are the measured process's own "
        "(all its threads): spinning OpenMP workers burn CPU without progress.",
    ]


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(*sys.argv[2:6])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell (median; 3)")
    parser.add_argument(
        "--neighbours",
        type=int,
        default=os.cpu_count() or 1,
        help="busy neighbours per loaded run (as many as cores)",
    )
    parser.add_argument(
        "--score-rows", type=int, default=400_000, help="rows in the scored batch (400000)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/aeflow-contention"))
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="before each quiet run, wait up to this long for no other runnable task (120)",
    )
    parser.add_argument(
        "--workloads", nargs="+", choices=("train", "score"), default=["train", "score"]
    )
    parser.add_argument(
        "--sizings",
        nargs="+",
        choices=SIZINGS,
        default=list(SIZINGS),
        help="thread sizings to compare (all three)",
    )
    parser.add_argument("--write-doc", action="store_true", help="write docs/benchmarks/")
    args = parser.parse_args()
    # Stopped from outside: unwind, so the neighbours and the measured process are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.root = prepare(args.workdir, args.score_rows)
    load_start = " ".join(f"{v:.1f}" for v in os.getloadavg())
    results = measure(args)
    results["load_start"] = load_start
    results["load_end"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2))
    sections = report(args, results)
    print("\n".join(sections))
    if args.write_doc:
        path = write_report("contention", "Training and scoring beside busy neighbours", sections)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
