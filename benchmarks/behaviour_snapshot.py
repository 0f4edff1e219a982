"""Behaviour snapshot: run the demo end to end with a fixed seed and write what it produced, with
run ids and times removed, so two versions of the code can be compared byte for byte.

Why: a refactor (issue 15) must leave the pipeline's outputs unchanged. This script records
"before" on one commit and "after" on another; ``cmp`` (or ``--compare``) says whether they match.

What runs (each step through the ``aeflow`` command line, as a user runs it, in a fresh temporary
storage root and Prefect home, with one torch thread so the numbers do not depend on the load):

1. ``aeflow demo`` (generate seeded demo data, train on the first days, score every day: one
   day drifted, one malformed and quarantined);
2. ``aeflow nightly --date <the drifted day>`` (drift of that day against the champion's
   training reference; the drift trigger retrains a challenger through the gate).

What the snapshot holds (JSON, keys sorted, one file), per file under the storage root:

- scored Parquet outputs: schema, row count and a sha256 of each column's values
  (``scored_at`` left out: it is the scoring time);
- every JSON file (success markers, metrics.json, registry entries with the gate decision,
  champion.json, quarantine reports, drift reports, nightly and retraining records, the bundles'
  JSON files): its content with times, durations and library versions removed;
- each model bundle's weights (sha256 of weights.safetensors).

Model versions and run ids hold the time they were made (and a bundle digest that covers the
fit time): they become ``<version-1>``, ``<version-2>``, ... and ``<run-1>``, ... in the order
they were made, in file names and inside files alike; the temporary root becomes ``<root>`` and
the checkout the code runs from ``<repo>``.

Usage::

    .venv/bin/python benchmarks/behaviour_snapshot.py --out /tmp/after.json
    .venv/bin/python benchmarks/behaviour_snapshot.py --out /tmp/after.json \
        --compare benchmarks/behaviour_snapshot.baseline.json

Exit code 0 when written (and identical to ``--compare`` when given), 1 when it differs.
It takes about 2-4 minutes on a 2-core machine (two temporary Prefect servers, two trainings).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.toml"

# Keys whose values are wall-clock times, durations or per-run randomness: removed everywhere.
VOLATILE_KEYS = frozenset(
    {
        "scored_at",
        "seconds",
        "registered_at",
        "promoted_at",
        "created_at",
        "updated_at",
        "at",
        "time",
        "timestamp",
        "started_at",
        "finished_at",
        "generated_at",
        "measured_at",
        "arrived_at",
        "first_seen",
        "fit_seconds",
        "train_seconds",
        "elapsed_s",
        "duration_s",
        "library_versions",
        "versions",
        # The file's modification stamp (the demo writes the batches anew each run).
        "input_fingerprint",
        # The whole-bundle digest covers the files below that hold times.
        "bundle_sha256",
        # The champion's age when the night ran: wall-clock time since it was registered.
        "model_age_days",
    }
)
# Bundle files whose bytes hold times: metrics.json (the fit's time and duration),
# preprocessor.skops (a zip: its members' times), manifest.json (their digests). Their digests in
# manifest.json and registry.json are left out; their content is compared where it is JSON.
TIMED_BUNDLE_FILES = frozenset({"metrics.json", "preprocessor.skops", "manifest.json"})
VOLATILE_SUFFIXES = ("_seconds", "_at")
# Registry versions: "<UTC stamp>-<8 hex of the bundle digest>[-n]"; run ids: "<stamp>-<6 hex>".
VERSION = re.compile(r"\b\d{8}T\d{6}Z-[0-9a-f]{8}(?:-\d+)?\b")
RUN_ID = re.compile(r"\b\d{8}T\d{6}Z-[0-9a-f]{6}\b")
STAMP = re.compile(r"\b\d{8}T\d{6}Z\b")
ISO_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?\b")
SCORED_VOLATILE_COLUMNS = ("scored_at",)


class Names:
    """Placeholders for the temporary root and the versions and run ids of one run."""

    def __init__(self, root: Path):
        self.root = str(root)
        models = sorted(p.name for p in (root / "models").glob("*/*") if VERSION.fullmatch(p.name))
        runs = sorted(p.name for p in (root / "reports").glob("*/*") if RUN_ID.fullmatch(p.name))
        self.versions = {name: f"<version-{i}>" for i, name in enumerate(models, 1)}
        self.runs = {name: f"<run-{i}>" for i, name in enumerate(runs, 1)}

    def text(self, text: str) -> str:
        """``text`` with the root, the checkout, versions, run ids and wall-clock times replaced."""
        text = text.replace(self.root, "<root>").replace(str(REPO_ROOT), "<repo>")
        text = VERSION.sub(lambda m: self.versions.get(m.group(0), "<unknown-version>"), text)
        text = RUN_ID.sub(lambda m: self.runs.get(m.group(0), "<unknown-run>"), text)
        text = STAMP.sub("<stamp>", text)
        return ISO_TIME.sub("<time>", text)

    def json(self, value: Any) -> Any:
        """``value`` with volatile keys dropped and strings normalised (see :meth:`text`)."""
        if isinstance(value, dict):
            return {
                self.text(str(key)): self.json(item)
                for key, item in value.items()
                if key not in VOLATILE_KEYS
                and not str(key).endswith(VOLATILE_SUFFIXES)
                and key not in TIMED_BUNDLE_FILES
            }
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def parquet_digest(path: Path, names: Names) -> dict[str, Any]:
    """Schema, rows and a sha256 per column of a scored file (values in row order, exact)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    columns = {}
    for name in table.column_names:
        if name in SCORED_VOLATILE_COLUMNS:
            continue
        values = table.column(name).to_pylist()
        if name == "model_version":
            values = [names.text(v) if v is not None else None for v in values]
        encoded = json.dumps(values, default=str).encode()
        columns[name] = {
            "type": str(table.schema.field(name).type),
            "nulls": table.column(name).null_count,
            "sha256": hashlib.sha256(encoded).hexdigest(),
        }
    return {"rows": table.num_rows, "columns": columns}


