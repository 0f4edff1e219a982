"""Streaming, exactly-once scoring of batches (the plain functions under the score flow)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from model_support import demo_columns, register_tiny_champion, score_demo_batch

from tasks.demo_data import (
    CATEGORICAL_COLUMNS,
    ID_COLUMN,
    NUMERIC_COLUMNS,
    TIMESTAMP_COLUMN,
    generate_demo_data,
)
from tasks.frames import feature_frame
from tasks.io import Storage, checksum, list_batches, read_table
from tasks.locks import BatchLock, BatchLockTimeout
from tasks.model_cache import default_torch_threads
from tasks.scoring import find_pending_batches
from tasks.streaming import prefetch

PASSTHROUGH = [ID_COLUMN, TIMESTAMP_COLUMN]
ROWS_PER_DAY = 1500


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A storage root with 3 demo batches and a champion; tests copy it before changing it."""
    base = tmp_path_factory.mktemp("scoring")
    layout = Storage(str(base / "root"), "demo")
    generate_demo_data(
        layout.incoming,
        days=3,
        rows_per_day=ROWS_PER_DAY,
        seed=3,
        drift_day=None,
        malformed_day=None,
    )
    batches = list_batches(layout.incoming)
    version = register_tiny_champion(layout, batches[0].path, base)
    return {"root": base / "root", "version": version}


@pytest.fixture
def store(trained, tmp_path):
    """A private copy of the trained storage root."""
    import shutil

    root = tmp_path / "root"
    shutil.copytree(trained["root"], root)
    layout = Storage(str(root), "demo")
    return {"layout": layout, "batches": list_batches(layout.incoming), **trained}


def score(layout, batch, **kwargs):
    return score_demo_batch(layout, batch, **kwargs)


def files_under(folder: str) -> list[str]:
    return sorted(
        str(Path(dirpath, name).relative_to(folder))
        for dirpath, _, names in os.walk(folder)
        for name in names
    )


def test_a_batch_outside_the_storage_root_is_refused_before_anything_is_written(store, tmp_path):
    """Its marker stores the input relative to the root, so it could not be committed: scoring it
    used to write the output, then fail on the marker, leaving an output no marker names."""
    import shutil

    from tasks.io import BatchRef

    layout, batch = store["layout"], store["batches"][0]
    elsewhere = tmp_path / "elsewhere" / "batch.parquet"
    elsewhere.parent.mkdir()
    shutil.copy(batch.path, elsewhere)
    before = files_under(layout.root)
    with pytest.raises(ValueError, match="outside the storage root .* move or copy it there"):
        score(layout, BatchRef("batch", str(elsewhere), elsewhere.stat().st_size))
    assert files_under(layout.root) == before


