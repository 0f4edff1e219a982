"""Quarantine: a rejected batch leaves incoming/ exactly once, with its report; list; release.

A batch's quarantine runs under the same per-batch lock as its scoring (:class:`tasks.locks.
BatchLock`), so of several runs that found the same malformed batch one moves it and the others
find it gone and report it as quarantined by another run: no run archives another's quarantine or
crashes on the missing input. The move copies the input, writes report.json and report.md, and
removes the input last, so a crash at any point loses nothing, and the next run finishes or redoes
it (see :func:`quarantine_inputs`).
"""

from __future__ import annotations

import datetime as dt
import posixpath
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from models.storage import is_temporary
from models.storage_errors import storage_errors
from tasks.artifacts import artifact_key, publish_markdown, run_logger
from tasks.incoming import RejectedBatch, scan_incoming
from tasks.io import (
    BatchRef,
    Storage,
    StorageOptions,
    batch_files,
    checksum,
    copy_tree,
    exists,
    filesystem,
    is_local,
    join,
    move_into_quarantine,
    read_json,
    remove,
    storage_retry_options,
    write_json_atomic,
    write_text_atomic,
)
from tasks.locks import BatchLock
from tasks.markdown import md_code
from tasks.records import QuarantineRecord
from tasks.validation.outcome import ValidationOutcome, precheck_failure, utc_now
from tasks.validation.prechecks import footer_rows
from tasks.validation.validator import as_batch

QUARANTINED = "quarantined"
# Another run moved the batch first (or it left incoming/ otherwise): nothing was done here.
ELSEWHERE = "quarantined_elsewhere"


class ReleaseError(ValueError):
    """A quarantined batch that cannot be released as asked; the message says why and what to do."""


def _as_outcome(outcome: ValidationOutcome | dict[str, Any]) -> ValidationOutcome:
    return (
        outcome if isinstance(outcome, ValidationOutcome) else ValidationOutcome.from_dict(outcome)
    )


def _name(url: str) -> str:
    return posixpath.basename(str(url).rstrip("/").replace("\\", "/"))


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _move(src: str, dest: str, options: StorageOptions) -> None:
    copy_tree(src, dest, options)
    remove(src, options)


def _archive_folder(storage: Storage, batch_id: str, label: str) -> str:
    """Where a superseded or released quarantine folder is kept:
    ``quarantine/<dataset>/_archive/<batch_id>/<stamp>-<label>``."""
    return join(storage.quarantine_archive(batch_id), f"{_stamp()}-{label}")


def _describe_input(path: str, options: StorageOptions) -> dict[str, Any]:
    fs, inner = filesystem(path, options)
    files = batch_files(path, options)
    return {
        "name": _name(path),
        "bytes": sum(fs.size(filesystem(f, options)[1]) for f in files),
        "files": len(files),
        "sha256": checksum(path, options),
        "kind": "folder" if fs.isdir(inner) else "file",
    }


def _same_inputs(report: dict[str, Any], inputs: list[dict[str, Any]]) -> bool:
    kept = report.get("inputs") or ([report["input"]] if report.get("input") else [])
    return sorted((i.get("name"), i.get("sha256")) for i in kept) == sorted(
        (i["name"], i["sha256"]) for i in inputs
    )


def _remove_temporaries(folder: str, options: StorageOptions) -> None:
    """Temporaries an interrupted copy or report write left in a quarantine folder (local only:
    object-store writes stage on the writer's disk)."""
    if not is_local(folder):
        return
    fs, inner = filesystem(folder, options)
    for file in fs.find(inner):
        if is_temporary(posixpath.basename(file)):
            fs.rm(file)


def _markdown(outcome: ValidationOutcome, quarantine_dir: str, batch_id: str) -> str:
    return outcome.report_markdown() + (
        f"\nThe untouched input is in {md_code(join(quarantine_dir, 'input'))}. Fix the data or "
        f"the suite, then {md_code(f'aeflow quarantine release {batch_id} --config FILE')}.\n"
    )


def quarantine_inputs(
    batch_id: str,
    paths: list[str] | tuple[str, ...],
    outcome: ValidationOutcome | dict[str, Any],
    *,
    storage: Storage,
    lock_timeout_s: float = 3600.0,
) -> QuarantineRecord:
    """Move every input of batch ``batch_id`` into its quarantine folder
    (``quarantine/<dataset>/<batch_id>/``) with report.json and report.md, exactly once, under
    the batch's lock (the one scoring takes).

    - None of ``paths`` left in incoming/: another run moved them; nothing is done and the record
      says ``"status": "quarantined_elsewhere"``.
    - A folder left by an interrupted quarantine without report.json is a partial copy of inputs
      still in incoming/: it is removed and the move redone.
    - A folder whose report.json records these very inputs (same names and sha256) was interrupted
      after its report: the move is finished (temporaries removed, inputs removed).
    - A folder of an earlier, different delivery under this id is archived as ``superseded``.

    Returns the :class:`~tasks.records.QuarantineRecord` (``rows`` None: unknown). Inside a
    Prefect run it is logged, and a batch moved here gets a Markdown artifact naming its folder.
    """
    outcome = _as_outcome(outcome)
    quarantine_dir, options = storage.quarantine(batch_id), storage.options
    with (
        storage_errors(quarantine_dir, f"quarantining batch {batch_id!r}"),
        BatchLock(storage.scoring_lock(batch_id), options, lock_timeout_s),
    ):
        record = QuarantineRecord(
            batch_id=batch_id,
            status=QUARANTINED,
            rows=outcome.rows,
            quarantine_dir=quarantine_dir,
            reason=outcome.reason,
        )
        present = [path for path in paths if exists(path, options)]
        if not present:
            record = record.replace(
                status=ELSEWHERE, reason="no longer in incoming/: another run quarantined it first"
            )
        else:
            _move_inputs(present, outcome, record, storage)
    _announce(record, outcome)
    return record


