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
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from models.storage import is_temporary
from models.storage_errors import as_storage_error, storage_errors
from tasks.incoming import RejectedBatch, scan_incoming
from tasks.io import (
    BatchRef,
    StorageLayout,
    StorageOptions,
    batch_files,
    checksum,
    copy_tree,
    count_rows,
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
from tasks.validate import (
    ReleaseError,
    ValidationOutcome,
    _artifact_key,
    _now,
    _precheck,
    _publish_markdown,
    _run_logger,
)

QUARANTINED = "quarantined"
# Another run moved the batch first (or it left incoming/ otherwise): nothing was done here.
ELSEWHERE = "quarantined_elsewhere"


def _as_batch(batch: BatchRef | dict[str, Any]) -> BatchRef:
    return batch if isinstance(batch, BatchRef) else BatchRef(**batch)


def _as_outcome(outcome: ValidationOutcome | dict[str, Any]) -> ValidationOutcome:
    return (
        outcome if isinstance(outcome, ValidationOutcome) else ValidationOutcome.from_dict(outcome)
    )


def _parent(url: str) -> str:
    url = str(url).rstrip("/")
    if is_local(url) and not url.startswith("file://"):
        return str(Path(url).parent)
    return posixpath.dirname(url)


def _name(url: str) -> str:
    return posixpath.basename(str(url).rstrip("/").replace("\\", "/"))


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _move(src: str, dest: str, options: StorageOptions) -> None:
    copy_tree(src, dest, options)
    remove(src, options)


def archive_folder(quarantine_dir: str, batch_id: str, label: str) -> str:
    """Where a superseded or released quarantine folder is kept: ``_archive/<batch_id>/<stamp>-<label>``."""
    return join(_parent(quarantine_dir), "_archive", batch_id, f"{_stamp()}-{label}")


def batch_lock_url(quarantine_dir: str, batch_id: str) -> str:
    """The batch's lock (the one scoring takes) for ``<root>/quarantine/<dataset>/<batch_id>``."""
    dataset_folder = _parent(quarantine_dir)
    root = _parent(_parent(dataset_folder))
    return StorageLayout(root, _name(dataset_folder)).scoring_lock(batch_id)


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
    quarantine_dir: str,
    outcome: ValidationOutcome | dict[str, Any],
    options: StorageOptions = None,
    *,
    lock_timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Move every input of batch ``batch_id`` into ``quarantine_dir`` with report.json and
    report.md, exactly once, under the batch's lock.

    - None of ``paths`` left in incoming/: another run moved them; nothing is done and the record
      says ``"status": "quarantined_elsewhere"``.
    - A folder left by an interrupted quarantine without report.json is a partial copy of inputs
      still in incoming/: it is removed and the move redone.
    - A folder whose report.json records these very inputs (same names and sha256) was interrupted
      after its report: the move is finished (temporaries removed, inputs removed).
    - A folder of an earlier, different delivery under this id is archived as ``superseded``.

    Returns ``{"batch_id", "status", "rows", "quarantine_dir", "reason"}`` (rows None: unknown).
    """
    outcome = _as_outcome(outcome)
    with (
        storage_errors(quarantine_dir, f"quarantining batch {batch_id!r}"),
        BatchLock(batch_lock_url(quarantine_dir, batch_id), options, lock_timeout_s),
    ):
        record = {
            "batch_id": batch_id,
            "status": QUARANTINED,
            "rows": outcome.rows,
            "quarantine_dir": quarantine_dir,
            "reason": outcome.reason,
        }
        present = [path for path in paths if exists(path, options)]
        if not present:
            return {
                **record,
                "status": ELSEWHERE,
                "reason": "no longer in incoming/: another run quarantined it first",
            }
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
                return record
            else:
                archived = archive_folder(quarantine_dir, batch_id, "superseded")
                _move(quarantine_dir, archived, options)
        report = {
            **outcome.to_dict(),
            "quarantined_at": _now(),
            "input": inputs[0],
            "inputs": inputs,
        }
        move_into_quarantine(
            present, quarantine_dir, report, _markdown(outcome, quarantine_dir, batch_id), options
        )
        return record


def quarantine(
    batch: BatchRef | dict[str, Any],
    quarantine_dir: str,
    outcome: ValidationOutcome | dict[str, Any],
    options: StorageOptions = None,
    *,
    lock_timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Move a rejected batch into ``quarantine_dir`` with report.json and report.md, exactly once
    (see :func:`quarantine_inputs`). The input is kept byte for byte (its sha256 is in the report).

    Returns {"batch_id", "status", "rows", "quarantine_dir", "reason"}.
    """
    batch = _as_batch(batch)
    return quarantine_inputs(
        batch.batch_id,
        [batch.path],
        quarantine_dir,
        outcome,
        options,
        lock_timeout_s=lock_timeout_s,
    )


def _known_rows(paths: tuple[str, ...], options: StorageOptions) -> int | None:
    """Rows the inputs' Parquet footers announce, None (unknown) when one cannot be read."""
    total = 0
    for path in paths:
        try:
            total += count_rows(path, options)
        except Exception as exc:  # an unreadable footer: unknown; storage trouble: raise
            problem = as_storage_error(exc, path, "counting the rows of a rejected batch")
            if problem is not None:
                raise problem from exc
            return None
    return total


def rejected_outcome(rejected: RejectedBatch, options: StorageOptions = None) -> ValidationOutcome:
    """The quarantine report of a batch whose id cannot be used (ambiguous or against the id
    rules, see tasks.incoming): one critical pre-check naming the rule and every input."""
    names = [_name(path) for path in rejected.paths]
    failure = _precheck(
        "batch_id",
        rejected.reason,
        expected="one input per batch id, following the batch-id rules (docs/outputs.md)",
        observed=f"input(s) {names}",
    )
    return ValidationOutcome(
        rejected.batch_id,
        "quarantined",
        False,
        _known_rows(rejected.paths, options),
        [failure],
        [],
        f"quarantined, batch id refused: {rejected.reason}",
        checks=0,
        validated_at=_now(),
    )


# ---------------------------------------------------------------------------------- listing
def list_quarantined(quarantine_root: str, options: StorageOptions = None) -> list[dict[str, Any]]:
    """The batches waiting in quarantine, by batch id, with the reason from each report."""
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
    quarantine_root: str,
    incoming: str,
    validate: Any,
    replacement: str | None = None,
    force: bool = False,
    options: StorageOptions = None,
) -> dict[str, Any]:
    """Put a quarantined batch back in incoming/ so the next run validates and scores it.

    ``validate(BatchRef) -> ValidationOutcome`` re-checks what is about to be released (the kept
    input, or ``replacement``, a fixed file or folder): a batch that would be quarantined again is
    refused unless ``force``. The quarantine folder moves to ``_archive/<batch_id>/`` with a
    release.json, so the original input and report are never lost. Runs under the batch's lock.
    Returns what was done.
    """
    quarantine_dir = join(quarantine_root, batch_id)
    if read_json(join(quarantine_dir, "report.json"), options) is None:
        waiting = [e["batch_id"] for e in list_quarantined(quarantine_root, options)]
        raise ReleaseError(
            f"no quarantined batch {batch_id!r} in {quarantine_root}; quarantined now: {waiting}"
        )
    with BatchLock(batch_lock_url(quarantine_dir, batch_id), options):
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
        archived = archive_folder(quarantine_dir, batch_id, "released")
        _move(quarantine_dir, archived, options)
        record = {
            "batch_id": batch_id,
            "released_at": _now(),
            "released_to": destination,
            "source": "replacement" if replacement else "quarantined input",
            "replacement": replacement,
            "forced": bool(force and not check.accepted),
            "revalidation": check.to_dict(),
        }
        write_json_atomic(record, join(archived, "release.json"), options)
        return {**record, "archived_to": archived}