def snapshot(root: Path) -> dict[str, Any]:
    """{normalised relative path: normalised content} for the scored files, the JSON files and
    the model weights."""
    names = Names(root)
    files: dict[str, Any] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        if relative.startswith(("incoming/", "prefect/")) or "/_locks/" in relative:
            continue
        key = names.text(relative)
        if path.suffix == ".parquet" and relative.startswith("scored/"):
            files[key] = parquet_digest(path, names)
        elif path.suffix == ".json":
            files[key] = names.json(json.loads(path.read_text(encoding="utf-8")))
        elif path.name == "weights.safetensors":
            files[key] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return files


def run_aeflow(args: list[str], env: dict[str, str]) -> str:
    """Run ``aeflow ARGS`` in a subprocess; its stdout (raises with the output on failure)."""
    command = [sys.executable, "-m", "flows.cli", *args]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"`aeflow {' '.join(args)}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def run_demo(work: Path, days: int, rows_per_day: int, train_days: int, seed: int) -> Path:
    """Run the demo and a nightly run on the drifted day into ``work``; the storage root."""
    root = work / "data"
    config = work / "demo.toml"
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    text = text.replace('root = "../data"', f'root = "{root}"')
    text = text.replace(
        'suite = "../expectations/demo.json"',
        f'suite = "{REPO_ROOT / "expectations" / "demo.json"}"',
    )
    config.write_text(text, encoding="utf-8")
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
        # One thread everywhere: the same bits whatever the machine's load (models/cpu.py).
        "AEFLOW_TORCH_THREADS": "1",
        "AEFLOW_VALIDATION_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    common = ["--config", str(config)]
    out = run_aeflow(
        [
            "demo",
            *common,
            "--days",
            str(days),
            "--rows-per-day",
            str(rows_per_day),
            "--train-days",
            str(train_days),
            "--seed",
            str(seed),
        ],
        env,
    )
    drifted = re.search(r"drifted day ([^\s,]+)", out)
    if drifted is None or drifted.group(1) == "none":
        raise SystemExit(f"the demo named no drifted day:\n{out}")
    marker = root / "scored" / "demo" / "_success" / f"{drifted.group(1)}.json"
    night = json.loads(marker.read_text(encoding="utf-8"))["date"]
    run_aeflow(["nightly", *common, "--date", night], env)
    return root


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Lines naming each file that is only on one side or differs (and its differing keys)."""
    lines = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            lines.append(f"only before: {key}")
        elif key not in before:
            lines.append(f"only after:  {key}")
        elif before[key] != after[key]:
            old, new = before[key], after[key]
            if isinstance(old, dict) and isinstance(new, dict):
                keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                lines.append(f"differs:     {key} (keys {keys})")
            else:
                lines.append(f"differs:     {key}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="snapshot file to write (JSON)")
    parser.add_argument("--compare", help="a snapshot to compare with; exit 1 when they differ")
    parser.add_argument("--days", type=int, default=8, help="demo days (8)")
    parser.add_argument("--rows-per-day", type=int, default=3000, help="rows per day (3000)")
    parser.add_argument("--train-days", type=int, default=5, help="train on the first N days (5)")
    parser.add_argument("--seed", type=int, default=0, help="demo data seed (0)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="aeflow-snapshot-"))
    root = run_demo(work, args.days, args.rows_per_day, args.train_days, args.seed)
    result = {
        "demo": {
            "days": args.days,
            "rows_per_day": args.rows_per_day,
            "train_days": args.train_days,
            "seed": args.seed,
        },
        "files": snapshot(root),
    }
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(
        f"wrote {args.out} ({len(result['files'])} files){'; kept ' + str(work) if args.keep else ''}"
    )
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if args.compare:
        before = json.loads(Path(args.compare).read_text(encoding="utf-8"))
        if before["demo"] != result["demo"]:
            print(f"the snapshots ran different demos: {before['demo']} vs {result['demo']}")
            return 1
        found = differences(before["files"], result["files"])
        if found:
            print("DIFFERENT from " + args.compare + ":\n  " + "\n  ".join(found))
            return 1
        print(f"identical to {args.compare}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
