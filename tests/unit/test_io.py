from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.io import (
    BatchRef,
    Storage,
    atomic_open,
    checksum,
    count_rows,
    iter_record_batches,
    list_batches,
    open_input,
    quarantine_batch,
    read_json,
    read_table,
    write_json_atomic,
    write_parquet_atomic,
)


def table(n: int = 10) -> pa.Table:
    return pa.table({"id": [f"r{i}" for i in range(n)], "x": [float(i) for i in range(n)]})


def test_interrupted_parquet_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "out" / "batch.parquet"
    write_parquet_atomic(table(5), str(target))
    before = target.read_bytes()

    def failing_batches():
        yield table(3).to_batches()[0]
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_parquet_atomic(failing_batches(), str(target), schema=table().schema)
    assert target.read_bytes() == before
    assert sorted(os.listdir(target.parent)) == ["batch.parquet"]  # no temporary left behind


def test_interrupted_first_write_leaves_nothing(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(ValueError), atomic_open(str(target)) as handle:
        handle.write(b"{partial")
        raise ValueError("boom")
    assert os.listdir(tmp_path) == []


def test_parquet_round_trip_in_record_batches(tmp_path):
    target = str(tmp_path / "t.parquet")
    rows = write_parquet_atomic(table(1000), target)
    assert rows == 1000 and count_rows(target) == 1000
    chunks = list(iter_record_batches(target, batch_rows=300))
    assert [c.num_rows for c in chunks] == [300, 300, 300, 100]
    assert pa.Table.from_batches(chunks).equals(pq.read_table(target))


def test_empty_stream_needs_and_uses_a_schema(tmp_path):
    target = str(tmp_path / "empty.parquet")
    with pytest.raises(ValueError, match="pass schema="):
        write_parquet_atomic(iter(()), target)
    assert write_parquet_atomic(iter(()), target, schema=table().schema) == 0
    assert pq.read_table(target).schema == table().schema


def test_list_batches_files_and_folders_ignoring_temporaries(tmp_path):
    incoming = tmp_path / "incoming" / "ds"
    incoming.mkdir(parents=True)
    pq.write_table(table(4), incoming / "2026-01-02.parquet")
    pq.write_table(table(2), incoming / ".2026-01-03.parquet.tmp-abc")
    (incoming / "2026-01-01").mkdir()
    pq.write_table(table(3), incoming / "2026-01-01" / "part-0.parquet")
    pq.write_table(table(5), incoming / "2026-01-01" / "part-1.parquet")
    (incoming / "notes.txt").write_text("not a batch")
    batches = list_batches(str(incoming))
    assert [b.batch_id for b in batches] == ["2026-01-01", "2026-01-02"]
    assert count_rows(batches[0].path) == 8
    assert sum(rb.num_rows for rb in iter_record_batches(batches[0].path)) == 8
    assert list_batches(str(tmp_path / "missing")) == []


def test_same_functions_work_on_fsspec_urls(tmp_path):
    url = f"file://{tmp_path}/incoming/ds/b1.parquet"
    write_parquet_atomic(table(7), url)
    assert [b.batch_id for b in list_batches(f"file://{tmp_path}/incoming/ds")] == ["b1"]
    assert count_rows(url) == 7
    memory = "memory://aeflow-test/incoming/ds/b2.parquet"
    write_parquet_atomic(table(6), memory)
    assert count_rows(memory) == 6
    write_json_atomic({"b": 1, "a": [1, 2]}, "memory://aeflow-test/x.json")
    assert read_json("memory://aeflow-test/x.json") == {"a": [1, 2], "b": 1}
    assert read_json("memory://aeflow-test/none.json") is None


def test_quarantine_moves_the_untouched_input_with_its_report(tmp_path):
    layout = Storage(str(tmp_path), "ds")
    source = os.path.join(layout.incoming, "bad.parquet")
    write_parquet_atomic(table(9), source)
    original = Path(source).read_bytes()
    digest = checksum(source)
    batch = BatchRef("bad", source, os.path.getsize(source))
    folder = quarantine_batch(batch, layout.quarantine("bad"), {"reason": "x"}, "# bad\n")
    assert not os.path.exists(source)
    kept = os.path.join(folder, "input", "bad.parquet")
    assert Path(kept).read_bytes() == original and checksum(kept) == digest
    assert read_json(os.path.join(folder, "report.json"))["reason"] == "x"
    assert Path(folder, "report.md").read_text() == "# bad\n"


def test_local_files_are_opened_by_arrow_so_its_threads_never_read_through_python(tmp_path):
    # A folder named like a Hive partition must not turn into a column of the batch.
    folder = tmp_path / "ds=2026-01-01"
    folder.mkdir()
    path = str(folder / "b.parquet")
    pq.write_table(pa.table({"x": list(range(1000))}), path, row_group_size=300)
    with open_input(path) as (handle, threads_safe):
        assert isinstance(handle, pa.NativeFile) and threads_safe
    assert read_table(path).column_names == ["x"]
    assert sum(b.num_rows for b in iter_record_batches(path, batch_rows=128)) == 1000

    # Other stores go through fsspec's Python file object, decoded on the calling thread.
    remote = f"memory://{tmp_path.name}/b.parquet"
    with fsspec.open(remote, "wb") as out:
        out.write(Path(path).read_bytes())
    with open_input(remote) as (handle, threads_safe):
        assert not isinstance(handle, pa.NativeFile) and not threads_safe
    assert read_table(remote).column("x").to_pylist() == list(range(1000))
    assert count_rows(remote) == 1000
