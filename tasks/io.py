"""Storage I/O: the only module that knows the storage layout.

Every function takes a location as a local path or an fsspec URL (``s3://bucket/x``, ``file:///x``,
``memory://x``) plus fsspec storage options, so local folders and object stores go through the same
code. Parquet is read and written in record batches so memory stays flat whatever the file size.
Writes are atomic: a temporary name in the same folder committed by rename on file systems, a single
(possibly multipart) PUT on object stores, where an object only appears once it is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from prefect import task

from models.registry import ModelRegistry

# The storage primitives live in models.storage so the model registry can use them too; they are
# re-exported here because the tasks are their main users.
from models.storage import (  # noqa: F401
    StorageOptions,
    atomic_open,
    bounded_name,
    copy_tree,
    exists,
    filesystem,
    is_local,
    is_temporary_of,
    join,
    read_json,
    remove,
    url_of,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from models.storage_errors import TRANSIENT, storage_errors, storage_problem
from tasks.incoming import (  # noqa: F401
    PARQUET_SUFFIX,
    BatchRef,
    IncomingScan,
    batch_files,
    list_batches,
    scan_incoming,
)
from tasks.settings import StorageSettings

DEFAULT_STORAGE_RETRIES = 4
DEFAULT_RETRY_DELAY_S = 2.0
QUARANTINE_REPORT_FILE = "report.json"
QUARANTINE_MARKDOWN_FILE = "report.md"
QUARANTINE_INPUT_FOLDER = "input"  # the untouched input(s), under their original names
RELEASE_RECORD_FILE = "release.json"  # in an archived quarantine folder: how it was released
MODEL_ENTRY_FILE = "registry.json"  # a version's registry entry, beside its bundle
CHAMPION_FILE = "champion.json"  # the champion alias: {"version", "history"}
DRIFT_REFERENCE_FILE = "drift_reference.json"  # beside a model's bundle
# A training run's rows (tasks.training, tasks.window) and per-row holdout results
# (tasks.evaluate), in its report folder.
TRAINING_ROWS_FILE = "train.parquet"
FILTERED_TRAINING_ROWS_FILE = "train-filtered.parquet"
HOLDOUT_ROWS_FILE = "holdout.parquet"
HOLDOUT_SCORES_FILE = "holdout_scores.parquet"
SUCCESS_FOLDER = "_success"  # pyarrow.dataset and Hive readers skip names starting with "_"
LOCK_FOLDER = "_locks"  # per-batch scoring locks (see tasks.scoring.BatchLock)
ARRIVAL_FOLDER = "_arrivals"  # each batch's first-seen arrival date (see tasks.batch_dates)


# ----------------------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class Storage:
    """One dataset's storage: its root (a folder or an fsspec URL), the fsspec options, the
    retries of transient errors, and the layout under the root (docs/architecture.md). Built once
    per run (:meth:`from_settings`); nothing else composes a storage path.
    """

    root: str
    dataset: str
    options: dict[str, Any] | None = field(default=None, compare=False)
    retries: int = DEFAULT_STORAGE_RETRIES
    retry_delay_s: float = DEFAULT_RETRY_DELAY_S

    @classmethod
    def from_settings(cls, settings: StorageSettings, dataset: str) -> Storage:
        """The storage a config's ``[storage]`` section describes (its root already resolved)."""
        return cls(
            root=settings.root,
            dataset=dataset,
            options=dict(settings.options) or None,
            retries=settings.retries,
            retry_delay_s=settings.retry_delay_s,
        )

    def retry_options(self) -> dict[str, Any]:
        """Prefect task settings retrying this storage's transient errors (see
        :func:`storage_retry_options`)."""
        return storage_retry_options(self.retries, self.retry_delay_s)

    # ---------------------------------------------------------------------------------- layout
    @property
    def incoming(self) -> str:
        return join(self.root, "incoming", self.dataset)

    def incoming_entry(self, name: str) -> str:
        """The file or folder ``name`` in incoming/ (a batch, or the parts of one)."""
        return join(self.incoming, name)

    def incoming_file(self, batch_id: str) -> str:
        """Where a one-file batch ``batch_id`` is delivered (``incoming/<dataset>/<id>.parquet``)."""
        return self.incoming_entry(f"{batch_id}{PARQUET_SUFFIX}")

    def ingest_staging(
        self, token: str, batch_id: str | None = None, part: int | None = None
    ) -> str:
        """An ingest's hidden staging folder in incoming/ (``_ingest-<token>``: names starting
        with "_" are no batches), a batch's merged file there (``<batch_id>.parquet``), or one of
        its parts (``<batch_id>/part-<part:05d>.parquet``)."""
        base = self.incoming_entry(f"_ingest-{token}")
        if batch_id is None:
            return base
        if part is None:
            return join(base, f"{batch_id}{PARQUET_SUFFIX}")
        return join(base, batch_id, f"part-{part:05d}{PARQUET_SUFFIX}")

    def quarantine(self, batch_id: str | None = None) -> str:
        base = join(self.root, "quarantine", self.dataset)
        return join(base, batch_id) if batch_id else base

    def quarantine_archive(self, batch_id: str, name: str | None = None) -> str:
        """Where a batch's superseded and released quarantine folders are kept
        (``quarantine/<dataset>/_archive/<batch_id>/``), or one of them, ``name``."""
        base = join(self.quarantine(), "_archive", batch_id)
        return join(base, name) if name else base

    def quarantine_report(self, batch_id: str) -> str:
        """A quarantined batch's report.json (its presence means the batch is quarantined)."""
        return join(self.quarantine(batch_id), QUARANTINE_REPORT_FILE)

    def quarantine_markdown(self, batch_id: str) -> str:
        """A quarantined batch's report.md (the report for people)."""
        return join(self.quarantine(batch_id), QUARANTINE_MARKDOWN_FILE)

    def quarantine_input(self, batch_id: str, name: str | None = None) -> str:
        """The folder keeping a quarantined batch's untouched inputs, or the input ``name``."""
        base = join(self.quarantine(batch_id), QUARANTINE_INPUT_FOLDER)
        return join(base, name) if name else base

    @staticmethod
    def release_record(archived: str) -> str:
        """The release.json of an archived quarantine folder (:meth:`quarantine_archive`)."""
        return join(archived, RELEASE_RECORD_FILE)

    @property
    def scored(self) -> str:
        return join(self.root, "scored", self.dataset)

    def scored_file(self, date: str, batch_id: str) -> str:
        return join(self.scored, f"date={date}", f"{batch_id}{PARQUET_SUFFIX}")

    def success_marker(self, batch_id: str) -> str:
        return join(self.scored, SUCCESS_FOLDER, f"{batch_id}.json")

    def scoring_lock(self, batch_id: str) -> str:
        """The batch's lock (scoring and quarantine); bounded, as a rejected id may be long."""
        return join(self.scored, LOCK_FOLDER, bounded_name(batch_id, ".lock"))

    def arrival_record(self, batch_id: str) -> str:
        return join(self.scored, ARRIVAL_FOLDER, f"{batch_id}.json")

    # The model registry's layout (models.registry.RegistryLayout): the registry is handed it.
    files_beside_bundle: ClassVar[frozenset[str]] = frozenset(
        {MODEL_ENTRY_FILE, DRIFT_REFERENCE_FILE}
    )

    @property
    def models(self) -> str:
        return join(self.root, "models", self.dataset)

    def model_version(self, version: str) -> str:
        """Model ``version``'s folder: its bundle and the files kept beside it."""
        return join(self.models, version)

    def model_file(self, version: str, name: str) -> str:
        """A file of model ``version``'s folder (a bundle file such as schema.json)."""
        return join(self.model_version(version), name)

    def model_entry(self, version: str) -> str:
        """Model ``version``'s registry entry (registry.json)."""
        return self.model_file(version, MODEL_ENTRY_FILE)

    @property
    def champion_file(self) -> str:
        """The champion alias, switched atomically (``models/<dataset>/champion.json``)."""
        return join(self.models, CHAMPION_FILE)

    def registry(self) -> ModelRegistry:
        """The dataset's model registry under ``<root>/models/<dataset>/``."""
        return ModelRegistry(self)

    def drift_reference(self, version: str) -> str:
        """Model ``version``'s drift reference profile, kept beside its bundle."""
        return self.model_file(version, DRIFT_REFERENCE_FILE)

    def reports(self, run: str | None = None) -> str:
        base = join(self.root, "reports", self.dataset)
        return join(base, run) if run else base

    def tuning(self, study: str) -> str:
        """A hyperparameter study's folder (study storage, trials, best parameters, report)."""
        return join(self.reports("tuning"), study)

    def tuning_file(self, study: str, name: str) -> str:
        """A file of a study's folder (``reports/<dataset>/tuning/<study>/<name>``)."""
        return join(self.tuning(study), name)

    def tuning_split_run(self, study: str) -> str:
        """The run name a study's search splits its window under (``tuning/<study>/split``), so
        :meth:`training_rows` and :meth:`holdout_rows` of it lie in the study's folder: the split
        the train flow makes, made again (both files are removed once read)."""
        return f"tuning/{study}/split"

    def report_file(self, run: str, name: str) -> str:
        """A file of run ``run``'s report folder (``reports/<dataset>/<run>/<name>``)."""
        return join(self.reports(run), name)

    def training_rows(self, run: str) -> str:
        """The training part of run ``run``'s split (removed once the model is evaluated)."""
        return self.report_file(run, TRAINING_ROWS_FILE)

    def filtered_training_rows(self, run: str) -> str:
        """The training part of run ``run``'s split without the rows a retraining leaves out (the
        champion's flags, confirmed anomalies: :mod:`tasks.row_filter`)."""
        return self.report_file(run, FILTERED_TRAINING_ROWS_FILE)

    def holdout_rows(self, run: str) -> str:
        """The holdout part of run ``run``'s split (the rows challenger and champion are compared
        on; kept)."""
        return self.report_file(run, HOLDOUT_ROWS_FILE)

    def holdout_scores(self, run: str) -> str:
        """Run ``run``'s per-row results of the challenger on its holdout."""
        return self.report_file(run, HOLDOUT_SCORES_FILE)

    def data_docs_page(self, batch_id: str) -> str:
        """A batch's Great Expectations Data Docs page (``reports/<dataset>/data-docs/``)."""
        return join(self.reports("data-docs"), f"{batch_id}.html")

    def drift_report(self, batch_id: str) -> str:
        """A batch's latest drift report (``reports/<dataset>/drift/<batch_id>.json``)."""
        return join(self.reports("drift"), f"{batch_id}.json")

    def nightly_record(self, night: str) -> str:
        """A night's record (``reports/<dataset>/nightly/<night>.json``)."""
        return join(self.reports("nightly"), f"{night}.json")

    def relative(self, url: str) -> str | None:
        """``url`` relative to the root ('/'-separated), or None when it is outside the root."""
        root = filesystem(self.root, self.options)[1].rstrip("/")
        inner = filesystem(url, self.options)[1].rstrip("/")
        return inner[len(root) + 1 :] if inner.startswith(root + "/") else None

    def under_root(self, relative: str) -> str:
        """The URL of ``relative`` ('/'-separated, as :meth:`relative` gives it) under the root."""
        return join(self.root, *relative.split("/"))

    @property
    def feedback(self) -> str:
        """Analysts' verdict submissions (``feedback/<dataset>/``, one Parquet file each)."""
        return join(self.root, "feedback", self.dataset)

    def feedback_submission(self, submission_id: str) -> str:
        """One verdict submission (``feedback/<dataset>/<submission_id>.parquet``)."""
        return join(self.feedback, f"{submission_id}{PARQUET_SUFFIX}")

    def remove(self, url: str) -> None:
        """Remove a file or folder of this storage (nothing when it does not exist)."""
        remove(url, self.options)


