"""What is waiting in incoming/: batches, their parts, and everything else with the reason.

The rules (docs/outputs.md, "Batches and their ids"):

- A ``*.parquet`` file (any case of the suffix) is one batch; its id is the name without the suffix.
- A folder is one batch; its id is the folder name, and its parts are the ``*.parquet`` files
  anywhere below it, except under names that start with ``.`` or ``_`` (Spark and Hadoop keep
  ``_temporary/``, ``_SUCCESS``, ``_committed_*`` and ``.crc`` files there: they are not data).
- Everything else is *ignored* and listed with the reason: names starting with ``.`` or ``_``
  (temporaries and writer bookkeeping), symbolic links (never followed: their target lies outside
  the storage root and moving a batch must never touch it), files that are not Parquet, and the
  non-data files inside batch folders.
- A batch whose id breaks a rule of :func:`batch_id_problem`, or that shares its id with another
  entry (``X.parquet`` and ``X/``), is *rejected*: the score flow quarantines it with the reason and
  keeps every input; it is never scored under a name that could collide or crash.
"""

from __future__ import annotations

import posixpath
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from models.storage import (
    NAME_MAX_BYTES,
    StorageOptions,
    filesystem,
    url_of,
)

PARQUET_SUFFIX = ".parquet"
# `<id>.parquet` (the scored file) is the longest name aeflow derives from an id.
MAX_BATCH_ID_BYTES = NAME_MAX_BYTES - len(PARQUET_SUFFIX)

HIDDEN = "hidden or temporary name (starts with '.' or '_'): writers' temporaries and bookkeeping"
SYMLINK = (
    "symbolic link: not followed (its target is outside the storage root and may change under a "
    "run); copy or move the data itself into incoming/"
)
NOT_PARQUET = "not a Parquet file: a batch is a *.parquet file or a folder of *.parquet parts"
NOT_A_PART = "not a Parquet part (*.parquet): a batch folder's other files are not read"
IN_PROGRESS = "a write in progress (only _temporary/ inside so far): scored once its parts appear"


