"""fsspec storage primitives shared by the registry and the I/O tasks.

Every function takes a location as a local path or an fsspec URL (``s3://bucket/x``, ``file:///x``,
``memory://x``) plus fsspec storage options. Writes are atomic: a temporary name in the same folder
committed by rename on file systems, a single (possibly multipart) PUT on object stores, where an
object only appears once it is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

StorageOptions = dict[str, Any] | None


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


@contextlib.contextmanager
def atomic_open(url: str, options: StorageOptions = None) -> Iterator[IO[bytes]]:
    """Open ``url`` for binary writing so that it appears complete or not at all.

    On a local file system the data goes to a hidden temporary file in the destination folder that is
    fsynced and renamed over the destination on success. On an object store it goes to a local
    temporary file that is uploaded with one PUT on success. An exception removes the temporary file
    and leaves any previous version of the destination untouched.
    """
    fs, path = filesystem(url, options)
    if isinstance(fs, LocalFileSystem):
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    with tempfile.NamedTemporaryFile(prefix="aeflow-", suffix=".part", delete=False) as handle:
        tmp = handle.name
    try:
        with open(tmp, "wb") as handle:
            yield handle
        fs.put_file(tmp, path)
    finally:
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


def read_json(url: str, options: StorageOptions = None) -> Any | None:
    """Parsed JSON at ``url``, or None when there is no such file."""
    fs, path = filesystem(url, options)
    try:
        with fs.open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return None


def exists(url: str, options: StorageOptions = None) -> bool:
    fs, path = filesystem(url, options)
    return fs.exists(path)


def copy_tree(src: str, dest: str, options: StorageOptions = None) -> None:
    """Copy a file or folder byte for byte between any two locations of the same storage."""
    src_fs, src_path = filesystem(src, options)
    dest_fs, dest_path = filesystem(dest, options)
    if src_fs.isdir(src_path):
        for file in src_fs.find(src_path):
            rel = posixpath.relpath(file, src_path)
            copy_tree(url_of(src_fs, file, src), join(dest, *rel.split("/")), options)
        return
    if isinstance(dest_fs, LocalFileSystem):
        os.makedirs(os.path.dirname(dest_path), exist_ok=True)
    with src_fs.open(src_path, "rb") as source, atomic_open(dest, options) as target:
        shutil.copyfileobj(source, target, 1 << 20)


def remove(url: str, options: StorageOptions = None) -> None:
    fs, path = filesystem(url, options)
    if fs.exists(path):
        fs.rm(path, recursive=fs.isdir(path))
