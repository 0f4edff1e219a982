"""The storage a command is about to use, checked before Prefect starts or a batch is touched.

A run against storage it cannot use should stop at once, in one line that names the location and
the fix, not fail batch by batch after validating and scoring each (a read-only output folder) or
report an empty registry (a bucket that does not exist). Three checks, in this order:

- the credentials: a refused credential is a :class:`StorageAccessDenied` naming the URL;
- the bucket (S3 and S3-compatible stores): aeflow never creates buckets, so a root in a bucket
  that does not exist is a :class:`StorageRootMissing`, whatever the command (a read would find
  nothing, a write would try to create the bucket);
- for a command that writes, on a local or mounted folder: each folder it writes under can take a
  file (a read-only mount, a folder without write permission), probed by creating and removing a
  hidden file (``.aeflow-write-check-<hex>``) there, or in its nearest existing parent (no folder
  is made). Object stores are not probed (a PUT and a DELETE per run): their refusal of a write is
  an access error the run reports with its URL.

A store that does not answer at all is left to the run, which retries (docs/outputs.md).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from models.storage_errors import DENIED, StorageError, as_storage_error, storage_problem

# fsspec protocols whose first path component is a bucket that aeflow never creates, and whose
# store can say "no such bucket" (S3 and S3-compatible stores, through s3fs).
BUCKET_PROTOCOLS = frozenset({"s3", "s3a"})


# The folders each kind of command writes under (the storage layout's names).
SCORE_WRITES = ("incoming", "scored", "quarantine")  # quarantining moves inputs out of incoming/
TRAIN_WRITES = ("models", "reports")
NIGHTLY_WRITES = (*SCORE_WRITES, *TRAIN_WRITES)


class StorageRootMissing(StorageError):
    """The storage root's bucket (container) does not exist."""


class StorageNotWritable(StorageError):
    """A local folder a command writes under cannot take a file (read-only, no permission)."""


def check_storage(cfg: Any, layout: Any, writes: Iterable[str] = ()) -> None:
    """Raise a :class:`StorageError` naming the URL and the fix when the storage refuses the
    credentials, its bucket does not exist, or one of the folders ``writes`` (the layout's names:
    "scored", "quarantine", ...) cannot take a file. Nothing else is raised: a store that does not
    answer is left to the run."""
    from tasks.io import exists, filesystem, is_local

    options = cfg.storage.options
    try:
        exists(layout.incoming, options)
    except Exception as exc:
        if storage_problem(exc) == DENIED:
            raise as_storage_error(exc, layout.incoming, "listing the batches") from exc
        return  # unreachable: the run retries and names it
    if is_local(layout.root):
        for name in writes:
            _check_writable(_folder(layout, name), cfg.source)
        return
    fs, path = filesystem(layout.root, options)
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if not protocols & BUCKET_PROTOCOLS:
        return
    bucket, _, prefix = path.strip("/").partition("/")
    # One listing under the root: what every run needs the right to do anyway. (fs.exists(bucket)
    # probes HeadBucket, which a key scoped to a prefix may not be allowed: it would read as
    # "no such bucket".) Only the store's own "no such bucket" answer counts as missing.
    try:
        fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except FileNotFoundError:
        raise StorageRootMissing(
            f"storage {layout.root}: the bucket {bucket!r} does not exist"
            f"{_endpoint(options)}; create it (aeflow never creates buckets), or fix "
            f"storage.root in {cfg.source or 'the config'}",
            layout.root,
        ) from None
    except Exception:  # unreachable or refused: the run reports it with its URL
        return


def _folder(layout: Any, name: str) -> str:
    """The URL of the layout's folder ``name`` ("scored", "quarantine", "reports", ...)."""
    folder = getattr(layout, name)
    return folder() if callable(folder) else folder


def _endpoint(options: dict[str, Any] | None) -> str:
    endpoint = ((options or {}).get("client_kwargs") or {}).get("endpoint_url")
    return f" at {endpoint}" if endpoint else ""


def _check_writable(folder: str, source: str | None) -> None:
    """Create and remove a hidden file in ``folder``, or in its nearest existing parent when the
    run has not made it yet (nothing is left behind: no file, no folder)."""
    target = Path(str(folder).removeprefix("file://"))
    existing = target
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        probe = existing / f".aeflow-write-check-{uuid.uuid4().hex}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StorageNotWritable(
            f"storage {folder} cannot be written ({reason}: {existing}); nothing "
            f"was read or moved: make the folder writable (a read-only mount, its permissions, "
            f"a full disk), or point storage.root in {source or 'the config'} at one that is",
            str(folder),
        ) from exc
