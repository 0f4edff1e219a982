"""Checks a run makes before it touches any batch.

The config's columns must be in the suite's column set (a run that validates) and be the columns
the scoring model was trained on (a run that scores): a typo in the config is a config error that
names the columns and the fix, and every batch stays in incoming/. The CLI runs these before
Prefect starts; the flows run them again, for deployments started without the CLI.
"""

from __future__ import annotations

from flows.config import ConfigError, PipelineConfig


def check_config_columns(
    cfg: PipelineConfig,
    model_version: str | None = None,
    against_model: bool = True,
    suite_required: bool = True,
) -> None:
    """Raise :class:`ConfigError` when the config's columns disagree with the suite or (with
    ``against_model``) with ``model_version``, the champion by default (nothing to compare before
    the first model is trained). ``suite_required=False``: a run that does not validate (retrain)
    skips the suite when its file does not exist."""
    from models.registry import ModelRegistry
    from tasks.contract import (
        model_column_problems,
        model_schema,
        suite_column_problems,
        suite_columns,
    )
    from tasks.io import Storage, exists, is_local
    from tasks.validation import read_suite_document

    cols, opts = cfg.columns, cfg.storage.options
    suite_path = cfg.suite_path
    suite_opts = None if is_local(suite_path) else opts
    if not suite_required and not exists(suite_path, suite_opts):
        return
    # The column set only: validation checks the whole suite (and pays for importing GX) later.
    column_set, suite_optional = suite_columns(read_suite_document(suite_path, suite_opts))
    roles = {
        "columns.id": [cols.id],
        "columns.timestamp": [cols.timestamp] if cols.timestamp else [],
        "columns.numeric": cols.numeric,
        "columns.categorical": cols.categorical,
    }
    optional = [*([cols.label] if cols.label else []), *suite_optional]
    problems = suite_column_problems(roles, column_set, suite_path, optional)
    fixes = ["fix the column names in the config"]
    if problems:
        fixes.append("redraft the suite from the data (`aeflow expectations init --force`)")
    if against_model:
        models = Storage.from_settings(cfg.storage, cfg.dataset).models
        version = model_version or ModelRegistry(models, opts).champion()
        schema = model_schema(models, version, opts) if version else None
        found = (
            model_column_problems(cols.numeric, cols.categorical, schema, version) if schema else []
        )
        if found:
            problems += found
            fixes.append("train a model on the config's columns (`aeflow train`)")
    if problems:
        where = cfg.source or "the config"
        raise ConfigError(
            f"{where}: the config's columns do not match the data contract; no batch was read "
            "or moved:\n  " + "\n  ".join(problems) + "\nto fix: " + "; or ".join(fixes)
        )
