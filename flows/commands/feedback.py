"""`aeflow feedback add|list|summary`: analysts' verdicts on scored rows (docs/feedback.md)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from flows.commands import add_config_argument, config_and_storage


def _analyst(given: str | None) -> str | None:
    if given is not None:
        return given or None
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment (some containers)
        return None


def cmd_add(args: argparse.Namespace) -> int:
    from tasks.feedback import read_id_rows, record_feedback
    from tasks.records import VerdictSubmission

    cfg, storage = config_and_storage(args.config)
    rows = read_id_rows(args.ids, id_column=cfg.columns.id, batch=args.batch, stdin=sys.stdin)
    submission = VerdictSubmission(
        verdict=args.verdict,
        rows=rows,
        note=args.note,
        analyst=_analyst(args.analyst),
        submission_id=args.submission_id,
    )
    recorded = record_feedback(submission, storage=storage, columns=cfg.columns)
    if args.json:
        print(json.dumps(recorded.to_dict(), indent=2, sort_keys=True))
        return 0
    if recorded.status == "recorded":
        print(
            f"recorded {recorded.rows} {recorded.verdict} verdict(s) on {len(recorded.batches)} "
            f"batch(es) ({recorded.flagged_rows} of the rows were flagged) as "
            f"{recorded.submission_id}"
        )
    else:
        print(
            f"already recorded: the same submission is {recorded.submission_id} "
            f"({recorded.submitted_at}); nothing written"
        )
        if recorded.superseded_rows:
            print(
                f"{recorded.superseded_rows} of its rows have a later verdict now; to make these "
                "verdicts the latest again, submit them with a new --submission-id"
            )
    print(f"file              {recorded.path}")
    return 0


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def cmd_list(args: argparse.Namespace) -> int:
    from tasks.feedback import all_verdicts, latest_verdicts, submissions

    _, storage = config_and_storage(args.config)
    verdicts = all_verdicts(storage)
    if args.rows:
        latest = latest_verdicts(storage, verdicts)
        if args.batch:
            latest = latest[latest["batch_id"] == args.batch]
        if args.json:
            print(latest.to_json(orient="records", indent=2))
            return 0
        print("batch_id,row_id,verdict,flagged,anomaly_score,model_version,submitted_at")
        for row in latest.itertuples(index=False):
            print(
                f"{row.batch_id},{row.row_id},{row.verdict},{bool(row.is_anomaly)},"
                f"{row.anomaly_score:.6g},{row.model_version},{row.submitted_at}"
            )
        return 0
    listed = submissions(verdicts)
    if args.json:
        print(json.dumps(listed, indent=2, sort_keys=True))
        return 0
    if not listed:
        print(f"no verdicts in {storage.feedback}; record some with `aeflow feedback add`")
        return 0
    for entry in listed:
        print(
            f"{entry['submission_id']}  {entry['submitted_at']}  {entry['verdict']:<14}  "
            f"{entry['rows']:>6} rows ({entry['flagged_rows']} flagged)  "
            f"batches {', '.join(entry['batches'])}  by {_text(entry['analyst'])}  "
            f"{_text(entry['note'])}"
        )
    print(f"{len(listed)} submission(s) in {storage.feedback}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from tasks.flag_precision import feedback_summary

    cfg, storage = config_and_storage(args.config)
    champion = storage.registry().champion()
    summary = feedback_summary(storage, feedback=cfg.feedback, model_version=champion)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    if summary is None:
        print(f"no verdicts in {storage.feedback}; record some with `aeflow feedback add`")
        return 0
    overall = summary["overall"]
    precision = overall["precision"]
    print(
        f"rows reviewed     {summary['rows_reviewed']} ({summary['verdicts']['confirmed']} "
        f"confirmed, {summary['verdicts']['false_positive']} false positives; latest verdict "
        "per row)"
    )
    print(
        f"flag precision    {'n/a' if precision is None else f'{precision:.1%}'} "
        f"({overall['confirmed']} of {overall['reviewed']} reviewed flags confirmed); "
        f"{overall['missed']} confirmed anomalies were not flagged"
    )
    print(f"champion          {summary['champion']['reason']}")
    print("batch date   reviewed  confirmed  false pos.  precision  missed")
    for entry in summary["over_time"]:
        share = "n/a" if entry["precision"] is None else f"{entry['precision']:.1%}"
        print(
            f"{entry['date']:<12} {entry['reviewed']:>8}  {entry['confirmed']:>9}  "
            f"{entry['false_positives']:>10}  {share:>9}  {entry['missed']:>6}"
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "feedback",
        help="record analysts' verdicts on scored rows, list them, summarise flag precision",
        description="Analysts' verdicts on scored rows (confirmed anomaly or false positive), "
        "stored once per submission under <root>/feedback/<dataset>/ as Parquet. They choose "
        "label thresholds (threshold.method = max_f1 | target_precision | target_recall with "
        "threshold.labels = feedback or auto), shape retraining windows (confirmed anomalies "
        "left out, false positives kept) and measure flag precision (the feedback retraining "
        "trigger). See docs/feedback.md.",
    )
    commands = group.add_subparsers(dest="feedback_command", metavar="ACTION", required=True)

    add = commands.add_parser(
        "add",
        help="record one verdict on a set of scored rows",
        description="Record a verdict on scored rows named by batch id and row id. --ids takes "
        "a CSV file (a header naming batch_id and the row id column, or lines "
        "'batch_id,row_id', or bare row ids with --batch), a Parquet file with those columns "
        "(e.g. rows picked from a scored output), or - for stdin. Every id must be a row of its "
        "batch's scored output. The same submission twice is recorded once; a row's latest "
        "verdict wins.",
    )
    add_config_argument(add)
    add.add_argument(
        "--ids", required=True, metavar="FILE|-", help="the rows: CSV or Parquet file, - = stdin"
    )
    add.add_argument(
        "--verdict",
        required=True,
        choices=("confirmed", "false_positive"),
        help="confirmed: a real anomaly; false_positive: flagged, but normal",
    )
    add.add_argument("--note", help="why (kept with every verdict of the submission)")
    add.add_argument("--batch", metavar="BATCH_ID", help="the batch of ids given without one")
    add.add_argument("--analyst", help="who decided (default: the user name; '' to record none)")
    add.add_argument(
        "--submission-id",
        metavar="ID",
        help="name the submission (default: a hash of its content, so a resubmission of the "
        "same verdicts is not recorded twice)",
    )
    add.add_argument("--json", action="store_true", help="print the stored submission as JSON")
    add.set_defaults(handler=cmd_add)

    listing = commands.add_parser(
        "list", help="the stored submissions (or, with --rows, each row's latest verdict)"
    )
    add_config_argument(listing)
    listing.add_argument(
        "--rows", action="store_true", help="each reviewed row's latest verdict, as CSV"
    )
    listing.add_argument("--batch", metavar="BATCH_ID", help="with --rows: only this batch")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=cmd_list)

    summary = commands.add_parser(
        "summary",
        help="flag precision from the verdicts: overall, per batch date, and the champion's "
        "against feedback.precision_floor",
    )
    add_config_argument(summary)
    summary.add_argument("--json", action="store_true", help="print JSON")
    summary.set_defaults(handler=cmd_summary)
