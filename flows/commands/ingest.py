"""`aeflow ingest`: convert a CSV export into Parquet batches in <root>/incoming/<dataset>/."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from flows.commands import add_config_argument

if TYPE_CHECKING:
    from flows.config import PipelineConfig
    from tasks.ingest import CsvFormat


def csv_format(cfg: PipelineConfig) -> CsvFormat:
    """The config's `ingest` section as the reader's CsvFormat."""
    from tasks.ingest import CsvFormat

    ingest = cfg.ingest
    parts = ingest.date_from_parts
    return CsvFormat(
        header=ingest.header,
        column_names=tuple(ingest.column_names),
        separator=ingest.separator,
        comment_prefix=ingest.comment_prefix,
        strip_whitespace=ingest.strip_whitespace,
        drop_columns=tuple(ingest.drop_columns),
        replace={column: dict(mapping) for column, mapping in ingest.replace.items()},
        date_from_parts=(parts.month, parts.day, parts.first_year) if parts else None,
    )


def cmd_ingest(args: argparse.Namespace) -> int:
    from flows.config import load_config
    from tasks.ingest import ingest_csv
    from tasks.io import StorageLayout

    cfg = load_config(args.config)
    layout = StorageLayout(cfg.storage_root, cfg.dataset)
    written = ingest_csv(
        args.csv,
        layout.incoming,
        csv_format(cfg),
        cfg.columns.id,
        cfg.columns.timestamp,
        cfg.columns.numeric,
        cfg.columns.missing_values,
        batch_rows=args.batch_rows,
        split_by=args.split_by,
        name=args.name,
        options=cfg.storage.options,
    )
    width = max(len(b["batch_id"]) for b in written)
    for batch in written:
        print(f"{batch['batch_id']:<{width}}  {batch['rows']:>9} rows  {batch['path']}")
    total = sum(b["rows"] for b in written)
    print(
        f"ingested {total} rows from {args.csv} into {len(written)} batch(es) in {layout.incoming}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="convert a CSV export into Parquet batches in incoming/",
        description="Read a CSV as the config's `ingest` section describes (header or column names, "
        "separator, comment lines, whitespace, value rewrites, a timestamp from date parts), give "
        "each column its contract type and write Parquet batches to "
        "<root>/incoming/<dataset>/: the whole file, every N rows, or one per calendar month. "
        "Nothing is written unless the whole file converts.",
    )
    add_config_argument(parser)
    parser.add_argument("--csv", required=True, metavar="PATH", help="the CSV file to convert")
    split = parser.add_mutually_exclusive_group()
    split.add_argument(
        "--batch-rows", type=int, metavar="N", help="one batch per N rows (<name>-0001, ...)"
    )
    split.add_argument(
        "--split-by",
        choices=["month"],
        help="one batch per calendar month of the timestamp column (<name>-YYYY-MM)",
    )
    parser.add_argument(
        "--name", metavar="PREFIX", help="batch id prefix (default: the CSV's file name)"
    )
    parser.set_defaults(handler=cmd_ingest)
