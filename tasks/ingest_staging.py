"""Ingest's staging: batches are written to a hidden folder in incoming/ (``_ingest-<token>``)
and moved into place only when the whole file has been read (tasks/ingest.py).

The token names the machine and the process that writes the folder (``<host>-<pid>-<hex>``), so
that a later ingest on the same machine can tell a folder whose writer was killed (SIGKILL, power
loss: it could not remove its folder) from one still being written, and remove only the former.
"""

from __future__ import annotations

import os
import posixpath
import re
import socket
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from models.storage import process_alive
from tasks.io import Storage, filesystem, remove

_STAGING = re.compile(r"_ingest-(?P<host>[A-Za-z0-9.]+)-(?P<pid>\d+)-[0-9a-f]{32}")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", ".", socket.gethostname())[:64] or "host"


def staging_token() -> str:
    """``<host>-<pid>-<32 hex>``: this machine, this process, and a random part."""
    return f"{_host()}-{os.getpid()}-{uuid.uuid4().hex}"


def remove_abandoned_staging(storage: Storage) -> list[str]:
    """Remove the staging folders in ``storage.incoming`` that an ingest on this machine left when
    it was killed (its process is gone); returns their URLs. Folders of live processes, of other
    machines (an object store shared by several) and of unknown writers are left alone."""
    fs, inner = filesystem(storage.incoming, storage.options)
    try:
        entries = fs.ls(inner, detail=False)
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        name = posixpath.basename(entry.rstrip("/"))
        found = _STAGING.fullmatch(name)
        if found and found["host"] == _host() and not process_alive(int(found["pid"])):
            url = storage.incoming_entry(name)
            remove(url, storage.options)
            removed.append(url)
    return removed


# ------------------------------------------------------------------------------------ writing
# Batches written at once; a file split by day can hold years of days, and rows need not be in
# order, so the least recently written batch is closed and reopened as a further part when needed.
MAX_OPEN_WRITERS = 32


class StagedBatches:
    """Parquet writers for the batches of one ingest, in a hidden staging folder."""

    def __init__(self, storage: Storage) -> None:
        self.storage, self.options = storage, storage.options
        self.token = staging_token()
        self.staging = storage.ingest_staging(self.token)
        self.fs, _ = filesystem(storage.incoming, self.options)
        self.open: dict[str, tuple[Any, pq.ParquetWriter]] = {}  # in order of last write
        self.parts: dict[str, list[str]] = {}
        self.rows: dict[str, int] = {}

    def _inner(self, url: str) -> str:
        return filesystem(url, self.options)[1]

    def write(self, batch_id: str, table: pa.Table) -> None:
        if batch_id not in self.open:
            if len(self.open) >= MAX_OPEN_WRITERS:
                self.close(next(iter(self.open)))
            parts = self.parts.setdefault(batch_id, [])
            part = self.storage.ingest_staging(self.token, batch_id, len(parts))
            parts.append(part)
            self.fs.makedirs(posixpath.dirname(self._inner(part)), exist_ok=True)
            handle = self.fs.open(self._inner(part), "wb")
            self.open[batch_id] = (
                handle,
                pq.ParquetWriter(handle, table.schema, compression="zstd"),
            )
            self.rows.setdefault(batch_id, 0)
        else:
            self.open[batch_id] = self.open.pop(batch_id)  # most recently written last
        self.open[batch_id][1].write_table(table)
        self.rows[batch_id] += table.num_rows

    def close(self, batch_id: str) -> None:
        if batch_id not in self.open:
            return  # closed already to make room for another batch
        handle, writer = self.open.pop(batch_id)
        writer.close()
        handle.close()

    def _merge(self, batch_id: str) -> str:
        """One Parquet file of a batch's parts (in the order written); returns its staging URL."""
        parts = self.parts[batch_id]
        if len(parts) == 1:
            return parts[0]
        merged = self.storage.ingest_staging(self.token, batch_id)
        with self.fs.open(self._inner(merged), "wb") as handle:
            writer = None
            for part in parts:
                with self.fs.open(self._inner(part), "rb") as source:
                    table = pq.read_table(source)
                writer = writer or pq.ParquetWriter(handle, table.schema, compression="zstd")
                writer.write_table(table)
            writer.close()
        return merged

    def commit(self) -> list[dict[str, Any]]:
        """Close every writer and move the batches into incoming/ (each move is atomic)."""
        for batch_id in list(self.open):
            self.close(batch_id)
        written = []
        for batch_id in sorted(self.rows):
            target = self.storage.incoming_file(batch_id)
            self.fs.mv(self._inner(self._merge(batch_id)), self._inner(target))
            written.append({"batch_id": batch_id, "path": target, "rows": self.rows[batch_id]})
        remove(self.staging, self.options)
        return written

    def abort(self) -> None:
        for handle, writer in self.open.values():
            try:
                writer.close()
            finally:
                handle.close()
        self.open.clear()
        remove(self.staging, self.options)
