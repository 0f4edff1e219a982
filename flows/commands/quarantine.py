"""`aeflow quarantine list|show|release`: inspect quarantined batches and put them back."""

from __future__ import annotations

import argparse
import json

from flows.commands import add_config_argument, config_and_storage


def cmd_list(args: argparse.Namespace) -> int:
    from tasks.validation import list_quarantined

    _, storage = config_and_storage(args.config)
    records = list_quarantined(storage)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2, sort_keys=True))
        return 0
    if not records:
        print(f"no quarantined batches in {storage.quarantine()}")
        return 0
    width = max(len(r.batch_id) for r in records)
    print(f"{'batch':<{width}}  {'rows':>9}  {'quarantined at':<20}  reason")
    for record in records:
        rows = "unknown" if record.rows is None else record.rows
        print(
            f"{record.batch_id:<{width}}  {rows:>9}  {record.quarantined_at or '?':<20}  "
            f"{record.reason}"
        )
    print(f"{len(records)} quarantined batch(es) in {storage.quarantine()}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from tasks.io import exists, filesystem, read_json
    from tasks.validation import ReleaseError

    _, storage = config_and_storage(args.config)
    # The whole report (failures, inputs and their sha256), as stored beside the input; without
    # it the batch is not quarantined (or its move was interrupted: `quarantine list` says so).
    report = read_json(storage.quarantine_report(args.batch_id), storage.options)
    if report is None:
        raise ReleaseError(
            f"no quarantined batch {args.batch_id!r} in {storage.quarantine()}; "
            "see `aeflow quarantine list`"
        )
    markdown = storage.quarantine_markdown(args.batch_id)
    if args.json or not exists(markdown, storage.options):
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    fs, inner = filesystem(markdown, storage.options)
    with fs.open(inner, "rb") as handle:
        print(handle.read().decode("utf-8"), end="")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from tasks.validation import release_quarantined, validate_batch

    cfg, storage = config_and_storage(args.config)

    def revalidate(batch):
        return validate_batch(
            batch, columns=cfg.columns, validation=cfg.validation, options=storage.options
        )

    released = release_quarantined(
        args.batch_id,
        storage=storage,
        validate=revalidate,
        replacement=args.input,
        force=args.force,
    )
    check = released["revalidation"]
    print(f"released {args.batch_id} ({released['source']}) to {released['released_to']}")
    print(f"re-validation now: {check['status']}: {check['reason']}")
    if released["forced"]:
        print("released with --force: the next run will quarantine it again unless fixed")
    print(f"quarantine folder archived in {released['archived_to']}")
    print(f"the next `aeflow score --config {args.config}` validates and scores it")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "quarantine",
        help="list, show or release quarantined batches",
        description="Batches that failed their contract wait in <root>/quarantine/<dataset>/"
        "<batch_id>/ with the untouched input, report.json and report.md.",
    )
    commands = group.add_subparsers(dest="quarantine_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="quarantined batches with their reasons")
    add_config_argument(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=cmd_list)

    show = commands.add_parser("show", help="the validation report of a quarantined batch")
    show.add_argument("batch_id", metavar="BATCH_ID")
    add_config_argument(show)
    show.add_argument("--json", action="store_true", help="print report.json instead of report.md")
    show.set_defaults(handler=cmd_show)

    release = commands.add_parser(
        "release",
        help="put a quarantined batch back in incoming/ after fixing the data or the suite",
        description="Re-validate the quarantined input (or --input, a fixed file) against the "
        "current suite; if it passes, copy it to incoming/ under its batch id and archive the "
        "quarantine folder under _archive/. The next score run validates and scores it once.",
    )
    release.add_argument("batch_id", metavar="BATCH_ID")
    add_config_argument(release)
    release.add_argument(
        "--input", metavar="PATH", help="a fixed Parquet file or folder to release instead"
    )
    release.add_argument(
        "--force", action="store_true", help="release even if it would be quarantined again"
    )
    release.set_defaults(handler=cmd_release)
