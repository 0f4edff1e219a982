"""Validation speed and memory: a drafted suite on a 1M-row x 30-column batch.

    .venv/bin/python benchmarks/validation.py [--rows 1000000] [--repeats 3] [--write-doc]

A seeded synthetic batch (string id, UTC timestamp, 20 numeric columns with 2% nulls, 7 categorical
columns of 3-60 levels, an int8 label: 30 columns) is written to Parquet, once clean and once with
a new category level and out-of-range values (warnings); the suite is drafted with `draft_suite`
from a reference batch of the same size and distribution (another seed). Each measurement runs in
a fresh process: one warm-up validation of a small batch (imports GX and builds its registries, a
one-off cost per worker), then `validate_batch` on the big batch twice (a worker's first batch, and
the next one), timed end to end (read Parquet, pre-checks, GX, detail re-run). Peak memory is the
process's peak resident set size (ru_maxrss) and its growth over the warmed-up process.
`--write-doc` writes the table to docs/benchmarks/validation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
NUMERIC = [f"x{i:02d}" for i in range(20)]
CATEGORICAL = [f"c{i}" for i in range(7)]
LEVELS = [3, 5, 8, 12, 20, 40, 60]
DOC = ROOT / "docs" / "benchmarks" / "validation.md"


def synthetic_batch(rows: int, seed: int) -> pa.Table:
    """30 columns: id, event_time, 20 numeric (2% nulls), 7 categorical, label."""
    rng = np.random.default_rng(seed)
    columns: dict[str, pa.Array] = {
        "row_id": pa.array([f"r{seed}-{i:08d}" for i in range(rows)]),
        "event_time": pa.array(
            np.datetime64("2026-01-01T00:00:00", "us")
            + rng.integers(0, 86_400_000_000, rows).astype("timedelta64[us]"),
            type=pa.timestamp("us", tz="UTC"),
        ),
    }
    for i, name in enumerate(NUMERIC):
        values = (
            rng.lognormal(mean=i % 5, sigma=0.5, size=rows)
            if i % 2
            else rng.normal(loc=10 * i, scale=1 + i, size=rows)
        )
        if i % 4 == 3:
            values = np.round(values)
        mask = rng.random(rows) < 0.02
        columns[name] = pa.array(values, mask=mask)
    for name, levels in zip(CATEGORICAL, LEVELS, strict=True):
        weights = 1.0 / np.arange(1, levels + 1)
        codes = rng.choice(levels, size=rows, p=weights / weights.sum())
        labels = np.array([f"{name}_level_{k}" for k in range(levels)], dtype=object)
        columns[name] = pa.array(labels[codes], type=pa.string())
    columns["label"] = pa.array((rng.random(rows) < 0.02).astype(np.int8))
    return pa.table(columns)


def measure_once(batch_path: str, suite_path: str, warmup_path: str) -> dict:
    """Runs in a child process: warm up on a small batch, then validate the big one."""
    import resource

    from tasks.io import BatchRef
    from tasks.settings import ColumnsSettings, ValidationSettings
    from tasks.validation import validate_batch

    columns = ColumnsSettings(
        id="row_id", timestamp="event_time", numeric=list(NUMERIC), categorical=list(CATEGORICAL)
    )
    validation = ValidationSettings(suite=suite_path)

    def validate(path: str, batch_id: str):
        return validate_batch(
            BatchRef(batch_id, path, os.path.getsize(path)),
            columns=columns,
            validation=validation,
        )

    validate(warmup_path, "warmup")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings, peaks = [], []
    # The first big batch of a worker pays for fresh memory pages (the allocator's first touch);
    # a long-running worker validates the next ones from memory it already holds.
    for batch_id in ("first", "next"):
        started, cpu_started = time.perf_counter(), time.process_time()
        outcome = validate(batch_path, batch_id)
        timings.append((time.perf_counter() - started, time.process_time() - cpu_started))
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return {
        "seconds": timings[0][0],
        "cpu_seconds": timings[0][1],
        "next_seconds": timings[1][0],
        "next_cpu_seconds": timings[1][1],
        "base_rss_mb": before / 1024,
        "peak_rss_mb": peaks[0] / 1024,
        "growth_mb": (peaks[0] - before) / 1024,
        "next_peak_rss_mb": peaks[1] / 1024,
        "status": outcome.status,
        "checks": outcome.checks,
        "rows": outcome.rows,
    }


def with_warnings(table: pa.Table) -> pa.Table:
    """The same batch with a new level in c0 on 1% of rows and x01 ten times larger on 2%."""
    rng = np.random.default_rng(5)
    rows = table.num_rows
    c0 = np.array(table.column("c0").to_pylist(), dtype=object)
    c0[rng.random(rows) < 0.01] = "c0_new_level"
    x01 = table.column("x01").to_numpy(zero_copy_only=False).copy()
    x01[rng.random(rows) < 0.02] *= 10
    table = table.set_column(table.schema.get_field_index("c0"), "c0", pa.array(c0, pa.string()))
    return table.set_column(table.schema.get_field_index("x01"), "x01", pa.array(x01))


def run_scenario(batch_path: str, suite_path: str, warmup_path: str, repeats: int) -> list[dict]:
    runs = []
    for _ in range(repeats):
        child = subprocess.run(
            [sys.executable, __file__, "--child", batch_path, suite_path, warmup_path],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "GX_ANALYTICS_ENABLED": "false"},
        )
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    return runs


def table_row(name: str, rows: int, checks: int, runs: list[dict], file_mb: float) -> str:
    def median(key: str) -> str:
        values = [r[key] for r in runs]
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    return (
        f"| {name} | {rows:,} x 30 | {checks} | {runs[0]['status']} | {median('seconds')} | "
        f"{median('cpu_seconds')} | {median('next_seconds')} | {median('next_cpu_seconds')} | "
        f"{max(r['base_rss_mb'] for r in runs):.0f} | {max(r['peak_rss_mb'] for r in runs):.0f} | "
        f"{max(r['next_peak_rss_mb'] for r in runs):.0f} | {file_mb:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument(
        "--child", nargs=3, metavar=("BATCH", "SUITE", "WARMUP"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_once(*args.child)))
        return

    sys.path.insert(0, str(ROOT))
    from tasks.settings import ColumnsSettings
    from tasks.validation import draft_suite, suite_json

    load_before = os.getloadavg()[0]
    rows_out = []
    with tempfile.TemporaryDirectory(prefix="aeflow-bench-") as folder:
        warmup_path = os.path.join(folder, "warmup.parquet")
        suite_path = os.path.join(folder, "suite.json")
        pq.write_table(synthetic_batch(10_000, seed=2), warmup_path)
        reference = synthetic_batch(args.rows, seed=0)  # yesterday's batch, same size
        columns = ColumnsSettings(
            id="row_id",
            timestamp="event_time",
            label="label",
            numeric=list(NUMERIC),
            categorical=list(CATEGORICAL),
        )
        suite = draft_suite(reference, name="bench", columns=columns)
        Path(suite_path).write_text(suite_json(suite))
        checks = len(suite["expectations"])
        batch = synthetic_batch(args.rows, seed=1)
        for name, table in (("clean", batch), ("with warnings", with_warnings(batch))):
            path = os.path.join(folder, f"{name.replace(' ', '-')}.parquet")
            pq.write_table(table, path)
            runs = run_scenario(path, suite_path, warmup_path, args.repeats)
            rows_out.append(table_row(name, args.rows, checks, runs, os.path.getsize(path) / 2**20))
    load = (load_before, os.getloadavg()[0])
    print("\n".join(rows_out))
    if args.write_doc:
        write_doc(rows_out, load, args)


def write_doc(rows: list[str], load: tuple[float, float], args: argparse.Namespace) -> None:
    cpu = platform.processor() or platform.machine()
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(
        "# Validation benchmark\n\n"
        "Time and memory of `tasks.validation.validate_batch` on one batch with a suite drafted by\n"
        "`draft_suite` from a reference batch of the same size (critical: column set, row count,\n"
        "types, nulls, id uniqueness; warnings: null shares, row-count bounds, ranges, quantiles,\n"
        "category sets, KL divergence; plus the pre-checks). Timed end to end: read Parquet,\n"
        "pre-checks, GX first pass, and for failed checks the detail pass with sample ids. The\n"
        "Parquet file is decoded on Arrow's CPU pool and the column groups are validated on\n"
        f"{min(2, os.cpu_count() or 1)} threads, each with its own GX context (the default where "
        "there are two cores). Each\n"
        "run is a fresh process that first validates a 10k-row batch (importing GX and building\n"
        "its registries is a one-off cost per worker process, about 2 s, not counted), then the\n"
        "big batch twice: the first pays for fresh memory pages (mostly kernel time zeroing the\n"
        "pages Arrow's allocator maps), the next is a long-running worker's steady state.\n"
        "Memory is the whole process's resident set (Python, pandas, pyarrow, GX, Prefect and\n"
        "torch imported): before the big batch (warmed up), its peak through the first big batch,\n"
        "and through the next one (allocators keep some of the first batch's freed memory).\n"
        "Medians of the runs, with their range.\n\n"
        f"Command: `.venv/bin/python benchmarks/validation.py --rows {args.rows} "
        f"--repeats {args.repeats} --write-doc`\n\n"
        f"Machine: {os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, "
        "great-expectations 1.24.1, shared with other jobs: load average "
        f"{load[0]:.1f} before and {load[1]:.1f} after the runs, so wall time is inflated; CPU\n"
        "seconds (user + system of the validating process) are the steadier figure.\n"
        "Target: under 3 s and under 1.5 GB.\n\n"
        "| batch | size | expectations | outcome | first batch: wall s | CPU s | "
        "next batch: wall s | CPU s | RSS before MB | peak RSS, first MB | peak RSS, next MB "
        "| Parquet MB |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