def _move_inputs(
    present: list[str], outcome: ValidationOutcome, record: QuarantineRecord, storage: Storage
) -> None:
    """The move itself, under the batch's lock: ``present`` are the inputs still in incoming/."""
    batch_id, quarantine_dir, options = record.batch_id, record.quarantine_dir, storage.options
    inputs = [_describe_input(path, options) for path in present]
    existing = read_json(join(quarantine_dir, "report.json"), options)
    if exists(quarantine_dir, options):
        if existing is None:
            remove(quarantine_dir, options)
        elif _same_inputs(existing, inputs):
            _remove_temporaries(quarantine_dir, options)
            if not exists(join(quarantine_dir, "report.md"), options):
                markdown = _markdown(outcome, quarantine_dir, batch_id)
                write_text_atomic(markdown, join(quarantine_dir, "report.md"), options)
            for path in present:
                remove(path, options)
            return
        else:
            archived = _archive_folder(storage, batch_id, "superseded")
            _move(quarantine_dir, archived, options)
    report = {
        **outcome.to_dict(),
        "quarantined_at": utc_now(),
        "input": inputs[0],
        "inputs": inputs,
    }
    move_into_quarantine(
        present, quarantine_dir, report, _markdown(outcome, quarantine_dir, batch_id), options
    )


def quarantine(
    batch: BatchRef | dict[str, Any],
    outcome: ValidationOutcome | dict[str, Any],
    *,
    storage: Storage,
    lock_timeout_s: float = 3600.0,
) -> QuarantineRecord:
    """Move a rejected batch into its quarantine folder with report.json and report.md, exactly
    once (see :func:`quarantine_inputs`). The input is kept byte for byte (its sha256 is in the
    report)."""
    batch = as_batch(batch)
    return quarantine_inputs(
        batch.batch_id, [batch.path], outcome, storage=storage, lock_timeout_s=lock_timeout_s
    )


def rejected_outcome(rejected: RejectedBatch, options: StorageOptions = None) -> ValidationOutcome:
    """The quarantine report of a batch whose id cannot be used (ambiguous or against the id
    rules, see tasks.incoming): one critical pre-check naming the rule and every input."""
    names = [_name(path) for path in rejected.paths]
    failure = precheck_failure(
        "batch_id",
        rejected.reason,
        expected="one input per batch id, following the batch-id rules (docs/outputs.md)",
        observed=f"input(s) {names}",
    )
    return ValidationOutcome(
        rejected.batch_id,
        "quarantined",
        False,
        footer_rows(rejected.paths, options, "counting the rows of a rejected batch"),
        [failure],
        [],
        f"quarantined, batch id refused: {rejected.reason}",
        checks=0,
        validated_at=utc_now(),
    )


# ---------------------------------------------------------------------------------- listing
def list_quarantined(storage: Storage) -> list[dict[str, Any]]:
    """The batches waiting in quarantine, by batch id, with the reason from each report."""
    quarantine_root, options = storage.quarantine(), storage.options
    fs, inner = filesystem(quarantine_root, options)
    if not fs.exists(inner):
        return []
    entries = []
    for entry in fs.ls(inner, detail=True):
        name = posixpath.basename(entry["name"].rstrip("/"))
        if entry["type"] != "directory" or name.startswith((".", "_")):
            continue
        folder = join(quarantine_root, name)
        report = read_json(join(folder, "report.json"), options)
        if report is None:
            entries.append(
                {
                    "batch_id": name,
                    "folder": folder,
                    "rows": None,
                    "quarantined_at": None,
                    "critical": None,
                    "warnings": None,
                    "reason": "report.json missing: the quarantine was interrupted; re-run score",
                }
            )
            continue
        entries.append(
            {
                "batch_id": report.get("batch_id", name),
                "folder": folder,
                "rows": report.get("rows"),
                "quarantined_at": report.get("quarantined_at"),
                "critical": len(report.get("critical") or []),
                "warnings": len(report.get("warnings") or []),
                "reason": report.get("reason", ""),
            }
        )
    return sorted(entries, key=lambda e: e["batch_id"])