@contextlib.contextmanager
def open_input(path: str, options: StorageOptions = None) -> Iterator[tuple[Any, bool]]:
    """Open one file for Arrow to read; yields ``(file, threads_safe)``.

    Arrow opens local files itself, so its decoding threads never call back into Python
    (``threads_safe`` is True). Other stores are read through fsspec's Python file object, and
    Arrow's thread pool must not read from one: pyarrow can abort ("terminate called without an
    active exception") or hang at interpreter exit once its pool threads have called into a
    Python file (apache/arrow#34314, #50482; seen here in about 1 run in 10). Readers decode those
    on the calling thread: ``use_threads=threads_safe``.
    """
    fs, inner = filesystem(path, options)
    if isinstance(fs, LocalFileSystem):
        with pa.OSFile(inner, "rb") as file:
            yield file, True
    else:
        with fs.open(inner, "rb") as file:
            yield file, False


def open_parquet(path: str, options: StorageOptions = None) -> pq.ParquetFile:
    """Open one Parquet file for streaming reads (footer only is read here). A local file is
    opened by Arrow itself (see :func:`open_input`), and closed with the returned reader."""
    fs, inner = filesystem(path, options)
    if isinstance(fs, LocalFileSystem):
        return pq.ParquetFile(inner)
    return pq.ParquetFile(fs.open(inner, "rb"))