# --------------------------------------------------------------------------------- the contract
def test_scored_file_follows_the_output_contract(store):
    layout, batch = store["layout"], store["batches"][0]
    marker = score(layout, batch, chunk_rows=400, top_k=2)

    output = Path(layout.scored, "date=2026-01-01", f"{batch.batch_id}.parquet")
    assert marker.output == str(output) and output.is_file()
    table = pq.read_table(output)
    source = pq.read_table(batch.path)
    assert table.column_names == [
        *PASSTHROUGH,
        "anomaly_score",
        "anomaly_percentile",
        "is_anomaly",
        "threshold",
        "top_features",
        "z_0",
        "z_1",
        "z_2",
        "model_version",
        "batch_id",
        "scored_at",
    ]
    # rows keep the input's ids, timestamps and order
    assert table.column(ID_COLUMN).equals(source.column(ID_COLUMN))
    assert table.column(TIMESTAMP_COLUMN).equals(source.column(TIMESTAMP_COLUMN))
    assert table.schema.field("z_0").type == pa.float32()
    scores = table.column("anomaly_score").to_numpy()
    threshold = table.column("threshold").to_numpy()
    assert np.all(threshold == threshold[0])
    assert table.column("is_anomaly").to_numpy().tolist() == (scores > threshold).tolist()
    percentiles = table.column("anomaly_percentile").to_numpy()
    assert percentiles.min() >= 0 and percentiles.max() <= 1
    # the percentile is a monotone function of the score
    order = np.argsort(scores, kind="stable")
    assert np.all(np.diff(percentiles[order]) >= 0)
    named = [n.split(",") if n else [] for n in table.column("top_features").to_pylist()]
    # At most top_k names; fewer where fewer columns add to the score, none on the rows that
    # hold nothing unusual; flagged rows always name at least one column.
    assert all(len(c) <= 2 and set(c) <= set(NUMERIC_COLUMNS + CATEGORICAL_COLUMNS) for c in named)
    flagged = table.column("is_anomaly").to_pylist()
    assert all(c for c, flag in zip(named, flagged, strict=True) if flag)
    assert sum(len(c) == 2 for c in named) > len(named) / 2
    assert set(table.column("model_version").to_pylist()) == {store["version"]}
    assert set(table.column("batch_id").to_pylist()) == {batch.batch_id}
    assert table.column("scored_at").unique().to_pylist()[0].isoformat() == marker.scored_at

    # streamed: one row group per chunk of 400 rows, not one table in memory
    assert pq.ParquetFile(output).metadata.num_row_groups == -(-ROWS_PER_DAY // 400)

    # On storage the marker's paths are relative to the root; in memory they are full paths.
    on_disk = json.loads(Path(layout.success_marker(batch.batch_id)).read_text())
    assert on_disk["output"] == f"scored/demo/date=2026-01-01/{batch.batch_id}.parquet"
    assert on_disk["input_path"] == f"incoming/demo/{batch.batch_id}.parquet"
    paths = {"output", "input_path", "marker_format"}
    assert {k: v for k, v in on_disk.items() if k not in paths} == {
        k: v for k, v in marker.to_dict().items() if k not in paths
    }
    assert marker.input_path == batch.path
    assert marker.status == "scored"
    assert marker.rows_in == marker.rows_out == ROWS_PER_DAY
    assert marker.flagged == int(pc.sum(table.column("is_anomaly")).as_py())
    assert marker.input_sha256 == checksum(batch.path)
    assert marker.model_version == store["version"]


def test_scores_match_the_detector_on_the_whole_batch(store):
    layout, batch = store["layout"], store["batches"][1]
    score(layout, batch, chunk_rows=512)
    detector = layout.registry().load()[0]
    expected = detector.score(
        feature_frame(read_table(batch.path), NUMERIC_COLUMNS, CATEGORICAL_COLUMNS)
    )
    table = pq.read_table(Path(layout.scored, "date=2026-01-02", f"{batch.batch_id}.parquet"))
    np.testing.assert_allclose(table.column("anomaly_score").to_numpy(), expected.scores, rtol=1e-5)
    np.testing.assert_allclose(table.column("z_2").to_numpy(), expected.latent[:, 2], rtol=1e-5)


# ------------------------------------------------------------------------------- exactly once
def test_a_second_run_skips_and_force_replaces_without_appending(store):
    layout, batch = store["layout"], store["batches"][0]
    first = score(layout, batch)
    output = Path(first.output)
    written = output.stat().st_mtime_ns

    again = score(layout, batch)
    assert again.status == "skipped" and again.scored_at == first.scored_at
    assert output.stat().st_mtime_ns == written
    plan = find_pending_batches(batches=[batch], storage=layout, model_version=store["version"])
    assert (plan.pending, plan.skipped) == ([], [first.replace(status="skipped")])

    forced = score(layout, batch, force=True)
    assert forced.status == "scored"
    table = pq.read_table(output)
    assert table.num_rows == ROWS_PER_DAY  # replaced, not appended
    assert pc.count_distinct(table.column(ID_COLUMN)).as_py() == ROWS_PER_DAY
    assert files_under(layout.scored) == [
        "_locks/2026-01-01.lock",
        "_success/2026-01-01.json",
        "date=2026-01-01/2026-01-01.parquet",
    ]


def test_a_rewritten_input_is_scored_again_and_a_touched_one_is_not(store):
    layout, batch = store["layout"], store["batches"][0]
    first = score(layout, batch)

    # Same bytes, new modification time: the fingerprint differs, the sha256 does not -> skipped.
    later = time.time() + 5
    os.utime(batch.path, (later, later))
    assert score(layout, batch).status == "skipped"

    # Different bytes under the same name -> scored again, one output still.
    table = pq.read_table(batch.path)
    pq.write_table(table.slice(0, 1000), batch.path)
    rescored = score(layout, batch)
    assert rescored.status == "scored" and rescored.rows_out == 1000
    assert rescored.input_sha256 != first.input_sha256
    assert pq.read_table(rescored.output).num_rows == 1000


def test_another_model_version_rescores(store, tmp_path):
    layout, batch = store["layout"], store["batches"][2]
    score(layout, batch)
    challenger = register_tiny_champion(layout, batch.path, tmp_path, seed=1)
    plan = find_pending_batches(batches=[batch], storage=layout, model_version=challenger)
    assert [b.batch_id for b in plan.pending] == [batch.batch_id]
    marker = score(layout, batch, model_version=challenger)
    assert marker.status == "scored" and marker.model_version == challenger
    assert set(pq.read_table(marker.output).column("model_version").to_pylist()) == {challenger}


def test_two_concurrent_runs_leave_exactly_one_output_per_batch(store):
    layout, batches = store["layout"], store["batches"]
    statuses: dict[str, list[str]] = {b.batch_id: [] for b in batches}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for batch in batches:
                statuses[batch.batch_id].append(score(layout, batch, chunk_rows=300).status)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    runs = [threading.Thread(target=run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join()
    assert not errors
    # each batch scored by one run; the other waited on the batch lock, then skipped it
    assert all(sorted(s) == ["scored", "skipped"] for s in statuses.values()), statuses
    outputs = sorted(Path(layout.scored).glob("date=*/*.parquet"))
    assert [p.stem for p in outputs] == [b.batch_id for b in batches]
    for path in outputs:
        table = pq.read_table(path)
        assert table.num_rows == ROWS_PER_DAY
        assert pc.count_distinct(table.column(ID_COLUMN)).as_py() == ROWS_PER_DAY
        marker = json.loads(Path(layout.success_marker(path.stem)).read_text())
        assert table.column("scored_at")[0].as_py().isoformat() == marker["scored_at"]
    assert not [f for f in files_under(layout.scored) if Path(f).name.startswith(".")]


def test_temporaries_left_by_a_killed_writer_are_removed(store):
    layout, batch = store["layout"], store["batches"][0]
    folder = Path(layout.scored, "date=2026-01-01")
    folder.mkdir(parents=True)
    stale = folder / f".{batch.batch_id}.parquet.tmp-0123456789abcdef"
    stale.write_bytes(b"PAR1 half a file")
    unrelated = folder / ".other-batch.parquet.tmp-0123"
    unrelated.write_bytes(b"another batch's writer")
    score(layout, batch)
    assert not stale.exists()
    assert unrelated.exists()  # another batch's writer may still be running


def test_a_failing_chunk_leaves_no_output_no_marker_and_no_temporary(store):
    layout, batch = store["layout"], store["batches"][0]
    table = pq.read_table(batch.path)
    broken = table.set_column(
        table.schema.get_field_index("amount"),
        "amount",
        pa.array(["12.5"] * 1000 + ["not a number"] * (table.num_rows - 1000)),
    )
    pq.write_table(broken, batch.path)
    with pytest.raises(ValueError, match="numeric column 'amount' cannot be read as numbers"):
        score(layout, batch, chunk_rows=256)
    assert files_under(layout.scored) == ["_locks/2026-01-01.lock"]


def test_arguments_are_checked_with_the_rule_and_the_value(store):
    layout, batch = store["layout"], store["batches"][0]
    with pytest.raises(ValueError, match="chunk_rows must be a positive integer, got 0"):
        score(layout, batch, chunk_rows=0)
    with pytest.raises(ValueError, match=r"passthrough column\(s\) \['account_id'\]"):
        score(layout, batch, columns=demo_columns(id="account_id", timestamp=None))


def test_torch_threads_leave_a_core_for_io_and_are_shared_by_concurrent_batches(monkeypatch):
    import models.cpu

    monkeypatch.delenv("AEFLOW_TORCH_THREADS", raising=False)
    monkeypatch.setattr(models.cpu, "busy_neighbours", lambda: 0.0)
    cpus = models.cpu.cpu_budget().cpus
    assert default_torch_threads(1) == max(1, cpus - 1)
    assert default_torch_threads(cpus * 4) == 1
    # Busy neighbours on every CPU leave one thread; an explicit setting wins.
    monkeypatch.setattr(models.cpu, "busy_neighbours", lambda: float(os.cpu_count() or 1))
    assert default_torch_threads(1) == 1
    monkeypatch.setenv("AEFLOW_TORCH_THREADS", "3")
    assert default_torch_threads(1) == 3


# ----------------------------------------------------------------------------------- pipeline
def test_prefetch_keeps_order_and_propagates_errors():
    assert list(prefetch(range(50), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise OSError("disk gone")

    stream = prefetch(failing())
    assert next(stream) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(stream)


def test_prefetch_is_bounded_and_stops_when_closed():
    produced = []

    def source():
        for i in range(1000):
            produced.append(i)
            yield i

    stream = prefetch(source(), depth=2)
    assert next(stream) == 0
    time.sleep(0.3)
    # one item consumed, two waiting in the queue, one blocked in put: memory stays bounded
    assert len(produced) <= 4
    stream.close()
    count = len(produced)
    time.sleep(0.2)
    assert len(produced) == count


# --------------------------------------------------------------------------------------- locks
def test_local_lock_excludes_a_second_holder_until_released(tmp_path):
    url = str(tmp_path / "_locks" / "b.lock")
    with BatchLock(url), pytest.raises(BatchLockTimeout, match="held by another scoring run"):
        BatchLock(url, timeout_s=0.3, poll_s=0.05).acquire()
    with BatchLock(url, timeout_s=0.3):
        pass


def test_local_lock_of_a_killed_process_is_free_at_once(tmp_path):
    url = tmp_path / "_locks" / "b.lock"
    url.parent.mkdir()
    # The holder takes the same kernel lock BatchLock takes (plain flock: no heavy imports).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX);"
            "print('held', flush=True); time.sleep(60)",
            str(url),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BatchLockTimeout):
            BatchLock(str(url), timeout_s=0.2, poll_s=0.05).acquire()
        holder.kill()  # SIGKILL: no clean-up code runs in the holder
        holder.wait(timeout=10)
        with BatchLock(str(url), timeout_s=2):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_object_store_lease_excludes_expires_and_is_removed(tmp_path):
    url = f"memory://{tmp_path.name}/_locks/b.lock"
    first = BatchLock(url, lease_s=30).acquire()
    with pytest.raises(BatchLockTimeout):
        BatchLock(url, timeout_s=0.3, poll_s=0.05).acquire()
    first.check()
    first.release()
    from tasks.io import exists

    assert not exists(url)

    # A holder that died stops renewing: its lease expires and the next run breaks it.
    dead = BatchLock(url, lease_s=0.3).acquire()
    dead._released.set()  # stop its heartbeat, as a killed process would
    dead._heartbeat.join()
    successor = BatchLock(url, timeout_s=5, poll_s=0.05).acquire()
    with pytest.raises(RuntimeError, match="lost the batch lock"):
        dead.check()
    successor.check()
    successor.release()


# ------------------------------------------------------------------------------------- readers
@pytest.fixture
def scored_folder(store):
    """Every batch scored, plus what readers must ignore: markers, locks, a writer's temporary."""
    layout = store["layout"]
    for batch in store["batches"]:
        score(layout, batch)
    in_flight = Path(layout.scored, "date=2026-01-02", ".2026-01-02.parquet.tmp-5e1f")
    in_flight.write_bytes(b"PAR1 a concurrent writer's half-written file")
    return layout.scored


def test_pandas_reads_the_scored_folder_with_its_date_partitions(scored_folder):
    import pandas as pd

    frame = pd.read_parquet(scored_folder)
    assert len(frame) == 3 * ROWS_PER_DAY
    assert frame[ID_COLUMN].is_unique
    assert sorted(frame["date"].astype(str).unique()) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert pd.api.types.is_bool_dtype(frame["is_anomaly"])


def test_pyarrow_dataset_reads_and_prunes_date_partitions(scored_folder):
    import pyarrow.dataset as ds

    dataset = ds.dataset(scored_folder, format="parquet", partitioning="hive")
    assert dataset.count_rows() == 3 * ROWS_PER_DAY
    one_day = dataset.to_table(filter=ds.field("date") == "2026-01-02", columns=["batch_id"])
    assert one_day.num_rows == ROWS_PER_DAY
    assert set(one_day.column("batch_id").to_pylist()) == {"2026-01-02"}


def test_duckdb_reads_the_scored_folder_with_hive_partitioning(scored_folder):
    import duckdb

    rows = duckdb.sql(
        f"""
        select cast(date as varchar), count(*), count(distinct {ID_COLUMN}),
               sum(cast(is_anomaly as int)), count(distinct model_version)
        from read_parquet('{scored_folder}/*/*.parquet', hive_partitioning = true)
        group by all order by 1
        """
    ).fetchall()
    assert [r[0] for r in rows] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    for _, count, distinct_ids, flagged, versions in rows:
        assert count == distinct_ids == ROWS_PER_DAY
        assert 0 <= flagged < count and versions == 1


# ------------------------------------------------------------------------------ task runners
def test_score_runs_on_threads_a_local_dask_cluster_or_a_scheduler_address():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from flows.cli import build_parser
    from flows.score import task_runner_for

    assert isinstance(task_runner_for(3), ThreadPoolTaskRunner)
    local = task_runner_for(3, "local")
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 1, "processes": True}
    remote = task_runner_for(3, "tcp://10.0.0.5:8786")
    assert remote.address == "tcp://10.0.0.5:8786" and not remote.cluster_kwargs
    with pytest.raises(ValueError, match="--dask takes 'local' or a scheduler address"):
        task_runner_for(2, "cluster")
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        task_runner_for(0)

    args = build_parser().parse_args(["score", "--config", "x.toml", "--dask", "local"])
    assert args.dask == "local"


def test_the_partition_is_the_batch_date_never_the_scoring_day(store):
    """Batches without a timestamp column: a date in the id, else the arrival, recorded once."""
    import pyarrow.parquet as pq

    from tasks.io import BatchRef

    layout, source = store["layout"], store["batches"][0]
    untimed = pq.read_table(source.path).drop_columns([TIMESTAMP_COLUMN])
    incoming = Path(layout.incoming)
    named, plain = incoming / "export_20250301.parquet", incoming / "export.parquet"
    for path in (named, plain):
        pq.write_table(untimed, path)
    arrived = dt.datetime(2025, 4, 2, 12, tzinfo=dt.UTC).timestamp()
    os.utime(plain, (arrived, arrived))

    def run(path: Path, batch_date_source: str = "auto", **kwargs):
        batch = BatchRef(path.stem, str(path), path.stat().st_size)
        columns = demo_columns(timestamp=None, batch_date=batch_date_source)
        return score(layout, batch, columns=columns, **kwargs)

    by_id = run(named)
    assert (by_id.date, by_id.date_source) == ("2025-03-01", "id")
    assert Path(by_id.output) == Path(layout.scored_file("2025-03-01", "export_20250301"))
    by_arrival = run(plain)
    assert (by_arrival.date, by_arrival.date_source) == ("2025-04-02", "arrival")
    # touched again (a re-delivery, a release from quarantine): the recorded arrival holds
    later = dt.datetime(2025, 6, 30, 12, tzinfo=dt.UTC).timestamp()
    os.utime(plain, (later, later))
    again = run(plain, force=True)
    assert again.date == "2025-04-02" and again.output == by_arrival.output
    # a strict source that cannot date the batch fails it, naming the fix
    with pytest.raises(ValueError, match="batch export has no date: columns.batch_date = 'id'"):
        run(plain, force=True, batch_date_source="id")


def test_a_folder_batch_whose_parts_differ_in_number_width_is_scored_whole(store):
    """pandas writes an integer column holding a null as double, so a folder of daily parts can
    carry the id as int64 in one part and double in the next. Validation reads such parts as one
    table with the wider type (tests/unit/test_validate.py); scoring used to take the output
    schema from the first part alone and cast the others to it, failing on any value int64 cannot
    hold. The output holds the id in the batch's unified (wider) type, every row scored."""
    from model_support import demo_columns

    from tasks.io import BatchRef

    layout, batch = store["layout"], store["batches"][0]
    table = pq.read_table(batch.path)
    n = table.num_rows
    table = table.append_column("row_no", pa.array(np.arange(n), type=pa.int64()))
    folder = Path(layout.incoming, "2026-01-01-parts")
    folder.mkdir()
    half = n // 2
    pq.write_table(table.slice(0, half), folder / "part-0.parquet")
    second = table.slice(half)
    second = second.set_column(
        second.schema.get_field_index("row_no"), "row_no", second["row_no"].cast("double")
    )
    pq.write_table(second, folder / "part-1.parquet")
    parts = BatchRef("2026-01-01-parts", str(folder), 0)

    marker = score(layout, parts, chunk_rows=400, columns=demo_columns(id="row_no"))
    assert marker.rows_in == marker.rows_out == n
    scored = pq.read_table(marker.output)
    assert scored.schema.field("row_no").type == pa.float64()
    assert scored.column("row_no").to_pylist() == [float(i) for i in range(n)]
    whole = pq.read_table(score(layout, batch, chunk_rows=400).output)
    assert scored.column("anomaly_score").equals(whole.column("anomaly_score"))
