"""What is under incoming/: every file a batch, a part of one, or ignored with the reason; batch ids
that are ambiguous or break the id rules are refused (issue 12, defects 2, 4 and 5)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.io import batch_files, count_rows, list_batches


def write(path: Path, rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": list(range(rows))}), path)
    return path


def every_file(folder: Path) -> set[str]:
    """Every file and link under ``folder`` (links not followed)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found.add(os.path.join(dirpath, name))
    return found


def spark_like_incoming(tmp_path: Path) -> Path:
    incoming = tmp_path / "incoming" / "ds"
    write(incoming / "a.parquet", 3)
    write(incoming / "b.PARQUET", 4)  # an upper-case suffix is still Parquet
    write(incoming / ".hidden.parquet", 5)
    write(incoming / "_staging.parquet", 6)
    write(incoming / ".a.parquet.tmp-0123abcd", 7)  # a writer's temporary
    (incoming / "notes.txt").write_text("not a batch")
    # a Spark/Hadoop output folder: data parts, bookkeeping and an attempt's temporaries
    write(incoming / "c" / "part-0.parquet", 10)
    write(incoming / "c" / "part-1.PARQUET", 11)
    write(incoming / "c" / "day=2" / "part-2.parquet", 12)
    write(incoming / "c" / "_temporary" / "0" / "part-9.parquet", 100)
    write(incoming / "c" / ".hidden" / "part-8.parquet", 200)
    (incoming / "c" / "_SUCCESS").write_text("")
    (incoming / "c" / ".part-0.parquet.crc").write_bytes(b"crc")
    (incoming / "c" / "README.md").write_text("about this export")
    # links: never followed, never batches
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "d" / "part-0.parquet", 13)
    write(elsewhere / "e.parquet", 14)
    os.symlink(elsewhere / "d", incoming / "d")
    os.symlink(elsewhere / "e.parquet", incoming / "e.parquet")
    os.symlink(elsewhere / "e.parquet", incoming / "c" / "part-5.parquet")
    return incoming


def test_batches_and_parts_follow_the_spark_and_hadoop_conventions(tmp_path):
    incoming = spark_like_incoming(tmp_path)
    batches = {b.batch_id: b for b in list_batches(str(incoming))}
    assert sorted(batches) == ["a", "b", "c"]
    assert count_rows(batches["b"].path) == 4
    # _temporary/, .hidden/, _SUCCESS, .crc, README.md and the link are not parts
    parts = [Path(p).relative_to(incoming / "c").as_posix() for p in batch_files(batches["c"].path)]
    assert parts == ["day=2/part-2.parquet", "part-0.parquet", "part-1.PARQUET"]
    assert count_rows(batches["c"].path) == 10 + 11 + 12


def test_every_file_under_incoming_is_a_batch_a_part_or_ignored_with_a_reason(tmp_path):
    from tasks.incoming import scan_incoming

    incoming = spark_like_incoming(tmp_path)
    scan = scan_incoming(str(incoming))
    assert not scan.rejected
    covered: dict[str, str] = {}
    for batch in scan.batches:
        for part in batch_files(batch.path):
            covered[part] = f"batch {batch.batch_id}"
    for entry in scan.ignored:
        assert entry.reason, entry
        assert entry.path not in covered, f"{entry.path} is both read and ignored"
        covered[entry.path] = entry.reason
    for file in every_file(incoming):
        assert any(file == path or file.startswith(path + "/") for path in covered), (
            f"{file} is neither a batch, a part nor listed as ignored"
        )
    reasons = {Path(e.path).relative_to(incoming).as_posix(): e.reason for e in scan.ignored}
    assert "symbolic link" in reasons["d"] and "symbolic link" in reasons["e.parquet"]
    assert "symbolic link" in reasons["c/part-5.parquet"]
    assert "not a Parquet file" in reasons["notes.txt"]
    for name in (".hidden.parquet", "_staging.parquet", ".a.parquet.tmp-0123abcd"):
        assert "starts with '.' or '_'" in reasons[name]
    for name in ("c/_temporary", "c/.hidden", "c/_SUCCESS", "c/.part-0.parquet.crc"):
        assert "starts with '.' or '_'" in reasons[name]
    assert "not a Parquet part" in reasons["c/README.md"]


def test_a_folder_holding_only_a_spark_attempt_is_a_write_in_progress(tmp_path):
    from tasks.incoming import scan_incoming

    incoming = tmp_path / "incoming"
    write(incoming / "f" / "_temporary" / "0" / "part-0.parquet", 5)
    scan = scan_incoming(str(incoming))
    assert not scan.batches and not scan.rejected
    assert [e.reason for e in scan.ignored if e.path.endswith("/f")] == [
        "a write in progress (only _temporary/ inside so far): scored once its parts appear"
    ]


def test_a_file_and_a_folder_with_one_stem_are_refused_not_scored_under_one_id(tmp_path):
    incoming = tmp_path / "incoming"
    write(incoming / "X.parquet", 1000)
    write(incoming / "X" / "part-0.parquet", 1000)
    write(incoming / "Y.parquet", 5)
    write(incoming / "Y.PARQUET", 6)
    write(incoming / "ok.parquet", 7)
    ids = [b.batch_id for b in list_batches(str(incoming))]
    assert ids == ["ok"], "an ambiguous id must never be scored (the outputs would collide)"

    from tasks.incoming import scan_incoming

    rejected = {r.batch_id: r for r in scan_incoming(str(incoming)).rejected}
    assert sorted(rejected) == ["X", "Y"]
    assert sorted(Path(p).name for p in rejected["X"].paths) == ["X", "X.parquet"]
    assert "ambiguous batch id" in rejected["X"].reason
    assert "'X.parquet'" in rejected["X"].reason and "'X'" in rejected["X"].reason


def test_batch_ids_that_break_the_rules_are_refused_with_the_rule(tmp_path):
    from tasks.incoming import MAX_BATCH_ID_BYTES, batch_id_problem, scan_incoming

    incoming = tmp_path / "incoming"
    write(incoming / "line\nbreak.parquet", 3)
    write(incoming / ("f" * 250) / "part-0.parquet", 3)  # a folder name: id of 250 bytes
    write(incoming / ("g" * MAX_BATCH_ID_BYTES + ".parquet"), 3)  # the longest id allowed
    write(incoming / "star*[1]?.parquet", 3)  # pattern characters are plain characters
    ids = sorted(b.batch_id for b in list_batches(str(incoming)))
    assert ids == sorted(["g" * MAX_BATCH_ID_BYTES, "star*[1]?"])
    rejected = {r.batch_id: r.reason for r in scan_incoming(str(incoming)).rejected}
    assert "control character(s) U+000A" in rejected["line\nbreak"]
    assert "250 bytes long, over the limit of 247 bytes" in rejected["f" * 250]
    assert batch_id_problem("2026-01-01") is None
    assert batch_id_problem("\udcff") and "UTF-8" in batch_id_problem("bad\udcffname")