@dataclass(frozen=True)
class BatchRef:
    """One batch in incoming/: a Parquet file, or a folder of Parquet parts."""

    batch_id: str
    path: str
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IgnoredInput:
    """A path under incoming/ that is neither a batch nor a part of one, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RejectedBatch:
    """Input that names a batch which cannot be scored as it is (an ambiguous or invalid id).

    ``paths`` are every input claiming ``batch_id``; all of them are quarantined together."""

    batch_id: str
    paths: tuple[str, ...]
    size_bytes: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "paths": list(self.paths)}


@dataclass(frozen=True)
class IncomingScan:
    """Everything under one incoming/ folder, each path in exactly one of the three lists."""

    batches: list[BatchRef] = field(default_factory=list)
    rejected: list[RejectedBatch] = field(default_factory=list)
    ignored: list[IgnoredInput] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": [b.to_dict() for b in self.batches],
            "rejected": [r.to_dict() for r in self.rejected],
            "ignored": [i.to_dict() for i in self.ignored],
        }


# ------------------------------------------------------------------------------------- the rules
def is_parquet_name(name: str) -> bool:
    return name.lower().endswith(PARQUET_SUFFIX) and len(name) > len(PARQUET_SUFFIX)


def _is_hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def batch_id_problem(batch_id: str) -> str | None:
    """Why ``batch_id`` cannot be used as a batch id, or None when it can.

    An id is used as a file and folder name under scored/, quarantine/ and their markers, in logs
    and in reports; it is never used as a pattern, so ``*``, ``?`` and ``[`` are plain characters.
    The rules: valid UTF-8 text, no control characters (a newline would split log lines and
    reports), at most :data:`MAX_BATCH_ID_BYTES` bytes (so ``<id>.parquet`` fits the 255-byte name
    limit of common file systems), and not starting with ``.`` or ``_`` (those are not batches).
    """
    try:
        encoded = batch_id.encode("utf-8")
    except UnicodeEncodeError:
        return (
            "the batch id is not valid UTF-8 text (the file name holds undecodable bytes); "
            "rename the file with UTF-8 characters"
        )
    if not batch_id:
        return "the batch id is empty; name the file <id>.parquet"
    controls = sorted({f"U+{ord(c):04X}" for c in batch_id if unicodedata.category(c) == "Cc"})
    if controls:
        return (
            f"the batch id holds control character(s) {', '.join(controls)}; rename the file "
            "without them"
        )
    if len(encoded) > MAX_BATCH_ID_BYTES:
        return (
            f"the batch id is {len(encoded)} bytes long, over the limit of {MAX_BATCH_ID_BYTES} "
            f"bytes (its output <id>{PARQUET_SUFFIX} must fit the {NAME_MAX_BYTES}-byte file-name "
            "limit); rename it shorter"
        )
    if _is_hidden(batch_id):
        return "the batch id starts with '.' or '_' (reserved for temporaries and bookkeeping)"
    return None


# ---------------------------------------------------------------------------------------- parts
def _entries(fs: Any, path: str) -> list[dict[str, Any]]:
    fs.invalidate_cache(path)  # object stores cache listings: ask the store itself
    return sorted(fs.ls(path, detail=True), key=lambda e: e["name"])


def _name(entry: dict[str, Any]) -> str:
    return posixpath.basename(entry["name"].rstrip("/"))


def _walk_parts(
    fs: Any, folder: str, like: str
) -> tuple[list[tuple[str, int]], list[IgnoredInput], bool]:
    """(parts as (url, bytes), ignored paths, whether a _temporary/ folder was seen) of a folder
    batch, depth first, in name order. Hidden names and links are not entered."""
    parts: list[tuple[str, int]] = []
    ignored: list[IgnoredInput] = []
    in_progress = False
    for entry in _entries(fs, folder):
        name, url = _name(entry), url_of(fs, entry["name"], like)
        if entry.get("islink"):
            ignored.append(IgnoredInput(url, SYMLINK))
        elif _is_hidden(name):
            in_progress |= name == "_temporary" and entry["type"] == "directory"
            ignored.append(IgnoredInput(url, HIDDEN))
        elif entry["type"] == "directory":
            below, skipped, nested = _walk_parts(fs, entry["name"], like)
            parts += below
            ignored += skipped
            in_progress |= nested
        elif entry["type"] == "file" and is_parquet_name(name):
            parts.append((url, int(entry.get("size") or 0)))
        else:
            ignored.append(IgnoredInput(url, NOT_A_PART))
    return parts, ignored, in_progress


def batch_files(path: str, options: StorageOptions = None) -> list[str]:
    """The Parquet files making up a batch (the file itself, or the parts of a folder), in order.

    A folder's parts follow the rules of this module: hidden names (``_temporary/``, ``.crc``,
    ``_SUCCESS``), links and non-Parquet files are not parts."""
    fs, inner = filesystem(path, options)
    if fs.isdir(inner):
        # sorted by path, as ever: checksums and fingerprints of earlier runs stay valid
        return sorted(url for url, _ in _walk_parts(fs, inner, path)[0])
    return [path]


# ------------------------------------------------------------------------------------------ scan
def scan_incoming(incoming: str, options: StorageOptions = None) -> IncomingScan:
    """Sort everything under ``incoming`` into batches, rejected batches and ignored paths (each
    list by batch id or path)."""
    fs, path = filesystem(incoming, options)
    if not fs.exists(path):
        return IncomingScan()
    claims: dict[str, list[BatchRef]] = {}
    ignored: list[IgnoredInput] = []
    for entry in _entries(fs, path):
        name, url = _name(entry), url_of(fs, entry["name"], incoming)
        if entry.get("islink"):
            ignored.append(IgnoredInput(url, SYMLINK))
        elif _is_hidden(name):
            ignored.append(IgnoredInput(url, HIDDEN))
        elif entry["type"] == "directory":
            parts, skipped, in_progress = _walk_parts(fs, entry["name"], incoming)
            ignored += skipped
            if not parts and in_progress:
                ignored.append(IgnoredInput(url, IN_PROGRESS))
                continue
            size = sum(bytes_ for _, bytes_ in parts)
            claims.setdefault(name, []).append(BatchRef(name, url, size))
        elif entry["type"] == "file" and is_parquet_name(name):
            batch_id = name[: -len(PARQUET_SUFFIX)]
            claims.setdefault(batch_id, []).append(
                BatchRef(batch_id, url, int(entry.get("size") or 0))
            )
        else:
            ignored.append(IgnoredInput(url, NOT_PARQUET))
    batches, rejected = [], []
    for batch_id, refs in sorted(claims.items()):
        problem = batch_id_problem(batch_id)
        if len(refs) > 1:
            names = [posixpath.basename(r.path.rstrip("/")) for r in refs]
            problem = (
                f"ambiguous batch id: {' and '.join(repr(n) for n in names)} all name batch "
                f"{batch_id!r}; rename all but one (each batch needs its own id), then release"
            )
        if problem:
            paths = tuple(r.path for r in refs)
            rejected.append(
                RejectedBatch(batch_id, paths, sum(r.size_bytes for r in refs), problem)
            )
        else:
            batches.append(refs[0])
    return IncomingScan(batches, rejected, sorted(ignored, key=lambda i: i.path))


def list_batches(incoming: str, options: StorageOptions = None) -> list[BatchRef]:
    """Batches waiting in an incoming folder that can be scored, sorted by batch id (see
    :func:`scan_incoming` for the rejected and ignored rest)."""
    return scan_incoming(incoming, options).batches
