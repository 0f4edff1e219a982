"""What a search leaves beside the training reports, under ``<root>/reports/<dataset>/tuning/<study>/``:

- ``best-params.toml``: the winning parameters as a config snippet (``aeflow train --params FILE``),
- ``trials.csv`` and ``trials.md``: one row per trial,
- ``summary.json``: the objective (what, which way, its limits), the winner, the defaults' value,
- ``report.html``: trial history, parameter importances, the winner's training curves.

Each of them states the objective.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import optuna
from optuna.trial import TrialState

from models.storage import join, write_json_atomic, write_text_atomic
from tasks.io import StorageOptions
from tasks.markdown import md_text
from tasks.tuning.objectives import OBJECTIVES
from tasks.tuning.records import COMPLETE, SearchData
from tasks.tuning.search import DEFAULTS_ATTR

PARAMS_FILE, TRIALS_CSV, TRIALS_MD, SUMMARY_FILE, REPORT_FILE = (
    "best-params.toml",
    "trials.csv",
    "trials.md",
    "summary.json",
    "report.html",
)


def _better(direction: str, a: float | None, b: float | None) -> bool:
    """``a`` is strictly better than ``b`` (None is worst)."""
    if a is None:
        return False
    if b is None:
        return True
    return a > b if direction == "maximize" else a < b


def trial_rows(study: optuna.Study, searched: list[str]) -> list[dict[str, Any]]:
    """One dict per trial: number, state, value, epochs, seconds, the searched parameters, note."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        outcome = trial.user_attrs.get("outcome", {})
        params = trial.user_attrs.get("params", {})
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.value,
                "epochs": len(outcome.get("val_curve", [])),
                "seconds": outcome.get("seconds"),
                **{name: params.get(name) for name in searched},
                "note": outcome.get("message", ""),
            }
        )
    return rows


