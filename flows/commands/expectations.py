"""`aeflow expectations init|check`: draft a suite from a reference batch, check a suite file."""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import TYPE_CHECKING, Any

from flows.commands import add_config_argument

if TYPE_CHECKING:
    import pyarrow as pa

    from flows.config import PipelineConfig


def _is_batch(path: str) -> bool:
    return path.endswith(".parquet") or os.path.isdir(path)


def read_reference_batches(cfg: PipelineConfig, paths: list[str]) -> list[pa.Table]:
    """One table per reference: Parquet batches as they are, CSV files read like `aeflow ingest`."""
    import pyarrow as pa

    from flows.commands.ingest import csv_format
    from tasks.ingest import csv_stem, read_csv_tables, safe_batch_prefix
    from tasks.io import read_table
    from tasks.validation.prechecks import schema_differences

    tables = []
    for path in paths:
        if _is_batch(path):
            tables.append(read_table(path, cfg.storage.options))
            continue
        prefix = safe_batch_prefix(csv_stem(path))
        chunks = list(read_csv_tables(path, csv_format(cfg), cfg.columns, id_prefix=prefix))
        tables.append(pa.concat_tables(chunks))
    differences = []
    for path, table in zip(paths[1:], tables[1:], strict=True):
        schema = _numbers_as_in(table.schema, tables[0].schema)
        if not schema.equals(tables[0].schema):
            said = schema_differences(tables[0].schema, schema, os.path.basename(paths[0]))
            differences.append(f"{os.path.basename(path)}: {said}")
    if differences:
        raise ValueError(
            f"the references have different schemas ({'; '.join(differences)}); draft from "
            "batches of one layout"
        )
    return tables


def _numbers_as_in(schema: pa.Schema, first: pa.Schema) -> pa.Schema:
    """``schema`` with each number column given ``first``'s type where that is a number too: an
    int64 column that gains a null arrives as double, and the drafted type check accepts both."""
    import pyarrow as pa

    def number(kind: pa.DataType) -> bool:
        return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)

    fields = []
    for field in schema:
        index = first.get_field_index(field.name)
        if index >= 0 and number(field.type) and number(first.field(index).type):
            field = field.with_type(first.field(index).type)
        fields.append(field)
    return pa.schema(fields)


def read_reference(cfg: PipelineConfig, paths: list[str]) -> pa.Table:
    """All reference rows as one table (see :func:`read_reference_batches`)."""
    import pyarrow as pa

    return pa.concat_tables(read_reference_batches(cfg, paths), promote_options="permissive")


def _self_check(cfg: PipelineConfig, reference: pa.Table, suite_path: str) -> Any:
    """Validate a reference batch against the suite just drafted (each must pass it)."""
    import pyarrow.parquet as pq

    from tasks.io import BatchRef
    from tasks.validation import validate_batch

    with tempfile.TemporaryDirectory(prefix="aeflow-reference-") as folder:
        path = os.path.join(folder, "reference.parquet")
        pq.write_table(reference, path)
        # The suite just drafted, not yet the config's; a warning is reported, not acted on.
        drafted = cfg.validation.model_copy(update={"suite": suite_path, "on_warning": "score"})
        return validate_batch(
            BatchRef("reference", path, os.path.getsize(path)),
            columns=cfg.columns,
            validation=drafted,
        )


def cmd_init(args: argparse.Namespace) -> int:
    from flows.config import load_config
    from tasks.batch_dates import timestamp_dating_problem
    from tasks.io import exists, write_text_atomic
    from tasks.validation import DraftSettings, describe_failures, draft_suite, suite_json

    cfg = load_config(args.config)
    output = args.output or cfg.suite_path
    if exists(output) and not args.force:
        raise ValueError(
            f"{output} exists and may hold reviewed edits; pass --force to overwrite it or "
            "--output to draft elsewhere"
        )
    tuned = {name: getattr(args, name) for name in TUNABLE}
    settings = DraftSettings(**{k: v for k, v in tuned.items() if v is not None})
    references = read_reference_batches(cfg, args.reference)
    suite = draft_suite(
        references,
        name=cfg.dataset,
        columns=cfg.columns,
        references=args.reference,
        settings=settings,
    )
    write_text_atomic(suite_json(suite), output)
    severities = [e["severity"] for e in suite["expectations"]]
    rows = sum(t.num_rows for t in references)
    dropped = suite["meta"]["aeflow"].get("dropped", [])
    print(
        f"drafted {len(severities)} expectations ({severities.count('critical')} critical, "
        f"{severities.count('warning')} warning) from {rows} rows in {len(references)} "
        f"reference batch(es) into {output}"
    )
    if dropped:
        print(
            f"left out {len(dropped)} that no batch could fail (listed under meta.aeflow.dropped)"
        )
    timestamp = cfg.columns.timestamp
    if timestamp and timestamp in references[0].schema.names:
        problem = timestamp_dating_problem(references[0].column(timestamp), timestamp)
        if problem:
            print(f"warning: {problem}")
    untyped = suite["meta"]["aeflow"].get("untyped", [])
    if untyped:
        print(
            f"no type check for {untyped}: no reference holds a value of them (listed under "
            "meta.aeflow.untyped); draft from a batch that has values, or add the check by hand"
        )
    failed = 0
    for path, reference in zip(args.reference, references, strict=True):
        outcome = _self_check(cfg, reference, output)
        if outcome.status != "passed":
            failed += 1
            print(f"the reference {path} does not pass its own suite: {outcome.reason}")
            for line in describe_failures(outcome.critical + outcome.warnings):
                print(f"  {line}")
    if failed:
        return 1
    every = "the reference passes it" if len(references) == 1 else "every reference batch passes it"
    print(f"{every}. Review every bound before committing the file.")
    return 0


