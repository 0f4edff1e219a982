"""A batch is quarantined exactly once, whatever runs race for it or crash part-way (issue 12,
defect 3): no run archives another's quarantine as superseded or crashes on the moved input."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.io import Storage, list_batches
from tasks.validation import ValidationOutcome, list_quarantined, quarantine


def outcome(batch_id: str) -> ValidationOutcome:
    return ValidationOutcome(
        batch_id, "quarantined", False, 50, reason="quarantined, 1 critical failure(s): test"
    )


@pytest.fixture
def malformed(tmp_path):
    layout = Storage(str(tmp_path / "root"), "demo")
    path = Path(layout.incoming) / "bad.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"x": list(range(50))}), path)
    [batch] = list_batches(layout.incoming)
    return layout, batch, hashlib.sha256(path.read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_quarantined_once(layout: Storage, digest: str) -> None:
    folder = Path(layout.quarantine("bad"))
    assert sha256(folder / "input" / "bad.parquet") == digest
    assert (folder / "report.json").is_file() and (folder / "report.md").is_file()
    assert not (Path(layout.quarantine()) / "_archive").exists(), "a quarantine was superseded"
    assert [e["batch_id"] for e in list_quarantined(layout)] == ["bad"]
    assert not list_batches(layout.incoming)
    assert not [p for p in Path(layout.root).rglob("*") if ".tmp-" in p.name]


def test_a_run_that_listed_the_batch_before_another_moved_it_does_not_undo_that_move(malformed):
    layout, batch, digest = malformed
    first = quarantine(batch, outcome("bad"), storage=layout)
    # a second run listed and validated the same batch before the first one moved it
    second = quarantine(batch, outcome("bad"), storage=layout)
    assert first.status == "quarantined"
    assert second.status == "quarantined_elsewhere"
    assert_quarantined_once(layout, digest)


def test_three_concurrent_quarantines_of_one_batch_move_it_once(malformed):
    layout, batch, digest = malformed
    start, results, errors = threading.Barrier(3), [], []

    def run() -> None:
        start.wait()
        try:
            results.append(quarantine(batch, outcome("bad"), storage=layout))
        except Exception as exc:  # collected: the test fails with it below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(r.status for r in results) == [
        "quarantined",
        "quarantined_elsewhere",
        "quarantined_elsewhere",
    ]
    assert_quarantined_once(layout, digest)


def test_a_quarantine_interrupted_after_its_report_is_finished_not_duplicated(malformed):
    layout, batch, digest = malformed
    kept = Path(batch.path).read_bytes()
    quarantine(batch, outcome("bad"), storage=layout)
    # as if killed before the input left incoming/: the input is still there, with a temporary
    Path(batch.path).write_bytes(kept)
    folder = Path(layout.quarantine("bad"))
    (folder / "report.md").unlink()
    (folder / ".report.md.tmp-0123456789abcdef").write_text("half a report")
    again = quarantine(batch, outcome("bad"), storage=layout)
    assert again.status == "quarantined"
    assert_quarantined_once(layout, digest)


def test_a_quarantine_interrupted_during_its_copy_is_redone(malformed):
    layout, batch, digest = malformed
    folder = Path(layout.quarantine("bad"))
    (folder / "input").mkdir(parents=True)
    (folder / "input" / ".bad.parquet.tmp-0123456789abcdef").write_bytes(b"PAR1 half")
    quarantine(batch, outcome("bad"), storage=layout)
    assert_quarantined_once(layout, digest)


def test_a_new_delivery_under_a_quarantined_id_supersedes_the_old_quarantine(malformed):
    layout, batch, _ = malformed
    kept = Path(batch.path).read_bytes()
    quarantine(batch, outcome("bad"), storage=layout)
    replacement = Path(batch.path)
    pq.write_table(pa.table({"x": list(range(60))}), replacement)
    quarantine(list_batches(layout.incoming)[0], outcome("bad"), storage=layout)
    [archived] = (Path(layout.quarantine()) / "_archive" / "bad").iterdir()
    assert archived.name.endswith("-superseded")
    assert (archived / "input" / "bad.parquet").read_bytes() == kept
    current = Path(layout.quarantine("bad")) / "input" / "bad.parquet"
    assert pq.read_metadata(current).num_rows == 60
