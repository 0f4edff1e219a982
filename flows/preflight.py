"""Checks a run makes before it touches any batch.

The config's columns must be in the suite's column set (a run that validates) and be the columns
the scoring model was trained on (a run that scores): a typo in the config is a config error that
names the columns and the fix, and every batch stays in incoming/. The CLI runs these before
Prefect starts; the flows run them again, for deployments started without the CLI.
"""

from __future__ import annotations

from flows.config import ConfigError, PipelineConfig, storage_of


def check_config_columns(
    cfg: PipelineConfig,
    model_version: str | None = None,
    against_model: bool = True,
    suite_required: bool = True,
) -> None:
    """Raise :class:`ConfigError` when the config's columns disagree with the suite or (with
    ``against_model``) with ``model_version``, the champion by default (nothing to compare before
    the first model is trained); without it (a run that trains), also a text label whose anomaly
    values the config does not name. ``suite_required=False``: a run that does not validate (retrain)
    skips the suite when its file does not exist."""
    from tasks.contract import (
        label_rule_problems,
        model_column_problems,
        scoring_model_schema,
        suite_column_problems,
        suite_columns,
    )
    from tasks.io import exists, is_local
    from tasks.validation import read_suite_document
    from tasks.validation.suite import columns_outside_the_set

    cols, opts = cfg.columns, cfg.storage.options
    suite_path = cfg.suite_path
    suite_opts = None if is_local(suite_path) else opts
    if not suite_required and not exists(suite_path, suite_opts):
        return
    # The column set only: validation checks the whole suite (and pays for importing GX) later.
    document = read_suite_document(suite_path, suite_opts)
    column_set, suite_optional = suite_columns(document)
    roles = {
        "columns.id": [cols.id],
        "columns.timestamp": [cols.timestamp] if cols.timestamp else [],
        "columns.numeric": cols.numeric,
        "columns.categorical": cols.categorical,
    }
    optional = [*([cols.label] if cols.label else []), *suite_optional]
    problems = suite_column_problems(roles, column_set, suite_path, optional)
    fixes = []
    if problems:
        fixes += [
            "fix the column names in the config",
            "redraft the suite from the data (`aeflow expectations init --force`)",
        ]
    outside = columns_outside_the_set(document)
    if outside:
        problems += [f"{suite_path}: {line}" for line in outside]
        fixes.append("fix the suite (`aeflow expectations check` lists its problems)")
    if not against_model:  # a run that trains: its labels must read as 0/1
        label_problems = label_rule_problems(
            document, cols.label, cols.label_positive, cols.label_negative
        )
        if label_problems:
            problems += label_problems
            fixes.append("name the label values that mean anomaly in the config")
    if against_model:
        version, schema = scoring_model_schema(storage_of(cfg), model_version)
        found = (
            model_column_problems(cols.numeric, cols.categorical, schema, version) if schema else []
        )
        if found:
            problems += found
            fixes += [
                "fix the column names in the config",
                "train a model on the config's columns (`aeflow train`)",
            ]
    if problems:
        where = cfg.source or "the config"
        raise ConfigError(
            f"{where}: the config's columns do not match the data contract; no batch was read "
            "or moved:\n  "
            + "\n  ".join(problems)
            + "\nto fix: "
            + "; or ".join(dict.fromkeys(fixes))
        )