def read_schema(path: str, options: StorageOptions = None) -> pa.Schema:
    """The Arrow schema of a batch: its file's, or for a folder of parts their schemas unified
    (a number column that is int64 in one part and double in another is double, as
    :func:`read_table` reads it; validation refuses parts that differ otherwise)."""
    files = batch_files(path, options)
    first = open_parquet(files[0], options).schema_arrow
    if len(files) == 1:
        return first
    schemas = [first, *(open_parquet(f, options).schema_arrow for f in files[1:])]
    if all(schema.equals(first) for schema in schemas[1:]):
        return first
    return pa.unify_schemas(schemas, promote_options="permissive")


def count_rows(path: str, options: StorageOptions = None) -> int:
    """Rows in a batch, from the Parquet footers."""
    return sum(open_parquet(f, options).metadata.num_rows for f in batch_files(path, options))


def iter_record_batches(
    path: str,
    options: StorageOptions = None,
    columns: list[str] | None = None,
    batch_rows: int = 65_536,
) -> Iterator[pa.RecordBatch]:
    """Stream a batch as Arrow record batches of at most ``batch_rows`` rows (a record batch never
    spans two row groups)."""
    for file in batch_files(path, options):
        with contextlib.closing(open_parquet(file, options)) as parquet:
            # One reader per row group: a reader over the whole file keeps every row group it has
            # pre-buffered until it is closed, so its memory grew with the file (pyarrow 26: a peak
            # of 730 MB against 281 MB for a 10M-row file, docs/benchmarks/score_speed.md).
            threads_safe = is_local(file)  # see open_input
            for group in range(parquet.num_row_groups):
                yield from parquet.iter_batches(
                    batch_size=batch_rows,
                    columns=columns,
                    row_groups=[group],
                    use_threads=threads_safe,
                )


