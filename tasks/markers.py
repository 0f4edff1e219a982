"""Success markers: what scoring committed for a batch, with paths relative to the storage root.

A marker on storage records its input and output relative to the root
(``"output": "scored/<dataset>/date=YYYY-MM-DD/<batch_id>.parquet"``), so a copied root (``cp -a``,
an S3 prefix copy) or a root reached through another path (a symlink, ``x/../data``) reads its own
files, never the original's. In memory (what the tasks pass around and the flows summarise) the
same fields hold full URLs under the root the run was given.

Markers written before paths were relative hold full paths. :func:`read_marker` maps them onto the
current root through their ``scored/<dataset>/`` or ``incoming/<dataset>/`` part, and leaves a
path it cannot map as None: such a path is never deleted (a run deletes only inside its root).
"""

from __future__ import annotations

import logging
import os
import posixpath
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from models.storage import StorageOptions, filesystem, read_json, write_json_atomic
from tasks.io import PARQUET_SUFFIX, Storage, checksum, fingerprint
from tasks.records import ScoreMarker

logger = logging.getLogger("aeflow.markers")
MARKER_FORMAT = 2  # 1 (no field): full paths; 2: paths relative to the storage root
PATH_FIELDS = ("input_path", "output")


def _is_safe(relative: str) -> bool:
    parts = relative.split("/")
    return bool(relative) and not relative.startswith("/") and ".." not in parts and "" not in parts


def _from_legacy(layout: Storage, path: str) -> str | None:
    """The root-relative form of a full path from a format-1 marker: its part from
    ``scored/<dataset>/`` or ``incoming/<dataset>/`` on, or None when it has neither."""
    inside = layout.relative(path)
    if inside is not None:
        return inside
    text = (
        filesystem(path, layout.options)[1] if "://" in str(path) else str(path).replace("\\", "/")
    )
    found = None
    for area in ("scored", "incoming"):
        anchor = f"/{area}/{layout.dataset}/"
        at = ("/" + text).rfind(anchor)
        if at >= 0 and (found is None or at > found[0]):
            found = (at, ("/" + text)[at + 1 :])
    return found[1] if found else None


def to_storage(marker: dict[str, Any], layout: Storage) -> dict[str, Any]:
    """The marker as stored: input and output relative to the root."""
    stored = {**marker, "marker_format": MARKER_FORMAT}
    for key in PATH_FIELDS:
        if marker.get(key) is not None:
            relative = layout.relative(marker[key])
            if relative is None:
                raise ValueError(f"{key} {marker[key]} is outside the storage root {layout.root}")
            stored[key] = relative
    return stored


def from_storage(stored: dict[str, Any], layout: Storage) -> dict[str, Any]:
    """A stored marker with its paths as URLs under this root (None where a legacy path does not
    map onto it)."""
    marker = {k: v for k, v in stored.items() if k != "marker_format"}
    legacy = stored.get("marker_format", 1) < MARKER_FORMAT
    for key in PATH_FIELDS:
        value = stored.get(key)
        relative = None
        if isinstance(value, str) and value:
            relative = _from_legacy(layout, value) if legacy else value
        if relative is not None and not _is_safe(relative):
            relative = None
        marker[key] = layout.under_root(relative) if relative else None
    return marker


def read_marker(storage: Storage, batch_id: str) -> ScoreMarker | None:
    """The batch's success marker with URLs under this root, or None when it has none.

    A marker is written atomically, so one that is not a marker (bad JSON, missing fields) was
    damaged by hand or by the disk: it commits nothing, so the batch counts as not scored (the
    next run scores it again and rewrites the marker), with a warning naming the file."""
    url = storage.success_marker(batch_id)
    try:
        stored = read_json(url, storage.options)
        if stored is None:
            return None
        return ScoreMarker.from_dict(from_storage(stored, storage))
    except (
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
    ) as exc:  # JSONDecodeError is a ValueError
        logger.warning(
            "success marker %s is damaged (%s: %s): it commits nothing, so batch %r is scored "
            "again and the marker rewritten",
            url,
            type(exc).__name__,
            exc,
            batch_id,
        )
        return None


def write_marker(marker: ScoreMarker, storage: Storage) -> str:
    """Write the batch's marker atomically (paths made relative to the root); returns its URL."""
    url = storage.success_marker(marker.batch_id)
    stored = to_storage(marker.to_dict(), storage)
    return write_json_atomic(stored, url, storage.options)


def records_bytes_of(
    marker: ScoreMarker,
    path: str,
    options: StorageOptions = None,
    input_fingerprint: str | None = None,
) -> bool:
    """Whether a success marker records the batch's current bytes ("already scored these
    bytes"): the file metadata fingerprint (``input_fingerprint`` when the caller has it) decides
    when it matches; otherwise the sha256 of the bytes does, so only batches that look changed are
    read in full."""
    current = input_fingerprint or fingerprint(path, options)
    if marker.input_fingerprint and marker.input_fingerprint == current:
        return True
    return marker.input_sha256 == checksum(path, options)


def owned_output(layout: Storage, batch_id: str, relative: str | None) -> bool:
    """Whether ``relative`` names a scored file of ``batch_id`` inside this root's scored folder
    (``scored/<dataset>/date=*/<batch_id>.parquet``): the only kind of path scoring ever deletes."""
    if relative is None or not _is_safe(relative):
        return False
    parts = relative.split("/")
    return (
        len(parts) == 4
        and parts[:2] == ["scored", layout.dataset]
        and parts[2].startswith("date=")
        and parts[3] == f"{batch_id}{PARQUET_SUFFIX}"
    )


def same_file(first: str, second: str, options: StorageOptions = None) -> bool:
    """Whether two URLs are one file (local: the same inode, whatever the path spelling)."""
    fs_a, a = filesystem(first, options)
    fs_b, b = filesystem(second, options)
    if a.rstrip("/") == b.rstrip("/"):
        return True
    if fs_a.protocol != fs_b.protocol:
        return False
    if isinstance(fs_a, LocalFileSystem):
        try:
            return os.path.samefile(a, b)
        except OSError:
            return False
    return posixpath.normpath(a) == posixpath.normpath(b)
