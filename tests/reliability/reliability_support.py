"""Shared parts of the fault-injection suite: a seeded delivery of batches (valid, malformed,
unreadable, ambiguous, odd names, Spark folders, things that are not batches), `aeflow score` as
real subprocesses against the session's Prefect server, and the invariants checked after every
scenario.

The invariants (issue 12):
1. every input file is scored once, quarantined once, or listed as ignored;
2. rows in = rows scored + rows quarantined for every readable batch (unknown rows stay unknown);
3. no file outside the run's root is touched;
4. no temporary file is left (in the root, and no staged upload in the runs' temp folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq

from models.storage import is_temporary
from tasks.demo_data import generate_demo_data

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = os.path.dirname(sys.executable)
AEFLOW = shutil.which("aeflow", path=BIN) or shutil.which("aeflow")
FAULTY_CLI = REPO_ROOT / "tests" / "faulty_storage.py"
DATASET = "rel"
ROWS = 200  # rows per demo day (the demo generator's minimum)
CHUNK_ROWS = 1024  # the smallest the config allows: one chunk per batch here
LONG_ID = "2026-02-01-" + "long" * 57  # 239 bytes: a temporary name of it would be 284


@dataclass
class Delivery:
    """One thing put into incoming/ and what must become of it."""

    name: str  # its name under incoming/<dataset>/
    expect: str  # "scored" | "quarantined" | "ignored"
    batch_id: str | None = None
    rows: int | None = None  # None: unknown (unreadable)
    digests: dict[str, str] = field(default_factory=dict)  # relative file -> sha256


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digests(path: Path) -> dict[str, str]:
    if path.is_symlink() or path.is_file():
        return {
            "": sha256_bytes(os.readlink(path).encode() if path.is_symlink() else path.read_bytes())
        }
    return {
        str(p.relative_to(path)): sha256_bytes(p.read_bytes())
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def deliver(incoming: Path, outside: Path, seed: int, valid_days: int) -> list[Delivery]:
    """Fill ``incoming`` (a local folder) with a seeded mix of batches; ``outside`` receives the
    targets of the links (it is outside the root). Returns what was delivered."""
    rng = random.Random(seed)
    staging = incoming.parent / ".staging"
    manifest = generate_demo_data(
        staging, days=valid_days + 3, rows_per_day=ROWS, seed=seed, drift_day=None, malformed_day=-1
    )
    incoming.mkdir(parents=True, exist_ok=True)
    days = [Path(p) for p in manifest.paths]
    deliveries: list[Delivery] = []

    def put(source: Path, name: str, expect: str, batch_id: str | None, rows: int | None):
        target = incoming / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        deliveries.append(Delivery(name, expect, batch_id, rows))

    plain = days[: valid_days - 4]
    for day in plain:
        put(day, day.name, "scored", day.stem, ROWS)
    odd = days[valid_days - 4 : valid_days]
    # names that crashed or collided before issue 12
    put(odd[0], "*.parquet", "scored", "*", ROWS)
    put(odd[1], "a[1] b.PARQUET", "scored", "a[1] b", ROWS)
    put(odd[2], f"{LONG_ID}.parquet", "scored", LONG_ID, ROWS)
    # a Spark output folder: two parts, bookkeeping, an attempt's leftovers
    spark = incoming / "2026-03-01"
    table = pq.read_table(odd[3])
    half = rng.randint(40, ROWS - 40)
    spark.mkdir()
    pq.write_table(table.slice(0, half), spark / "part-00000.parquet")
    pq.write_table(table.slice(half), spark / "part-00001.parquet")
    (spark / "_SUCCESS").write_text("")
    (spark / ".part-00000.parquet.crc").write_bytes(b"crc")
    (spark / "_temporary" / "0").mkdir(parents=True)
    pq.write_table(table.slice(0, 10), spark / "_temporary" / "0" / "part-00009.parquet")
    deliveries.append(Delivery("2026-03-01", "scored", "2026-03-01", ROWS))
    for name in ("_SUCCESS", ".part-00000.parquet.crc", "_temporary"):
        deliveries.append(Delivery(f"2026-03-01/{name}", "ignored"))
    # malformed: a day missing a column (the demo's malformed day), a truncated file
    malformed = days[-1]
    put(malformed, "2026-04-01.parquet", "quarantined", "2026-04-01", ROWS)
    broken = incoming / "2026-04-02.parquet"
    data = days[valid_days].read_bytes()
    broken.write_bytes(data[: rng.randint(len(data) // 4, len(data) // 2)])
    deliveries.append(Delivery("2026-04-02.parquet", "quarantined", "2026-04-02", None))
    # an ambiguous id: a file and a folder with one stem, quarantined together
    put(days[valid_days + 1], "2026-04-03.parquet", "quarantined", "2026-04-03", None)
    put(days[valid_days + 1], "2026-04-03/part-0.parquet", "quarantined", "2026-04-03", None)
    deliveries[-2].rows = deliveries[-1].rows = 2 * ROWS  # the quarantine holds both inputs
    deliveries[-1].name = "2026-04-03"
    # not batches
    (incoming / "notes.txt").write_text("delivery notes")
    shutil.copy(days[0], incoming / "_staging.parquet")
    outside.mkdir(parents=True, exist_ok=True)
    shutil.copy(days[1], outside / "linked.parquet")
    (outside / "linked-folder").mkdir(exist_ok=True)
    shutil.copy(days[2], outside / "linked-folder" / "part-0.parquet")
    os.symlink(outside / "linked.parquet", incoming / "linked.parquet")
    os.symlink(outside / "linked-folder", incoming / "linked-folder")
    for name in ("notes.txt", "_staging.parquet", "linked.parquet", "linked-folder"):
        deliveries.append(Delivery(name, "ignored"))
    shutil.rmtree(staging)
    for delivery in deliveries:
        delivery.digests = _digests(incoming / delivery.name)
    return deliveries


def write_config(
    folder: Path,
    root: str,
    options: dict[str, Any] | None = None,
    retries: int = 4,
    retry_delay_s: float = 0.3,
) -> Path:
    """A demo config for DATASET on ``root`` with quick storage retries and small chunks, in a
    file of its own (``<folder>/rel-r<retries>-d<retry_delay_s>.toml``): configs that differ in
    their retries live side by side."""
    text = (REPO_ROOT / "configs" / "demo.toml").read_text()
    text = text.replace('dataset = "demo"', f'dataset = "{DATASET}"')
    storage = f'root = "{root}"\nretries = {retries}\nretry_delay_s = {retry_delay_s}'
    if options:
        storage += f"\noptions = {_toml_inline(options)}"
    text = text.replace('root = "../data"', storage)
    text = text.replace("../expectations/demo.json", str(write_suite(folder)))
    text = text.replace("chunk_rows = 65536", f"chunk_rows = {CHUNK_ROWS}")
    assert f"chunk_rows = {CHUNK_ROWS}" in text
    config = folder / f"{DATASET}-r{retries}-d{retry_delay_s:g}.toml"
    assert not config.exists() or config.read_text() == text, f"{config} holds another config"
    config.write_text(text)
    return config


# The demo contract's table-level and id checks: a real Great Expectations suite, small enough that
# validating a batch costs little next to the faults under test.
SUITE_CHECKS = {
    "expect_table_columns_to_match_set",
    "expect_table_row_count_to_be_between",
    "expect_column_values_to_be_unique",
}


def write_suite(folder: Path) -> Path:
    demo = json.loads((REPO_ROOT / "expectations" / "demo.json").read_text())
    checks = [
        e for e in demo["expectations"] if e["type"] in SUITE_CHECKS and e["severity"] == "critical"
    ]
    assert len(checks) >= 3, checks
    suite = folder / "reliability-suite.json"
    suite.write_text(json.dumps({**demo, "name": DATASET, "expectations": checks}, indent=1))
    return suite


def _toml_inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_inline(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def start_score(
    config: Path,
    api_url: str,
    tmp: Path,
    *,
    faulty: bool = False,
    slow_s: float = 0.0,
    workers: int = 2,
) -> subprocess.Popen[str]:
    """`aeflow score` as a user runs it, against the session's Prefect server, in its own process
    group (a kill takes all of it), with its own temp folder (to find staged uploads left)."""
    command = [sys.executable, str(FAULTY_CLI)] if faulty else [AEFLOW]
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": tempfile.mkdtemp(prefix="prefect-", dir=tmp),
        "TMPDIR": str(tmp),
        "AEFLOW_TEST_SLOW_SCORING_S": str(slow_s),
    }
    return subprocess.Popen(
        [*command, "score", "--config", str(config), "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def ignored_in_output(output: str) -> set[str]:
    """The paths a finished `aeflow score` printed as ignored."""
    lines = [line for line in output.splitlines() if line.startswith("ignored ")]
    return {line[len("ignored") :].strip().split(": ", 1)[0] for line in lines}


# ------------------------------------------------------------------------------------- stores
class Store(Protocol):
    """Read access to a storage root for the checks (paths relative to the root)."""

    def files(self, prefix: str) -> list[str]: ...
    def read(self, path: str) -> bytes: ...


class LocalStore:
    def __init__(self, root: Path):
        self.root = root

    def files(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.exists():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in filenames + links:
                found.append(str(Path(dirpath, name).relative_to(self.root)))
        return sorted(found)

    def read(self, path: str) -> bytes:
        full = self.root / path
        return os.readlink(full).encode() if full.is_symlink() else full.read_bytes()


class FsspecStore:
    def __init__(self, fs: Any, root: str):
        self.fs, self.root = fs, root.rstrip("/")

    def files(self, prefix: str) -> list[str]:
        self.fs.invalidate_cache()
        base = f"{self.root}/{prefix}".rstrip("/")
        if not self.fs.exists(base):
            return []
        return sorted(p[len(self.root) + 1 :] for p in self.fs.find(base))

    def read(self, path: str) -> bytes:
        return self.fs.cat_file(f"{self.root}/{path}")


def _rows(store: Store, path: str) -> int:
    import io

    return pq.read_metadata(io.BytesIO(store.read(path))).num_rows


def check_invariants(
    store: Store, deliveries: list[Delivery], printed_ignored: set[str] | None = None
) -> dict[str, int]:
    """Assert the suite's invariants on ``store`` after the runs; returns counts for the report."""
    incoming, scored, quarantine = (
        f"incoming/{DATASET}",
        f"scored/{DATASET}",
        f"quarantine/{DATASET}",
    )
    everything = store.files("")
    leftovers = [f for f in everything if is_temporary(Path(f).name)]
    assert not leftovers, f"temporary files left: {leftovers}"
    leases = store.files(f"{scored}/_locks")
    assert all(not store.read(f) for f in leases), f"leases left: {leases}"
    outputs = [f for f in store.files(scored) if f.endswith(".parquet")]
    marked = set(store.files(f"{scored}/_success"))
    archived = store.files(f"{quarantine}/_archive")
    assert not archived, f"a quarantine was superseded or archived: {archived}"
    counts = {"scored": 0, "quarantined": 0, "ignored": 0, "rows_scored": 0, "rows_quarantined": 0}
    seen_quarantine: set[str] = set()
    for delivery in deliveries:
        where = f"{incoming}/{delivery.name}"
        if delivery.expect == "ignored":
            for rel, digest in delivery.digests.items():
                assert sha256_bytes(store.read(f"{where}/{rel}".rstrip("/"))) == digest, where
            if printed_ignored is not None and "/" not in delivery.name:
                assert any(p.endswith(f"/{delivery.name}") for p in printed_ignored), (
                    f"{delivery.name} was not listed as ignored: {sorted(printed_ignored)}"
                )
            counts["ignored"] += 1
            continue
        batch_id = delivery.batch_id
        mine = [f for f in outputs if Path(f).name == f"{batch_id}.parquet"]
        marker_file = f"{scored}/_success/{batch_id}.json"
        if delivery.expect == "scored":
            assert len(mine) == 1, f"batch {batch_id!r}: {len(mine)} scored files {mine}"
            assert marker_file in marked, f"batch {batch_id!r} has no success marker"
            marker = json.loads(store.read(marker_file))
            rows = _rows(store, mine[0])
            assert marker["rows_in"] == marker["rows_out"] == rows == delivery.rows, (
                f"batch {batch_id!r}: rows in {marker['rows_in']}, out {marker['rows_out']}, "
                f"file {rows}, delivered {delivery.rows}"
            )
            assert marker["output"] == mine[0] and marker["marker_format"] == 2
            for rel, digest in delivery.digests.items():  # the input stays, untouched
                assert sha256_bytes(store.read(f"{where}/{rel}".rstrip("/"))) == digest, where
            assert not store.files(f"{quarantine}/{batch_id}"), f"{batch_id!r} also quarantined"
            counts["scored"] += 1
            counts["rows_scored"] += rows
            continue
        # quarantined: once, with its untouched input(s) and its report, gone from incoming/
        assert not mine and marker_file not in marked, f"quarantined {batch_id!r} was scored"
        assert not store.files(where), f"{where} is still in incoming/"
        folder = f"{quarantine}/{batch_id}"
        name = Path(delivery.name).name
        for rel, digest in delivery.digests.items():
            kept = f"{folder}/input/{name}/{rel}".rstrip("/")
            assert sha256_bytes(store.read(kept)) == digest, f"{kept} differs from the input"
        report = json.loads(store.read(f"{folder}/report.json"))
        assert report["rows"] == delivery.rows, (
            f"{batch_id!r}: report rows {report['rows']}, delivered {delivery.rows}"
        )
        if batch_id not in seen_quarantine:
            seen_quarantine.add(batch_id)
            counts["quarantined"] += 1
            counts["rows_quarantined"] += delivery.rows or 0
    return counts


def tree_state(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder`` (links not followed) with size, mtime and sha256."""
    state = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            state[str(path.relative_to(folder))] = (
                stat.st_size,
                stat.st_mtime_ns,
                sha256_bytes(path.read_bytes()),
            )
    return state


def staged_uploads(tmp: Path) -> list[str]:
    """Object-store staging files (aeflow-<pid>-<hex>.part) left in a runs' temp folder."""
    return sorted(p.name for p in tmp.glob("aeflow-*.part"))
