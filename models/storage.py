"""fsspec storage primitives shared by the registry and the I/O tasks.

Every function takes a location as a local path or an fsspec URL (``s3://bucket/x``, ``file:///x``,
``memory://x``) plus fsspec storage options. Writes are atomic: a temporary name in the same folder
committed by rename on file systems, a single (possibly multipart) PUT on object stores, where an
object only appears once it is complete.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from glob import has_magic
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

StorageOptions = dict[str, Any] | None

# The longest file name (one path component) most file systems allow, in bytes (ext4, xfs, APFS,
# NTFS in UTF-16 units). Names aeflow derives are kept within it (see bounded_name).
NAME_MAX_BYTES = 255
TEMPORARY_MARK = ".tmp-"
_RANDOM_HEX = 32  # uuid4().hex
# Object-store writes stage their bytes in a local file named after the writing process, so a run
# can tell (and remove) the files of writers that were killed (see remove_orphaned_uploads).
UPLOAD_PREFIX = "aeflow-"
UPLOAD_SUFFIX = ".part"
_HEX = re.compile("[0-9a-f]+")
_TEMPORARY = re.compile(rf"\..*{re.escape(TEMPORARY_MARK)}[0-9a-f]+")
_UPLOAD_NAME = re.compile(
    rf"{UPLOAD_PREFIX}(\d+)-[0-9a-f]{{{_RANDOM_HEX}}}{re.escape(UPLOAD_SUFFIX)}"
)


def filesystem(url: str, options: StorageOptions = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec file system for ``url`` and the path inside it (protocol stripped)."""
    fs, path = fsspec.core.url_to_fs(str(url), **(options or {}))
    return fs, path


def is_local(url: str) -> bool:
    return "://" not in str(url) or str(url).startswith("file://")


def join(base: str, *parts: str) -> str:
    """Join path parts with '/', keeping a URL's protocol intact."""
    base = str(base)
    if is_local(base) and not base.startswith("file://"):
        return str(Path(base, *parts))
    return posixpath.join(base.rstrip("/"), *parts)


def url_of(fs: fsspec.AbstractFileSystem, path: str, like: str) -> str:
    """Turn a path listed by ``fs`` back into a URL of the same kind as ``like``."""
    if isinstance(fs, LocalFileSystem) and not str(like).startswith("file://"):
        return path
    return fs.unstrip_protocol(path)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def bounded_name(stem: str, suffix: str = "", limit: int = NAME_MAX_BYTES) -> str:
    """``stem + suffix`` when it fits in ``limit`` bytes; otherwise the stem's first bytes, ``~``
    and 16 hex of the stem's sha256, then the suffix: unique per stem and always within limit."""
    name = stem + suffix
    if len(_utf8(name)) <= limit:
        return name
    digest = hashlib.sha256(_utf8(stem)).hexdigest()[:16]
    budget = limit - len(_utf8(suffix)) - 1 - len(digest)
    head = _utf8(stem)[:budget].decode("utf-8", "ignore")  # never split a character
    return f"{head}~{digest}{suffix}"


def temporary_prefix(name: str) -> str:
    """The start of the name of every local atomic-write temporary of ``name`` (a file name in the
    same folder): ``.<name>.tmp-``, shortened as :func:`bounded_name` does when the temporary's
    full name (the prefix and 32 random hex) would pass the file-name limit."""
    head = bounded_name(f".{name}", TEMPORARY_MARK, NAME_MAX_BYTES - _RANDOM_HEX)
    return head


def is_temporary_of(candidate: str, name: str) -> bool:
    """Whether the file name ``candidate`` is an atomic-write temporary of the file name ``name``.

    Exact: the prefix and then hex digits only (no '.'), so a batch named ``*`` or ``a[1]``
    matches only its own temporaries (no glob pattern is ever built from a name), and ``a`` never
    matches the temporaries of ``a.tmp-x``."""
    prefix = temporary_prefix(name)
    return candidate.startswith(prefix) and _HEX.fullmatch(candidate[len(prefix) :]) is not None