# ------------------------------------------------------------------------------ Prefect tasks
def _publish(moved: dict[str, Any], outcome: ValidationOutcome) -> None:
    quarantine_dir = moved["quarantine_dir"]
    _run_logger().warning(
        "batch %s quarantined in %s: %s", moved["batch_id"], quarantine_dir, moved["reason"]
    )
    _publish_markdown(
        _artifact_key("quarantine", moved["batch_id"]),
        f"Quarantined in {md_code(quarantine_dir)} (input, report.json, report.md).\n\n"
        + outcome.report_markdown(),
        f"batch {moved['batch_id']} quarantined: {moved['reason']}"[:500],
    )


def _reported(moved: dict[str, Any], outcome: ValidationOutcome) -> dict[str, Any]:
    if moved["status"] == QUARANTINED:
        _publish(moved, outcome)
    else:
        _run_logger().info("batch %s: %s", moved["batch_id"], moved["reason"])
    return moved


@task(name="quarantine-batch", cache_policy=NO_CACHE, **storage_retry_options())
def quarantine_task(
    batch: BatchRef | dict[str, Any],
    quarantine_dir: str,
    outcome: ValidationOutcome | dict[str, Any],
    options: StorageOptions = None,
) -> dict[str, Any]:
    """`quarantine` as a Prefect task, plus a markdown artifact that names the folder.

    Returns {"batch_id", "status", "rows", "quarantine_dir", "reason"}.
    """
    report = _as_outcome(outcome)
    return _reported(quarantine(batch, quarantine_dir, report, options), report)


@task(name="quarantine-rejected-batch", cache_policy=NO_CACHE, **storage_retry_options())
def quarantine_rejected_task(
    rejected: dict[str, Any], quarantine_dir: str, options: StorageOptions = None
) -> dict[str, Any]:
    """Quarantine every input of a batch whose id was refused (:class:`RejectedBatch` as a dict)."""
    refused = RejectedBatch(
        rejected["batch_id"], tuple(rejected["paths"]), rejected["size_bytes"], rejected["reason"]
    )
    with storage_errors(quarantine_dir, f"quarantining batch {refused.batch_id!r}"):
        outcome = rejected_outcome(refused, options)
    moved = quarantine_inputs(refused.batch_id, refused.paths, quarantine_dir, outcome, options)
    return _reported(moved, outcome)
