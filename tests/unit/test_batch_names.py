"""Batch names that crashed or collided (issue 12, defect 5): a long name, a name that is a glob
pattern, a name with brackets. Scoring never builds a pattern from a name and keeps every name it
derives within the file-name limit."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from model_support import register_tiny_champion
from model_support import score_demo_batch as score

from tasks.demo_data import generate_demo_data
from tasks.io import BatchRef, Storage, list_batches

DAY = "2026-01-01"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("names")
    layout = Storage(str(base / "root"), "demo")
    generate_demo_data(
        layout.incoming, days=1, rows_per_day=300, seed=6, drift_day=None, malformed_day=None
    )
    register_tiny_champion(layout, list_batches(layout.incoming)[0].path, base, epochs=1)
    return base / "root"


@pytest.fixture
def root(trained, tmp_path):
    copy = tmp_path / "root"
    shutil.copytree(trained, copy)
    return copy


def renamed(root: Path, batch_id: str) -> BatchRef:
    """The demo day's batch renamed to ``batch_id``."""
    incoming = root / "incoming" / "demo"
    target = incoming / f"{batch_id}.parquet"
    (incoming / f"{DAY}.parquet").rename(target)
    [batch] = [b for b in list_batches(str(incoming)) if b.batch_id == batch_id]
    return batch


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def test_a_long_batch_name_is_scored_and_its_temporaries_fit_the_name_limit(root):
    batch_id = f"{DAY}-" + "x" * 225  # 236 bytes: `.<id>.parquet.tmp-<hex>` would be 282
    layout = Storage(str(root), "demo")
    marker = score(layout, renamed(root, batch_id))
    assert marker.status == "scored" and marker.rows_out == 300
    assert Path(marker.output).name == f"{batch_id}.parquet"
    assert not temporaries(Path(marker.output).parent)
    # and not forever: the next run finds it scored
    assert score(layout, BatchRef(batch_id, marker.input_path, 0)).status == "skipped"


def test_a_batch_named_star_leaves_another_runs_temporary_alone(root):
    layout = Storage(str(root), "demo")
    partition = root / "scored" / "demo" / f"date={DAY}"
    partition.mkdir(parents=True)
    in_flight = partition / f".other.parquet.tmp-{uuid.uuid4().hex}"
    in_flight.write_bytes(b"another run is writing this right now")
    marker = score(layout, renamed(root, "*"))
    assert marker.status == "scored"
    assert in_flight.exists(), "scoring batch '*' deleted another batch's in-flight temporary"


def test_temporaries_of_a_batch_with_brackets_are_cleaned(root):
    layout = Storage(str(root), "demo")
    partition = root / "scored" / "demo" / f"date={DAY}"
    partition.mkdir(parents=True)
    stale = partition / f".a[1].parquet.tmp-{uuid.uuid4().hex}"
    stale.write_bytes(b"left by a killed writer")
    neighbour = partition / f".a1.parquet.tmp-{uuid.uuid4().hex}"  # what '[1]' matches as a glob
    neighbour.write_bytes(b"another batch's writer")
    score(layout, renamed(root, "a[1]"))
    assert not stale.exists(), "the killed writer's temporary of 'a[1]' was left behind"
    assert neighbour.exists()
    assert (partition / "a[1].parquet").is_file()


def test_removing_a_name_with_pattern_characters_from_an_object_store_is_literal():
    """fsspec back ends other than local disks (s3fs, gcsfs, memory) expand `rm` paths as glob
    patterns: removing `a[1].parquet` deleted `a1.parquet`, and `*` everything beside it."""
    from tasks.io import exists, remove, write_bytes_atomic

    base = f"memory://names-{uuid.uuid4().hex}"
    names = ["a[1].parquet", "a1.parquet", "*.parquet", "b.parquet", "dir[2]/x.parquet"]
    for name in names:
        write_bytes_atomic(b"x", f"{base}/{name}")
    remove(f"{base}/a[1].parquet")
    remove(f"{base}/*.parquet")
    remove(f"{base}/dir[2]")
    assert [n for n in names if exists(f"{base}/{n}")] == ["a1.parquet", "b.parquet"]