def is_temporary(candidate: str) -> bool:
    """Whether a file name looks like any local atomic-write temporary (``.<...>.tmp-<hex>``)."""
    return _TEMPORARY.fullmatch(candidate) is not None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (whoever owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def remove_orphaned_uploads(folder: str | None = None) -> list[str]:
    """Remove the local staging files of object-store writes whose writing process is gone (killed
    by SIGKILL or power loss before it could clean up). Files of live processes are left alone,
    so concurrent runs on this machine are safe. Returns the removed paths."""
    folder = folder or tempfile.gettempdir()
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), f"{UPLOAD_PREFIX}*{UPLOAD_SUFFIX}")):
        found = _UPLOAD_NAME.fullmatch(os.path.basename(path))
        if found and not process_alive(int(found.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    return removed


def _fsync_folder(folder: str) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows): the rename is still atomic
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_open(url: str, options: StorageOptions = None) -> Iterator[IO[bytes]]:
    """Open ``url`` for binary writing so that it appears complete or not at all.

    On a local file system the data goes to a hidden temporary file in the destination folder
    (:func:`temporary_prefix`) that is fsynced and renamed over the destination on success, and the
    folder is fsynced so the rename is durable. On an object store it goes to a local
    temporary file (named after this process, see :func:`remove_orphaned_uploads`) that is uploaded
    with one PUT on success. An exception removes the temporary file
    and leaves any previous version of the destination untouched.
    """
    fs, path = filesystem(url, options)
    if isinstance(fs, LocalFileSystem):
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, temporary_prefix(os.path.basename(path)) + uuid.uuid4().hex)
        try:
            with open(tmp, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            _fsync_folder(folder)  # the rename itself survives a power loss only once synced
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    tmp = os.path.join(
        tempfile.gettempdir(), f"{UPLOAD_PREFIX}{os.getpid()}-{uuid.uuid4().hex}{UPLOAD_SUFFIX}"
    )
    try:
        with open(tmp, "wb") as handle:
            yield handle
        fs.put_file(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_bytes_atomic(data: bytes, url: str, options: StorageOptions = None) -> str:
    with atomic_open(url, options) as handle:
        handle.write(data)
    return url


def write_json_atomic(obj: Any, url: str, options: StorageOptions = None) -> str:
    """Write JSON (sorted keys, indented: diff-friendly) atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return write_bytes_atomic(text.encode("utf-8"), url, options)


def write_text_atomic(text: str, url: str, options: StorageOptions = None) -> str:
    return write_bytes_atomic(text.encode("utf-8"), url, options)


class DamagedJsonError(ValueError):
    """A stored JSON file that is not JSON (a hand edit, a partial copy, a failing disk); the
    message names it."""


def read_json(url: str, options: StorageOptions = None) -> Any | None:
    """Parsed JSON at ``url``, or None when there is no such file.

    Raises :class:`DamagedJsonError` naming ``url`` when the file is not UTF-8 JSON."""
    fs, path = filesystem(url, options)
    try:
        with fs.open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedJsonError(
            f"{url} is damaged: not valid JSON ({exc}); restore it from a backup or an earlier "
            "copy (aeflow writes it whole or not at all, so a partial file comes from outside)"
        ) from exc


def exists(url: str, options: StorageOptions = None) -> bool:
    fs, path = filesystem(url, options)
    return fs.exists(path)


def copy_tree(src: str, dest: str, options: StorageOptions = None) -> None:
    """Copy a file or folder byte for byte between any two locations of the same storage."""
    src_fs, src_path = filesystem(src, options)
    dest_fs, dest_path = filesystem(dest, options)
    local = isinstance(src_fs, LocalFileSystem) and isinstance(dest_fs, LocalFileSystem)
    if local and os.path.islink(src_path):
        # A link is copied as a link: its target (outside what aeflow owns) is never read or moved.
        os.makedirs(os.path.dirname(dest_path), exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(dest_path)
        os.symlink(os.readlink(src_path), dest_path)
        return
    if src_fs.isdir(src_path):
        for file in src_fs.find(src_path):  # links are listed as files, never entered
            rel = posixpath.relpath(file, src_path)
            copy_tree(url_of(src_fs, file, src), join(dest, *rel.split("/")), options)
        return
    if isinstance(dest_fs, LocalFileSystem):
        os.makedirs(os.path.dirname(dest_path), exist_ok=True)
    with src_fs.open(src_path, "rb") as source, atomic_open(dest, options) as target:
        shutil.copyfileobj(source, target, 1 << 20)


def remove(url: str, options: StorageOptions = None) -> None:
    """Remove a file or a folder tree. A local symbolic link is removed itself, never its target."""
    fs, path = filesystem(url, options)
    if isinstance(fs, LocalFileSystem) and os.path.islink(path):
        os.remove(path)
        return
    if not fs.exists(path):
        return
    if isinstance(fs, LocalFileSystem):
        fs.rm(path, recursive=fs.isdir(path))  # literal: shutil.rmtree or os.remove
        return
    # Other back ends (s3fs, gcsfs, ...) expand `rm` paths as glob patterns: a batch named `a[1]`
    # would delete `a1`, one named `*` everything beside it. Names with pattern characters are
    # removed one by one with rm_file, which takes a path literally; the rest in bulk.
    files = fs.find(path) if fs.isdir(path) else [path]
    plain = [f for f in files if not has_magic(f)]
    if plain:
        fs.rm(plain)
    for file in files:
        if has_magic(file):
            fs.rm_file(file)
    if fs.isdir(path) and not has_magic(path):
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path, recursive=True)  # an empty "folder" left where the store keeps them