def quarantined_input(quarantine_dir: str, options: StorageOptions = None) -> str:
    """The kept input of a quarantined batch (a file or a folder of parts)."""
    fs, inner = filesystem(join(quarantine_dir, "input"), options)
    names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(inner)] if fs.exists(inner) else []
    names = sorted(n for n in names if not n.startswith("."))
    if len(names) > 1:
        raise ReleaseError(
            f"{quarantine_dir}/input holds {len(names)} inputs {names} that claimed one batch id; "
            "rename all but one and put them back in incoming/ yourself, or release one with "
            "--input PATH (e.g. its copy in that folder)"
        )
    if len(names) != 1:
        raise ReleaseError(
            f"{quarantine_dir}/input should hold exactly the one quarantined input, found {names}"
        )
    return join(quarantine_dir, "input", names[0])


def release_quarantined(
    batch_id: str,
    *,
    storage: Storage,
    validate: Any,
    replacement: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Put a quarantined batch back in incoming/ so the next run validates and scores it.

    ``validate(BatchRef) -> ValidationOutcome`` re-checks what is about to be released (the kept
    input, or ``replacement``, a fixed file or folder): a batch that would be quarantined again is
    refused unless ``force``. The quarantine folder moves to ``_archive/<batch_id>/`` with a
    release.json, so the original input and report are never lost. Runs under the batch's lock.
    Returns what was done.
    """
    quarantine_dir, options = storage.quarantine(batch_id), storage.options
    incoming = storage.incoming
    if read_json(storage.quarantine_report(batch_id), options) is None:
        waiting = [e["batch_id"] for e in list_quarantined(storage)]
        raise ReleaseError(
            f"no quarantined batch {batch_id!r} in {storage.quarantine()}; "
            f"quarantined now: {waiting}"
        )
    with BatchLock(storage.scoring_lock(batch_id), options):
        original = quarantined_input(quarantine_dir, options) if replacement is None else None
        source = replacement or original
        fs, source_inner = filesystem(source, options)
        if not fs.exists(source_inner):
            raise ReleaseError(f"replacement {source} does not exist")
        if original is not None:
            name = _name(original)
        else:
            name = batch_id if fs.isdir(source_inner) else f"{batch_id}.parquet"
        destination = join(incoming, name)
        scan = scan_incoming(incoming, options)
        claimed = {b.batch_id for b in scan.batches} | {r.batch_id for r in scan.rejected}
        if batch_id in claimed or exists(destination, options):
            raise ReleaseError(
                f"batch {batch_id!r} is already waiting in {incoming}; score it or remove it first"
            )
        size = sum(fs.size(filesystem(f, options)[1]) for f in batch_files(source, options))
        check = validate(BatchRef(batch_id, source, size))
        if not check.accepted and not force:
            raise ReleaseError(
                f"{batch_id} would be quarantined again ({check.reason}). Fix the data (pass the "
                "fixed file with --input) or the suite, or release anyway with --force."
            )
        copy_tree(source, destination, options)
        archived = _archive_folder(storage, batch_id, "released")
        _move(quarantine_dir, archived, options)
        record = {
            "batch_id": batch_id,
            "released_at": utc_now(),
            "released_to": destination,
            "source": "replacement" if replacement else "quarantined input",
            "replacement": replacement,
            "forced": bool(force and not check.accepted),
            "revalidation": check.to_dict(),
        }
        write_json_atomic(record, join(archived, "release.json"), options)
        return {**record, "archived_to": archived}


# ------------------------------------------------------------------------------ Prefect tasks
def _announce(record: QuarantineRecord, outcome: ValidationOutcome) -> None:
    """Inside a Prefect run: log the move and publish a Markdown artifact that names the folder
    (a batch another run moved first gets a log line only). Outside one, nothing is said."""
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    if record.status != QUARANTINED:
        run_logger().info("batch %s: %s", record.batch_id, record.reason)
        return
    folder = record.quarantine_dir
    run_logger().warning("batch %s quarantined in %s: %s", record.batch_id, folder, record.reason)
    publish_markdown(
        artifact_key("quarantine", record.batch_id),
        f"Quarantined in {md_code(folder)} (input, report.json, report.md).\n\n"
        + outcome.report_markdown(),
        f"batch {record.batch_id} quarantined: {record.reason}"[:500],
    )


def quarantine_rejected(rejected: RejectedBatch, *, storage: Storage) -> QuarantineRecord:
    """Quarantine every input of a batch whose id was refused (see tasks.incoming)."""
    where = storage.quarantine(rejected.batch_id)
    with storage_errors(where, f"quarantining batch {rejected.batch_id!r}"):
        outcome = rejected_outcome(rejected, storage.options)
    return quarantine_inputs(rejected.batch_id, rejected.paths, outcome, storage=storage)


quarantine_task = task(
    quarantine, name="quarantine-batch", cache_policy=NO_CACHE, **storage_retry_options()
)
quarantine_rejected_task = task(
    quarantine_rejected,
    name="quarantine-rejected-batch",
    cache_policy=NO_CACHE,
    **storage_retry_options(),
)