def summarize(
    study: optuna.Study, data: SearchData, searched: list[str], context: dict[str, Any]
) -> dict[str, Any]:
    """The search's result: objective, winner (best trial or the defaults), counts, context."""
    objective = OBJECTIVES[data.objective]
    defaults = study.user_attrs.get(DEFAULTS_ATTR, {})
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = study.best_trial if complete else None
    best_value = best.value if best else None
    default_value = defaults.get("value") if defaults.get("state") == COMPLETE else None
    tuned_wins = _better(objective.direction, best_value, default_value)
    params = best.user_attrs["params"] if tuned_wins else context["base_params"]
    counts = {
        state.name.lower(): 0
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    }
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return {
        "study": study.study_name,
        "objective": {
            "name": objective.name,
            "direction": objective.direction,
            "statement": objective.statement,
            "limits": objective.limits,
        },
        "notes": list(data.notes),
        "rows": {
            "fit": data.fit_rows,
            "validation": data.validation_rows,
            "holdout_untouched": data.holdout_rows,
        },
        "winner": "best trial" if tuned_wins else "the config's own parameters",
        "best_trial": best.number if best else None,
        "best_value": best_value,
        "default_value": default_value,
        "params": {name: params[name] for name in searched if name in params},
        "best_curves": best.user_attrs.get("outcome", {}) if tuned_wins else defaults,
        "trials": counts,
        **{k: v for k, v in context.items() if k != "base_params"},
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def params_snippet(summary: dict[str, Any]) -> str:
    """The winner's parameters as a TOML config snippet (a ``[model]`` table) with the objective."""
    objective = summary["objective"]
    lines = [
        f"# aeflow tune: dataset {summary['dataset']}, study {summary['study']}",
        f"# objective: {objective['name']} ({objective['direction']}): {objective['statement']}",
        f"# winner: {summary['winner']} (best trial value {summary['best_value']}, config "
        f"defaults {summary['default_value']})",
        f"# use: aeflow train --config {summary['config']} --params <this file>; the gate decides",
        "[model]",
    ]
    lines += [
        f"{name} = {_toml_value(value)}"
        for name, value in summary["params"].items()
        if value is not None
    ]
    return "\n".join(lines) + "\n"


def _markdown(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """trials.md: every value escaped (a trial's note is an error message, the study a user's name:
    a ``|`` in either would break the table, a ``[x](url)`` would become a link)."""
    objective = summary["objective"]
    header = list(rows[0]) if rows else ["number"]
    lines = [
        f"# Trials of study {md_text(summary['study'])} ({md_text(summary['dataset'])})",
        "",
        f"Objective: **{md_text(objective['name'])}** ({md_text(objective['direction'])}): "
        f"{md_text(objective['statement'])}.",
        f"Limits: {md_text(objective['limits'])}",
        "",
        "| " + " | ".join(md_text(h) for h in header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += [
        "| " + " | ".join("" if r[h] is None else md_text(r[h]) for h in header) + " |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    import csv

    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def _figure(draw) -> str:
    """A matplotlib figure drawn by ``draw(axes)`` as an inline PNG ``<img>``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(figsize=(7, 3.2))
    try:
        draw(axes)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
    finally:
        plt.close(fig)
    return (
        f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'
    )


def importances(study: optuna.Study) -> dict[str, float]:
    """fANOVA parameter importances (seeded), or {} with fewer than 2 complete trials."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (ValueError, RuntimeError):
        return {}


def _report_html(
    rows: list[dict[str, Any]], summary: dict[str, Any], weights: dict[str, float]
) -> str:
    objective = summary["objective"]
    done = [r for r in rows if r["value"] is not None]

    def history(ax):
        ax.plot([r["number"] for r in done], [r["value"] for r in done], "o", label="trial")
        best, running = [], None
        for r in done:
            running = (
                r["value"] if _better(objective["direction"], r["value"], running) else running
            )
            best.append(running)
        ax.step([r["number"] for r in done], best, where="post", label="best so far")
        if summary["default_value"] is not None:
            ax.axhline(
                summary["default_value"], color="grey", linestyle="--", label="config defaults"
            )
        ax.set_xlabel("trial")
        ax.set_ylabel(objective["name"])
        ax.legend()

    def importance(ax):
        names = list(weights)[::-1]
        ax.barh(names, [weights[n] for n in names])
        ax.set_xlabel("importance (fANOVA)")

    def curves(ax):
        winner = summary["best_curves"]
        ax.plot(winner.get("train_curve", []), label="training loss")
        ax.plot(winner.get("val_curve", []), label="validation loss")
        ax.set_xlabel("epoch")
        ax.legend()

    figures = [("Trial history", _figure(history))]
    if weights:
        figures.append(("Parameter importances", _figure(importance)))
    figures.append((f"Training curves of the winner ({summary['winner']})", _figure(curves)))
    header = list(rows[0]) if rows else []
    table = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if r[h] is None else str(r[h]))}</td>" for h in header)
        + "</tr>"
        for r in rows
    )
    params = "".join(
        f"<li><code>{html.escape(k)} = {html.escape(repr(v))}</code></li>"
        for k, v in summary["params"].items()
    )
    sections = "".join(f"<h2>{html.escape(t)}</h2>{img}" for t, img in figures)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>aeflow tune: {html.escape(summary["study"])}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}td,th{{padding:2px 6px;border-bottom:1px solid #ddd;font-size:13px}}</style></head><body>
<h1>Hyperparameter search: {html.escape(summary["dataset"])} / {html.escape(summary["study"])}</h1>
<p><b>Objective:</b> {html.escape(objective["name"])} ({objective["direction"]}): {html.escape(objective["statement"])}.</p>
<p><b>Limits:</b> {html.escape(objective["limits"])}</p>
<p><b>Winner:</b> {html.escape(summary["winner"])}; best trial value {summary["best_value"]}, config defaults {summary["default_value"]}.
Rows: {summary["rows"]["fit"]} fit, {summary["rows"]["validation"]} validation; the {summary["rows"]["holdout_untouched"]} holdout rows were not read.</p>
<ul>{params}</ul>{sections}
<h2>Trials</h2><table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in header)}</tr>{table}</table></body></html>
"""


def write_results(
    study: optuna.Study,
    data: SearchData,
    searched: list[str],
    context: dict[str, Any],
    study_dir: str,
    options: StorageOptions = None,
) -> dict[str, Any]:
    """Write the five outputs under ``study_dir``; returns the summary with their paths."""
    summary = summarize(study, data, searched, context)
    rows = trial_rows(study, searched)
    weights = importances(study)
    summary["importances"] = weights
    paths = {
        name: join(study_dir, name)
        for name in (PARAMS_FILE, TRIALS_CSV, TRIALS_MD, SUMMARY_FILE, REPORT_FILE)
    }
    summary["files"] = paths
    write_text_atomic(params_snippet(summary), paths[PARAMS_FILE], options)
    objective = summary["objective"]["name"]
    write_text_atomic(
        _csv([{"objective": objective, **r} for r in rows]), paths[TRIALS_CSV], options
    )
    write_text_atomic(_markdown(rows, summary), paths[TRIALS_MD], options)
    write_text_atomic(_report_html(rows, summary, weights), paths[REPORT_FILE], options)
    write_json_atomic(summary, paths[SUMMARY_FILE], options)
    return summary