def read_table(
    path: str, options: StorageOptions = None, columns: list[str] | None = None
) -> pa.Table:
    """A whole batch as one Arrow table (for validation and training, not for scoring)."""
    tables = []
    for file in batch_files(path, options):
        with open_input(file, options) as (handle, threads_safe):
            tables.append(pq.read_table(handle, columns=columns, use_threads=threads_safe))
    if not tables:
        raise FileNotFoundError(f"batch {path} holds no Parquet files")
    return concat_parts(tables)


def concat_parts(tables: list[pa.Table]) -> pa.Table:
    """The parts of one batch as one table. Parts whose number columns differ only in width
    (int64 here, double there: pandas writes an integer column holding a null as double) give the
    wider type, as :func:`read_schema` says, so no row is lost to a width; any other difference
    raises ``pyarrow.ArrowInvalid`` (validation names it and quarantines the batch)."""
    if len(tables) == 1:
        return tables[0]
    widths = only_number_widths_differ([t.schema for t in tables])
    return pa.concat_tables(tables, promote_options="permissive" if widths else "none")


def only_number_widths_differ(schemas: Sequence[pa.Schema]) -> bool:
    """True when every schema has the first one's columns, in its order, and each column differs
    from the first's at most as one number type from another (integer or floating point)."""
    first = schemas[0]

    def number(arrow_type: pa.DataType) -> bool:
        return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)

    for other in schemas[1:]:
        if other.names != first.names:
            return False
        for mine, theirs in zip(first, other, strict=True):
            if not mine.type.equals(theirs.type) and not (
                number(mine.type) and number(theirs.type)
            ):
                return False
    return True


