"""A CSV export's text, for :mod:`tasks.ingest`: its records, and numbers as it writes them.

A record is one line, or several when a quoted value holds line breaks; ingest converts records in
chunks, and a record must never be cut between two chunks. Quoting follows Arrow's CSV parser,
which parses the chunks: a ``"`` opens a quoted value only at the start of a field (``12" pizza``
is literal text), and inside one ``""`` is a quote. Numbers may be written with a decimal comma
and thousands separators (``12.345,67``); :func:`text_to_float` reads them as the config says.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

UTF8_BOM = b"\xef\xbb\xbf"
QUOTE = b'"'
UTC_MICROS = pa.timestamp("us", tz="UTC")
# A time of day followed by a zone offset (Z, +02:00, +0200, -05): the text Arrow reads as an
# instant. A date alone ('2026-05-01') has none, whatever its '-01' looks like.
_OFFSET = r"[T ]\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)$"


class IngestError(ValueError):
    """A CSV that cannot be converted as configured; the message names the row and the fix."""


def utf8_lines(
    handle: BinaryIO, encoding: str = "utf-8", source: str = "the CSV"
) -> Iterator[bytes]:
    """The lines of a binary file in ``encoding``, as UTF-8 bytes.

    A UTF-8 byte-order mark (Excel's "CSV UTF-8") is dropped, so it does not become part of the
    first column's name; other encodings are decoded by Python's codec (a UTF-16 file's mark
    included). A line that is not text in ``encoding`` raises :class:`IngestError` naming
    ``source``, the line and the fix.
    """
    utf8 = codecs.lookup(encoding).name == "utf-8"
    done = 0  # lines read whole
    try:
        if utf8:
            for line in handle:
                if done == 0 and line.startswith(UTF8_BOM):
                    line = line[len(UTF8_BOM) :]
                line.decode("utf-8")
                done += 1
                yield line
        else:
            for line in io.TextIOWrapper(handle, encoding=encoding, newline=""):
                done += 1
                yield line.encode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{source} line {done + 1} is not {'UTF-8' if utf8 else encoding} "
            f"text ({exc.reason} at byte {exc.start} of {'the line' if utf8 else 'a block'}); "
            "set ingest.encoding to the file's encoding (e.g. 'cp1252' or 'latin-1' for Western "
            "European exports, 'utf-16' for Excel's Unicode text) or convert the file to UTF-8"
        ) from None


def csv_records(
    lines: Iterable[bytes], separator: str, comment_prefix: str | None = None
) -> Iterator[bytes]:
    """The records of a CSV file's UTF-8 ``lines`` (:func:`utf8_lines`), each ending in a newline.

    Blank lines and lines starting with ``comment_prefix`` between records are skipped; inside a
    quoted value they are data. A quoted value still open at the end of the file is yielded as it
    is, for the parser to name.
    """
    prefix = comment_prefix.encode("utf-8") if comment_prefix else None
    sep = separator.encode("utf-8")
    pending: list[bytes] = []
    for line in lines:
        if not pending:
            if not line.strip() or (prefix is not None and line.startswith(prefix)):
                continue
            if QUOTE not in line or not _ends_in_quotes(line, sep, in_quotes=False):
                yield _terminated(line)
                continue
        elif _ends_in_quotes(line, sep, in_quotes=True):
            pending.append(line)
            continue
        else:
            yield _terminated(b"".join([*pending, line]))
            pending = []
            continue
        pending.append(line)
    if pending:
        yield _terminated(b"".join(pending))


def _terminated(record: bytes) -> bytes:
    return record if record.endswith(b"\n") else record + b"\n"


def _ends_in_quotes(line: bytes, sep: bytes, in_quotes: bool) -> bool:
    """Whether a quoted value is open at the end of ``line``, given whether one was open at its
    start (a line that starts a record starts a field)."""
    position = 0
    while True:
        found = line.find(QUOTE, position)
        if found < 0:
            return in_quotes
        if in_quotes:
            if line[found + 1 : found + 2] == QUOTE:  # "" inside a quoted value
                position = found + 2
                continue
            in_quotes = False
        elif found == 0 or line[found - len(sep) : found] == sep:
            in_quotes = True
        position = found + 1


def text_to_float(
    column: pa.ChunkedArray,
    name: str,
    missing: pa.Array,
    first_row: int,
    *,
    decimal: str = ".",
    thousands: str | None = None,
) -> pa.ChunkedArray:
    """A text column -> float64: missing-value tokens null, ``thousands`` separators removed and
    the ``decimal`` mark read as a point; raises :class:`IngestError` naming the first bad row."""
    column = pc.if_else(pc.is_in(column, value_set=missing), pa.scalar(None, pa.string()), column)
    written = column
    if thousands:
        column = pc.replace_substring(column, thousands, "")
    if decimal != ".":
        column = pc.replace_substring(column, decimal, ".")
    try:
        return column.cast(pa.float64())
    except pa.ArrowInvalid:
        for offset, (value, read) in enumerate(
            zip(written.to_pylist(), column.to_pylist(), strict=True)
        ):
            try:
                float("nan" if read is None else read)
            except ValueError:
                raise IngestError(
                    f"data row {first_row + offset}, column {name!r}: {value!r} is not a number; "
                    "fix the CSV, add the token to columns.missing_values, list the column as "
                    "categorical, or for numbers written like 12.345,67 or 12,345.67 set "
                    "ingest.decimal and ingest.thousands"
                ) from None
        raise


def text_to_timestamp(column: pa.ChunkedArray, name: str, first_row: int) -> pa.ChunkedArray:
    """ISO-8601 text -> UTC timestamps: values with a zone offset (``Z``, ``+02:00``) are converted
    to UTC, values without one are taken as UTC, and one column may mix both. Raises
    :class:`IngestError` naming the first row whose value is not an ISO-8601 date or date-time."""
    try:
        return iso_to_utc(column)
    except pa.ArrowInvalid:
        for offset, value in enumerate(column.to_pylist()):
            if value is None:
                continue
            kind = UTC_MICROS if re.search(_OFFSET, value) else pa.timestamp("us")
            try:
                pa.scalar(value).cast(kind)
            except pa.ArrowInvalid:
                raise IngestError(
                    f"data row {first_row + offset}, column {name!r}: {value!r} is not an "
                    "ISO-8601 date or date-time (YYYY-MM-DD, optionally THH:MM[:SS[.ffffff]] and "
                    "a zone offset such as Z or +02:00; without one it is taken as UTC); fix "
                    "the export"
                ) from None
        raise


def iso_to_utc(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """ISO-8601 text -> timestamp[us, UTC], values with a zone offset converted and the others
    taken as UTC (see :func:`text_to_timestamp`); raises ``pa.ArrowInvalid`` on other text."""
    if pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    has_offset = pc.match_substring_regex(column, _OFFSET)
    no_text = pa.scalar(None, pa.string())
    with_offset = pc.if_else(has_offset, column, no_text).cast(UTC_MICROS)
    without = pc.if_else(has_offset, no_text, column).cast(pa.timestamp("us"))
    return pc.if_else(has_offset, with_offset, without.cast(UTC_MICROS))
