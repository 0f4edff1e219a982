"""Markdown for reports and Prefect artifacts, with every user value escaped.

Batch ids, column names, category values and error messages come from the data. Put into Markdown
as they are, a ``|`` breaks a table, a backtick closes a code span, ``[x](http://...)`` becomes a
link and ``<img ...>`` raw HTML in a Prefect UI. These helpers render such values as text only.
"""

from __future__ import annotations

import re
from typing import Any

# What can turn text into markup inside a line: code spans, emphasis, links and images, raw HTML,
# entities, table cells, strike-through. An '_' emphasises only at a word's edge: escaping the
# ones inside words too would make column names unreadable in the raw file.
_SPECIAL = re.compile(r"([\\`*\[\]<>|&!~])")
_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_BLOCK_START = re.compile(r"^(\s*)([#+\-=])|^(\s*\d+)([.)])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _flat(value: Any) -> str:
    """One line of plain text: line breaks become spaces, other control characters '?'."""
    text = "" if value is None else str(value)
    return _CONTROL.sub("?", _LINE_BREAKS.sub(" ", text))


def md_text(value: Any) -> str:
    """``value`` as literal text in a Markdown paragraph or table cell (no markup, no HTML, one line)."""
    text = _EDGE_UNDERSCORE.sub(r"\\_", _SPECIAL.sub(r"\\\1", _flat(value)))
    # What starts a block when it opens a line (after "- " too): a heading, a list, a quote.
    return _BLOCK_START.sub(
        lambda m: f"{m[1]}\\{m[2]}" if m[2] else f"{m[3]}\\{m[4]}", text, count=1
    )


def md_code(value: Any, in_table: bool = False) -> str:
    """``value`` as an inline code span, fenced with more backticks than it holds in a row so it
    cannot close the span early. ``in_table``: escape ``|`` as GFM tables need inside a cell."""
    text = _flat(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`") or not text.strip():
        text = f" {text} "
    if in_table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"