def checksum(path: str, options: StorageOptions = None) -> str:
    """sha256 over the bytes of a batch's files (in order): identifies the exact input scored."""
    digest = hashlib.sha256()
    fs, _ = filesystem(path, options)
    for file in batch_files(path, options):
        with fs.open(filesystem(file, options)[1], "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def fingerprint(path: str, options: StorageOptions = None) -> str:
    """A cheap identity of a batch's bytes from file metadata only: sha256 over each file's name,
    size and modification stamp (mtime locally, ETag or LastModified on object stores).

    Equal fingerprints mean the files were not rewritten, without reading them; scoring uses it to
    skip the full :func:`checksum` of batches already scored, and falls back to the checksum when
    the fingerprints differ (a copied but identical file is still recognised).
    """
    fs, _ = filesystem(path, options)
    digest = hashlib.sha256()
    for file in batch_files(path, options):
        inner = filesystem(file, options)[1]
        fs.invalidate_cache(inner)  # object stores cache listings: ask the store itself
        info = fs.info(inner)
        stamp = next(
            (info[key] for key in ("mtime", "ETag", "LastModified", "created") if key in info), ""
        )
        digest.update(f"{posixpath.basename(file)}|{info.get('size')}|{stamp}\n".encode())
    return digest.hexdigest()


def remove_stale_temporaries(url: str, options: StorageOptions = None) -> list[str]:
    """Remove temporaries that an interrupted atomic write of ``url`` left next to it.

    Local atomic writes go to ``.<name>.tmp-<random>`` in the destination folder
    (:func:`models.storage.temporary_prefix`); a process killed mid-write (SIGKILL, power loss)
    leaves that file behind. Only the temporaries of exactly this name are matched (no glob: a batch
    named ``*`` or ``a[1]`` never matches another's). Only call this while no other writer of
    ``url`` can be running (scoring holds the batch's lock). Object stores need nothing: their
    temporaries live on the writer's local disk, and an object appears only when complete.
    Returns the removed paths.
    """
    if not is_local(url):
        return []
    fs, path = filesystem(url, options)
    folder, name = posixpath.split(path)
    if not fs.isdir(folder):
        return []
    stale = [
        entry
        for entry in fs.ls(folder, detail=False)
        if is_temporary_of(posixpath.basename(entry), name)
    ]
    for leftover in stale:
        fs.rm(leftover)
    return stale


def remove_batch_temporaries(storage: Storage, batch_id: str) -> list[str]:
    """Remove what interrupted writes of one batch left anywhere under scored/: its output's
    temporaries in every date partition (a batch re-scored on another day may land in another
    partition), its marker's and its arrival record's. Call with the batch's lock held. Returns
    the removed paths."""
    if not is_local(storage.root):
        return []
    options = storage.options
    fs, scored = filesystem(storage.scored, options)
    removed = remove_stale_temporaries(storage.success_marker(batch_id), options)
    removed += remove_stale_temporaries(storage.arrival_record(batch_id), options)
    if not fs.isdir(scored):
        return removed
    for entry in fs.ls(scored, detail=True):
        name = posixpath.basename(entry["name"].rstrip("/"))
        if entry["type"] == "directory" and name.startswith("date="):
            output = storage.scored_file(name.removeprefix("date="), batch_id)
            removed += remove_stale_temporaries(output, options)
    return removed


# -------------------------------------------------------------------------------- atomic writes
def write_parquet_atomic(
    batches: Iterable[pa.RecordBatch] | pa.Table,
    url: str,
    schema: pa.Schema | None = None,
    options: StorageOptions = None,
    compression: str = "zstd",
    writer_options: dict[str, Any] | None = None,
) -> int:
    """Stream record batches (or a table) into one Parquet file, committed atomically.

    Returns the number of rows written. ``schema`` is required when ``batches`` may be empty.
    ``writer_options`` go to ``pyarrow.parquet.ParquetWriter`` (e.g. ``use_dictionary``).
    """
    writer_options = writer_options or {}
    if isinstance(batches, pa.Table):
        schema = schema or batches.schema
        batches = batches.to_batches()
    rows = 0
    with atomic_open(url, options) as handle:
        writer: pq.ParquetWriter | None = None
        try:
            for batch in batches:
                if writer is None:
                    writer = pq.ParquetWriter(
                        handle, schema or batch.schema, compression=compression, **writer_options
                    )
                writer.write_batch(batch)
                rows += batch.num_rows
            if writer is None:
                if schema is None:
                    raise ValueError("no record batches to write and no schema given; pass schema=")
                writer = pq.ParquetWriter(handle, schema, compression=compression, **writer_options)
        finally:
            if writer is not None:
                writer.close()
    return rows


# ---------------------------------------------------------------------------------- quarantine
def move_into_quarantine(
    paths: Iterable[str],
    batch_id: str,
    report: dict[str, Any],
    report_markdown: str,
    storage: Storage,
) -> str:
    """Move inputs out of incoming/ into batch ``batch_id``'s quarantine folder with its report.

    Each input is copied untouched to ``quarantine/<dataset>/<batch_id>/input/<original name>``,
    then report.json and report.md are written, and only then are the inputs removed from
    incoming/, so a crash part-way loses nothing (a re-run finishes or redoes it). Returns the
    quarantine folder.
    """
    paths, options = list(paths), storage.options
    for path in paths:
        name = posixpath.basename(str(path).rstrip("/"))
        copy_tree(path, storage.quarantine_input(batch_id, name), options)
    original = {"original_path": paths[0], "original_paths": paths}
    write_json_atomic({**report, **original}, storage.quarantine_report(batch_id), options)
    write_text_atomic(report_markdown, storage.quarantine_markdown(batch_id), options)
    for path in paths:
        remove(path, options)
    return storage.quarantine(batch_id)


# ---------------------------------------------------------------------------------- retries
class RetryableError(RuntimeError):
    """A failure worth retrying after a pause (e.g. a batch still being written while scored)."""


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a task only after a transient storage error or a
    :class:`RetryableError`. Bad data, refused credentials and bugs fail at once: retrying them
    only delays the report."""
    error = getattr(state, "data", None)
    if not isinstance(error, BaseException):
        return False
    return isinstance(error, RetryableError) or storage_problem(error) == TRANSIENT


def storage_retry_options(
    retries: int = DEFAULT_STORAGE_RETRIES, first_delay_s: float = DEFAULT_RETRY_DELAY_S
) -> dict[str, Any]:
    """Prefect task settings for storage work: ``retries`` retries of transient storage errors,
    with exponential backoff from ``first_delay_s`` (2, 4, 8, 16 s by default: an outage of about
    30 s is ridden out) and jitter, so concurrent runs do not retry in lock step."""
    return {
        "retries": retries,
        "retry_delay_seconds": [first_delay_s * 2**i for i in range(max(retries, 1))],
        "retry_jitter_factor": 0.25,
        "retry_condition_fn": retry_on_transient,
    }


# ------------------------------------------------------------------------------- Prefect tasks
@task(name="list-batches", **storage_retry_options())
def list_batches_task(storage: Storage) -> list[BatchRef]:
    """The batches under the dataset's incoming/ folder, by batch id."""
    with storage_errors(storage.incoming, "listing the batches"):
        return list_batches(storage.incoming, storage.options)


@task(name="scan-incoming", **storage_retry_options())
def scan_incoming_task(storage: Storage) -> IncomingScan:
    """:func:`tasks.incoming.scan_incoming` of the dataset's incoming/ folder: its batches, the
    inputs refused as batches, and the paths ignored (each with the reason)."""
    with storage_errors(storage.incoming, "listing the batches"):
        return scan_incoming(storage.incoming, storage.options)