def suite_config_problems(cfg: PipelineConfig, suite_doc: dict[str, Any]) -> list[str]:
    """Disagreements between a (structurally valid) suite and the config's columns."""
    from tasks.contract import suite_column_problems, suite_columns

    column_set, optional = suite_columns(suite_doc)
    problems = []
    if suite_doc["name"] != cfg.dataset:
        problems.append(f"suite name {suite_doc['name']!r} differs from dataset {cfg.dataset!r}")
    if column_set is None:
        problems.append(
            "no expect_table_columns_to_match_set: a batch with extra or missing columns would pass"
        )
        return problems
    cols = cfg.columns
    roles = {
        "columns.id": [cols.id],
        "columns.timestamp": [cols.timestamp] if cols.timestamp else [],
        "columns.numeric": cols.numeric,
        "columns.categorical": cols.categorical,
    }
    path = cfg.suite_path
    problems += suite_column_problems(roles, column_set, path, [cols.label, *optional])
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    from flows.config import load_config
    from tasks.validation import SuiteError, load_suite, read_suite_document, suite_problems

    cfg = load_config(args.config)
    path = args.suite or cfg.suite_path
    document = read_suite_document(path)
    problems = suite_problems(document)
    if not problems:
        problems = suite_config_problems(cfg, document)
    if not problems:
        try:
            load_suite(path, cfg.validation.severity)
        except SuiteError as exc:
            problems = str(exc).splitlines()[1:]
    if problems:
        print(f"{path}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem.strip()}")
        return 1
    severities = [e.get("severity", "critical") for e in document["expectations"]]
    print(
        f"{path}: OK, {len(severities)} expectations ({severities.count('critical')} critical, "
        f"{severities.count('warning')} warning)"
    )
    return 0


# Drafting settings the command line can change; unset ones keep DraftSettings' defaults (listed
# in docs/data-contract.md). Importing tasks.validation here would slow every `aeflow` command.
TUNABLE = {
    "range_margin": (float, "share of the robust span added to both sides of numeric ranges"),
    "range_mostly": (float, "share of values that must fall inside a numeric range"),
    "row_count_factor": (float, "row-count warning outside [rows/F, rows*F]"),
    "max_levels": (int, "no category set or KL check for columns with more levels"),
    "quantile_margin": (float, "share of the 1%%-99%% span allowed around each quantile"),
    "kl_threshold": (float, "KL divergence (nats) of level shares that warns"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "expectations",
        help="draft a Great Expectations suite from a reference batch, or check a suite file",
        description="The data contract: expectations/<dataset>.json.",
    )
    commands = group.add_subparsers(dest="expectations_command", metavar="ACTION", required=True)

    init = commands.add_parser(
        "init",
        help="draft the suite from reference batches (review it before committing)",
        description="Draft expectations/<dataset>.json from reference data: exact column set, "
        "types, id uniqueness, non-empty batch, no nulls in key columns (critical); null shares, "
        "row-count bounds, robust numeric ranges, quantiles, category sets and level shares "
        "(warnings). The reference must pass the drafted suite; the file is stable JSON meant to "
        "be reviewed and edited. Drafting defaults: docs/data-contract.md.",
    )
    add_config_argument(init)
    init.add_argument(
        "--reference",
        required=True,
        action="append",
        metavar="PATH",
        help="a Parquet batch (file or folder) or a CSV read like `aeflow ingest`; repeat to "
        "draft from several",
    )
    init.add_argument("--output", metavar="FILE", help="where to write (the config's suite)")
    init.add_argument("--force", action="store_true", help="overwrite an existing suite file")
    for name, (kind, text) in TUNABLE.items():
        init.add_argument(f"--{name.replace('_', '-')}", type=kind, metavar="X", help=text)
    init.set_defaults(handler=cmd_init)

    check = commands.add_parser(
        "check",
        help="check a suite file: known expectation types, valid arguments, severities",
        description="Check the suite file itself: GX 1.x layout, every expectation type known "
        "and its kwargs accepted (GX silently drops the ones it cannot build), severities "
        "critical or warning, the config's columns in the suite's column set. Exit 1 on problems.",
    )
    add_config_argument(check)
    check.add_argument("--suite", metavar="FILE", help="suite to check (the config's suite)")
    check.set_defaults(handler=cmd_check)
