"""`aeflow ingest`: convert a CSV export into Parquet batches in <root>/incoming/<dataset>/."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from flows.commands import add_config_argument, config_and_storage

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
        decimal=ingest.decimal,
        thousands=ingest.thousands,
        encoding=ingest.encoding,
    )


def cmd_ingest(args: argparse.Namespace) -> int:
    from tasks.batch_dates import date_in_id
    from tasks.ingest import Batching, ingest_csv

    if args.cadence and not args.start_date:
        raise ValueError("--cadence dates batches from --start-date: give --start-date YYYY-MM-DD")
    cfg, layout = config_and_storage(args.config, writes=("incoming",))
    written = ingest_csv(
        args.csv,
        storage=layout,
        fmt=csv_format(cfg),
        columns=cfg.columns,
        batching=Batching(
            batch_rows=args.batch_rows,
            split_by=args.split_by,
            name=args.name,
            start_date=args.start_date,
            cadence=args.cadence or "daily",
        ),
    )
    width = max(len(b["batch_id"]) for b in written)
    for batch in written:
        print(f"{batch['batch_id']:<{width}}  {batch['rows']:>9} rows  {batch['path']}")
    total = sum(b["rows"] for b in written)
    print(
        f"ingested {total} rows from {args.csv} into {len(written)} batch(es) in {layout.incoming}"
    )
    undated = [b["batch_id"] for b in written if date_in_id(b["batch_id"]) is None]
    if undated and not cfg.columns.timestamp:
        print(
            f"note: {len(undated)} batch id(s) carry no date and the config has no timestamp "
            "column, so each is dated by its arrival (today); name them by date with "
            "--start-date YYYY-MM-DD [--cadence daily|weekly|monthly]"
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="convert a CSV export into dated Parquet batches in incoming/",
        description="Read a CSV as the config's `ingest` section describes (header or column names, "
        "separator, comment lines, whitespace, value rewrites, a timestamp from date parts), give "
        "each column its contract type and write Parquet batches to "
        "<root>/incoming/<dataset>/, named by their date: one per day, week or month of the "
        "timestamp column (--split-by), or every N rows dated from --start-date at --cadence "
        "(--batch-rows). The label column may be missing (a production export). Nothing is "
        "written unless the whole file converts.",
    )
    add_config_argument(parser)
    parser.add_argument("--csv", required=True, metavar="PATH", help="the CSV file to convert")
    split = parser.add_mutually_exclusive_group()
    split.add_argument(
        "--batch-rows",
        type=int,
        metavar="N",
        help="one batch per N rows: <name>-<date> with --start-date, else <name>-0001, ...",
    )
    split.add_argument(
        "--split-by",
        choices=["day", "week", "month"],
        help="one batch per day, ISO week or calendar month of the timestamp column "
        "(<name>-YYYY-MM-DD, the week's Monday, or <name>-YYYY-MM)",
    )
    parser.add_argument(
        "--start-date",
        metavar="YYYY-MM-DD",
        help="date of the first batch (the whole file, or the first --batch-rows rows); later "
        "batches follow at --cadence",
    )
    parser.add_argument(
        "--cadence",
        choices=["daily", "weekly", "monthly"],
        help="time between the --batch-rows batches from --start-date (daily)",
    )
    parser.add_argument(
        "--name", metavar="PREFIX", help="batch id prefix (default: the CSV's file name)"
    )
    parser.set_defaults(handler=cmd_ingest)
