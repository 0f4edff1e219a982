"""metrics.json: the document that holds every number of a training run's evaluation report.

Its JSON Schema (draft 2020-12) is the data file ``metrics.schema.json`` next to this module,
shipped with the package; docs/metrics.schema.json is a copy for readers (regenerate it with
``python -m tasks.report > docs/metrics.schema.json``), explained in docs/evaluation.md.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

SCHEMA_VERSION = 1
REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"

METRICS_SCHEMA: dict[str, Any] = json.loads(
    resources.files(__package__).joinpath("metrics.schema.json").read_text("utf-8")
)


def validate_metrics(metrics: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``metrics`` does not follow :data:`METRICS_SCHEMA`
    (needs the ``jsonschema`` package, in the dev extra)."""
    import jsonschema

    jsonschema.Draft202012Validator(METRICS_SCHEMA).validate(metrics)


def schema_json() -> str:
    """:data:`METRICS_SCHEMA` as the text of docs/metrics.schema.json."""
    return json.dumps(METRICS_SCHEMA, indent=2) + "\n"


def build_metrics(
    dataset: str,
    run: str,
    evaluation: dict[str, Any],
    champion: dict[str, Any] | None,
    gate: dict[str, Any] | None,
    figures: Sequence[str],
    created_at: str | None = None,
) -> dict[str, Any]:
    """The metrics.json document: the challenger's evaluation, the champion's numbers on the same
    holdout, the gate record and the report's file names."""
    keys = [
        "model",
        "split",
        "training",
        "reconstruction",
        "scores",
        "labels",
        "threshold_policies",
        "baselines",
        "data_quality",
    ]
    holdout_scores = evaluation.get("holdout_scores_path")
    optional = {"explanations": evaluation.get("explanations")}
    if evaluation.get("feedback"):
        optional["feedback"] = evaluation["feedback"]
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "run": run,
        "created_at": created_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **{key: evaluation[key] for key in keys},
        **optional,
        "champion": champion,
        "gate": gate,
        "figures": list(figures),
        "files": {
            "report": REPORT_FILE,
            "metrics": METRICS_FILE,
            "holdout_scores": holdout_scores.rstrip("/").rsplit("/", 1)[-1]
            if holdout_scores
            else None,
        },
    }
