"""Re-scoring never deletes outputs it does not own (issue 12, defect 1).

Markers record their input and output relative to the storage root, and a run deletes only scored
files of its own batch inside its own root: a copied root, a root reached through a symlink or
``x/../data``, and markers written by older versions (full paths) all keep the original's files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from model_support import register_tiny_champion
from model_support import score_demo_batch as score

from tasks.demo_data import generate_demo_data
from tasks.io import Storage, list_batches


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (ns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory):
    """A root with 2 demo batches and a champion, nothing scored yet."""
    base = tmp_path_factory.mktemp("markers")
    layout = Storage(str(base / "root"), "demo")
    generate_demo_data(
        layout.incoming, days=2, rows_per_day=400, seed=4, drift_day=None, malformed_day=None
    )
    register_tiny_champion(layout, list_batches(layout.incoming)[0].path, base, epochs=1)
    return base / "root"


@pytest.fixture
def original(trained_root, tmp_path):
    """A private root with both batches scored there (its markers name this root)."""
    root = tmp_path / "data"
    shutil.copytree(trained_root, root)
    layout = Storage(str(root), "demo")
    for batch in list_batches(layout.incoming):
        score(layout, batch)
    return root


def test_markers_store_paths_relative_to_the_root(original):
    from tasks.markers import read_marker

    stored = json.loads((original / "scored/demo/_success/2026-01-01.json").read_text())
    assert stored["output"] == "scored/demo/date=2026-01-01/2026-01-01.parquet"
    assert stored["input_path"] == "incoming/demo/2026-01-01.parquet"
    marker = read_marker(Storage(str(original), "demo"), "2026-01-01")
    assert marker.output == str(original / "scored/demo/date=2026-01-01/2026-01-01.parquet")


def test_force_rescoring_a_copied_root_leaves_the_original_alone(original, tmp_path):
    copy = tmp_path / "staging"
    shutil.copytree(original, copy, symlinks=True)  # cp -a: same bytes, same markers
    before = snapshot(original)
    layout = Storage(str(copy), "demo")
    for batch in list_batches(layout.incoming):
        marker = score(layout, batch, force=True)
        assert marker.status == "scored"
        assert Path(marker.output).is_file() and str(copy) in marker.output
    assert snapshot(original) == before  # not one file of the original root touched


def test_a_legacy_marker_with_full_paths_maps_onto_the_copy_and_never_deletes_outside(
    original, tmp_path
):
    copy = tmp_path / "staging"
    shutil.copytree(original, copy)
    marker_file = copy / "scored/demo/_success/2026-01-01.json"
    legacy = json.loads(marker_file.read_text())
    legacy.pop("marker_format", None)
    # as an older aeflow wrote it, in the original root, before the copy
    legacy["output"] = str(original / "scored/demo/date=2026-01-01/2026-01-01.parquet")
    legacy["input_path"] = str(original / "incoming/demo/2026-01-01.parquet")
    marker_file.write_text(json.dumps(legacy))
    layout = Storage(str(copy), "demo")

    from tasks.markers import read_marker

    read = read_marker(layout, "2026-01-01")
    assert read.output == str(copy / "scored/demo/date=2026-01-01/2026-01-01.parquet")
    assert read.input_path == str(copy / "incoming/demo/2026-01-01.parquet")

    before = snapshot(original)
    [batch] = [b for b in list_batches(layout.incoming) if b.batch_id == "2026-01-01"]
    score(layout, batch, force=True)
    assert snapshot(original) == before
    assert (copy / "scored/demo/date=2026-01-01/2026-01-01.parquet").is_file()


def test_a_legacy_marker_pointing_nowhere_known_deletes_nothing(original):
    layout = Storage(str(original), "demo")
    outside = original.parent / "elsewhere" / "2026-01-01.parquet"
    outside.parent.mkdir()
    outside.write_bytes(b"someone else's file")
    marker_file = original / "scored/demo/_success/2026-01-01.json"
    legacy = {**json.loads(marker_file.read_text()), "output": str(outside)}
    legacy.pop("marker_format", None)
    marker_file.write_text(json.dumps(legacy))
    [batch] = [b for b in list_batches(layout.incoming) if b.batch_id == "2026-01-01"]
    score(layout, batch, force=True)
    assert outside.read_bytes() == b"someone else's file"


@pytest.mark.parametrize("spelling", ["dotdot", "symlink"])
def test_force_through_another_spelling_of_the_root_keeps_the_file_it_wrote(original, spelling):
    if spelling == "dotdot":
        (original.parent / "x").mkdir()
        other = f"{original.parent}/x/../{original.name}"
    else:
        os.symlink(original, original.parent / "link")
        other = str(original.parent / "link")
    layout = Storage(other, "demo")
    for batch in list_batches(layout.incoming):
        marker = score(layout, batch, force=True)
        assert marker.status == "scored"
        assert Path(marker.output).is_file(), "re-scoring deleted the file it had just written"
    for day in ("2026-01-01", "2026-01-02"):
        assert (original / f"scored/demo/date={day}/{day}.parquet").is_file()


def test_only_this_batchs_scored_files_inside_the_root_count_as_owned():
    from tasks.markers import owned_output

    layout = Storage("/data", "demo")
    assert owned_output(layout, "b1", "scored/demo/date=2026-01-01/b1.parquet")
    for relative in (
        None,
        "scored/demo/date=2026-01-01/b2.parquet",  # another batch
        "scored/other/date=2026-01-01/b1.parquet",  # another dataset
        "scored/demo/../../etc/b1.parquet",
        "/scored/demo/date=2026-01-01/b1.parquet",
        "incoming/demo/b1.parquet",
        "scored/demo/_success/b1.parquet",
    ):
        assert not owned_output(layout, "b1", relative), relative


def test_an_earlier_output_in_another_partition_of_this_root_is_replaced(original):
    layout = Storage(str(original), "demo")
    moved = original / "scored/demo/date=2025-12-31/2026-01-01.parquet"
    moved.parent.mkdir()
    shutil.copy(original / "scored/demo/date=2026-01-01/2026-01-01.parquet", moved)
    marker_file = original / "scored/demo/_success/2026-01-01.json"
    stored = json.loads(marker_file.read_text())
    marker_file.write_text(json.dumps({**stored, "output": str(moved.relative_to(original))}))
    [batch] = [b for b in list_batches(layout.incoming) if b.batch_id == "2026-01-01"]
    score(layout, batch, force=True)
    assert not moved.exists()  # one output per batch
    assert (original / "scored/demo/date=2026-01-01/2026-01-01.parquet").is_file()


def test_a_scored_file_deleted_behind_its_marker_is_scored_again(original):
    layout = Storage(str(original), "demo")
    output = original / "scored/demo/date=2026-01-01/2026-01-01.parquet"
    output.unlink()
    [batch] = [b for b in list_batches(layout.incoming) if b.batch_id == "2026-01-01"]
    assert score(layout, batch).status == "scored"  # not "skipped": the marker is not enough
    assert output.is_file()


@pytest.mark.parametrize("content", ['{"batch_id": "2026-01', "[]", '{"batch_id": "x"}'])
def test_a_damaged_marker_is_named_and_its_batch_scored_again(original, content, caplog):
    # A marker is written atomically, so only a hand edit or a failing disk damages one; it used
    # to stop every later run at the planning step with a bare JSONDecodeError ("Invalid control
    # character at: line 1 column 18") naming no file.
    from tasks.markers import read_marker

    layout = Storage(str(original), "demo")
    path = original / "scored/demo/_success/2026-01-01.json"
    path.write_text(content)
    with caplog.at_level("WARNING"):
        assert read_marker(layout, "2026-01-01") is None
    assert str(path) in caplog.text and "scored again" in caplog.text
    batch = next(b for b in list_batches(layout.incoming) if b.batch_id == "2026-01-01")
    assert score(layout, batch).status == "scored"
    assert read_marker(layout, "2026-01-01").rows_in == 400  # rewritten whole
