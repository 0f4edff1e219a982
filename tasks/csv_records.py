"""A CSV export as a stream of records, for :mod:`tasks.ingest`.

A record is one line, or several when a quoted value holds line breaks; ingest converts records in
chunks, and a record must never be cut between two chunks. Quoting follows Arrow's CSV parser,
which parses the chunks: a ``"`` opens a quoted value only at the start of a field (``12" pizza``
is literal text), and inside one ``""`` is a quote.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

UTF8_BOM = b"\xef\xbb\xbf"
QUOTE = b'"'


def csv_records(
    lines: Iterable[bytes], separator: str, comment_prefix: str | None = None
) -> Iterator[bytes]:
    """The records of a CSV file read as binary ``lines``, each ending in a newline.

    A UTF-8 byte-order mark before the first line (Excel's "CSV UTF-8") is dropped, so it does not
    become part of the first column's name. Blank lines and lines starting with
    ``comment_prefix`` between records are skipped; inside a quoted value they are data. A quoted
    value still open at the end of the file is yielded as it is, for the parser to name.
    """
    prefix = comment_prefix.encode("utf-8") if comment_prefix else None
    sep = separator.encode("utf-8")
    pending: list[bytes] = []
    for number, line in enumerate(lines):
        if number == 0 and line.startswith(UTF8_BOM):
            line = line[len(UTF8_BOM) :]
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
