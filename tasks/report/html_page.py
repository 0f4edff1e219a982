"""report.html: the evaluation report as one self-contained HTML page.

The page is the Jinja2 template ``templates/report.html.j2`` (package data). This module turns a
metrics.json document into the template's values: tables as ``{"header", "rows", "css"}`` whose
cells are HTML text, every value from the data escaped once here with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from functools import cache
from typing import Any

from markupsafe import Markup

from tasks.fit_checks import calibration_text
from tasks.report.figures import FIGURE_TITLES
from tasks.report.headline import fmt, headline_rows, pct
from tasks.report.metrics import METRICS_FILE

TEMPLATE = "report.html.j2"


@cache
def _template() -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("tasks.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template(TEMPLATE)


def _esc(value: Any) -> Markup:
    """``value`` as HTML text (quotes escaped as :func:`html.escape` does)."""
    return Markup(html.escape(str(value)))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> dict[str, Any]:
    """A table for the template: ``header`` is plain text, ``rows`` hold HTML text cells."""
    return {
        "header": [_esc(name) for name in header],
        "rows": [[Markup(str(cell)) for cell in row] for row in rows],
        "css": css,
    }


def _gate(gate: dict[str, Any] | None) -> dict[str, Any] | None:
    if not gate:
        return None
    if gate["promoted"]:
        state = "promoted"
    else:
        state = "refused" if gate["decision"] == "refuse" else "not applied"
    verdict = {
        "promoted": "Promoted: this model is now the champion.",
        "refused": f"Refused: the champion stays {gate.get('champion_after') or '–'}.",
        "not applied": f"Gate decision '{gate['decision']}' not applied (promotion was off).",
    }[state]
    return {
        "state": state.replace(" ", "-"),
        "verdict": _esc(verdict),
        "reasons": [_esc(reason) for reason in gate["reasons"]],
    }


def _explanations(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """The planted-anomaly explanation check (tasks/explanation_check.py); None: it did not run."""
    if not check:
        return None
    kinds = check.get("by_kind") or {}
    rows = [
        ["all", check["rows"], pct(check["top1"]), pct(check["top3"])],
        *(
            [html.escape(kind), part["rows"], pct(part["top1"]), ""]
            for kind, part in sorted(kinds.items())
        ),
    ]
    typical = check.get("typical")
    if typical:  # reports written before it have none
        rows.append(
            [
                "rows typical before planting",
                typical["rows"],
                pct(typical["top1"]),
                pct(typical["top3"]),
            ]
        )
    weak = sorted(
        name for name, part in (check.get("by_column") or {}).items() if (part["top1"] or 0) < 0.9
    )
    return {
        "shift": f"{check['shift_robust_std']:g}",
        "rare_level_share": f"{check['rare_level_share']:.0%}",
        "direction": pct(check["direction"]),
        "table": _table(["planted", "rows", "top-1", "top-3"], rows, "numbers"),
        "weak": _esc(", ".join(weak) or "none"),
    }


def _anchors(metrics: dict[str, Any], label_cells: Any) -> dict[str, Any]:
    """The autoencoder and the classical anchors on the holdout."""
    labels = metrics.get("labels")
    rows = [
        [
            "autoencoder",
            fmt(metrics["model"]["threshold"]),
            pct(metrics["scores"]["flag_rate"]),
            *label_cells(labels, ("auroc", "auprc", "f1")),
            "1",
            fmt(metrics["training"]["fit_seconds"]),
        ]
    ]
    for b in metrics["baselines"]:
        rows.append(
            [
                html.escape(b["name"].replace("_", " ")),
                fmt(b["threshold"]),
                pct(b["flag_rate"]),
                *label_cells(b["labels"], ("auroc", "auprc", "f1")),
                fmt(b["rank_correlation"], 3),
                fmt(b["fit_seconds"]),
            ]
        )
    label_header = ["AUROC", "AUPRC", "F1"] if labels else []
    header = ["model", "threshold", "flag rate", *label_header, "rank corr. with AE", "fit s"]
    return _table(header, rows, "numbers")


def _policies(metrics: dict[str, Any], label_cells: Any) -> dict[str, Any]:
    rows = [
        [
            html.escape(p["method"]) + (" (configured)" if p["configured"] else ""),
            fmt(p["value"]),
            fmt(p["threshold"]),
            pct(p["flag_rate"]),
            *label_cells(p, ("precision", "recall", "f1")),
        ]
        for p in metrics["threshold_policies"]
    ]
    label_header = ["precision", "recall", "F1"] if metrics.get("labels") else []
    header = ["policy", "value", "threshold", "holdout flag rate", *label_header]
    if any("fitted_on" in p for p in metrics["threshold_policies"]):
        header.append("chosen on")
        for row, policy in zip(rows, metrics["threshold_policies"], strict=True):
            row.append(html.escape(policy.get("fitted_on") or ""))
    return _table(header, rows, "numbers")


def _feedback(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Flag precision per batch date from analysts' verdicts (None: no verdict yet)."""
    feedback = metrics.get("feedback")
    if not feedback:
        return None
    rows = [
        [
            html.escape(e["date"]),
            e["reviewed"],
            e["confirmed"],
            e["false_positives"],
            pct(e["precision"]),
            e["missed"],
            html.escape(", ".join(e.get("models") or [])),
        ]
        for e in feedback["over_time"]
    ]
    overall = feedback["overall"]
    rows.append(
        [
            "all dates",
            overall["reviewed"],
            overall["confirmed"],
            overall["false_positives"],
            pct(overall["precision"]),
            overall["missed"],
            "",
        ]
    )
    header = ["batch date", "reviewed flags", "confirmed", "false positives", "precision"]
    return _table([*header, "missed anomalies", "scored by"], rows, "numbers")


def _columns(metrics: dict[str, Any]) -> dict[str, Any]:
    """Reconstruction per column, with the champion's MSE beside it."""
    champion = metrics.get("champion") or {}
    champion_columns = {
        c["column"]: c for c in (champion.get("reconstruction") or {}).get("per_column", [])
    }
    rows = [
        [
            html.escape(c["column"]),
            c["kind"],
            c["rows"],
            fmt(c["mse"]),
            fmt(c["rmse"]),
            fmt(c["mae"]),
            fmt(c["accuracy"]),
            fmt((champion_columns.get(c["column"]) or {}).get("mse")),
        ]
        for c in metrics["reconstruction"]["per_column"]
    ]
    header = ["column", "kind", "rows", "MSE", "RMSE", "MAE", "accuracy", "champion MSE"]
    return _table(header, rows, "numbers")


def _data_quality(quality: dict[str, Any]) -> dict[str, Any]:
    """Class balance, the leakage check (15 columns at most) and the train-vs-holdout shift."""
    balance = quality["class_balance"]
    class_balance = None
    if balance:
        class_balance = _table(
            ["rows", "count", "labelled anomalies", "share"],
            [
                [
                    part,
                    balance[part]["rows"],
                    balance[part]["positives"],
                    pct(balance[part]["share"]),
                ]
                for part in ("train", "holdout")
            ],
            "numbers",
        )
    leakage = None
    if quality["leakage"]:
        leakage = _table(
            ["column", "kind", "AUROC", "measured on"],
            [
                [html.escape(r["column"]), r["kind"], fmt(r["auroc"]), r["rows"]]
                for r in quality["leakage"][:15]
            ],
            "numbers",
        )
    shift = _table(
        ["column", "kind", "PSI", "null share train", "null share holdout"],
        [
            [
                html.escape(r["column"]),
                r["kind"],
                fmt(r["psi"], 3),
                pct(r["null_share_train"]),
                pct(r["null_share_holdout"]),
            ]
            for r in quality["shift"]
        ],
        "numbers",
    )
    return {"class_balance": class_balance, "leakage": leakage, "shift": shift}


def _split_and_training(metrics: dict[str, Any]) -> dict[str, Any]:
    split, model, training = metrics["split"], metrics["model"], metrics["training"]
    if split["timestamp_column"]:
        how = f" on {html.escape(split['timestamp_column'])}"
    else:
        how = f" (seed {split['seed']})"
    rows = [
        ["holdout split", html.escape(split["method"]) + how],
        ["training rows / holdout rows", f"{split['train_rows']} / {split['holdout_rows']}"],
        ["training period", f"{fmt(split['train_start'])} – {fmt(split['train_end'])}"],
        ["holdout period", f"{fmt(split['holdout_start'])} – {fmt(split['holdout_end'])}"],
        [
            "threshold policy",
            html.escape(model["threshold_method"])
            + ("" if model["threshold_method"] == "max_f1" else f" {model['threshold_value']}"),
        ],
        ["threshold calibrated on", html.escape(calibration_text(training.get("calibration")))],
        [
            "epochs run (best) of the cap",
            f"{training['epochs_run']} ({training['best_epoch']}) of {training.get('epochs', '?')}",
        ],
        ["fit seconds", fmt(training["fit_seconds"])],
        ["latent features", model["latent_dim"]],
    ]
    return _table(["", ""], rows, "meta")


def render_html(metrics: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The report as one HTML document; ``figures`` are embedded as base64 PNG ``<img>`` tags."""
    champion = metrics.get("champion") or {}
    labels = metrics.get("labels")

    def label_cells(found: dict[str, Any] | None, keys: Sequence[str]) -> list[str]:
        # Without labels the label columns are left out rather than shown empty.
        return [fmt((found or {}).get(key)) for key in keys] if labels else []

    header = ["metric", "this model"]
    champion_error = None
    if champion.get("reconstruction"):
        header.append(f"champion {champion['version']}")
    elif champion.get("error"):
        champion_error = {"version": _esc(champion["version"]), "error": _esc(champion["error"])}
    confusion = None
    if labels:
        c = labels["confusion"]
        confusion = _table(
            ["", "flagged", "not flagged"],
            [["labelled anomaly", c["tp"], c["fn"]], ["labelled normal", c["fp"], c["tn"]]],
            "numbers",
        )
    return _template().render(
        dataset=_esc(metrics["dataset"]),
        run=_esc(metrics["run"]),
        version=_esc(metrics["model"]["version"]),
        created_at=_esc(metrics["created_at"]),
        metrics_file=METRICS_FILE,
        gate=_gate(metrics.get("gate")),
        warnings=[_esc(w) for w in metrics["data_quality"]["warnings"]],
        champion_error=champion_error,
        headline=_table(header, headline_rows(metrics), "numbers"),
        figures=[
            {
                "name": name,
                "title": _esc(FIGURE_TITLES[name]),
                "png": base64.b64encode(png).decode("ascii"),
            }
            for name, png in figures.items()
        ],
        confusion=confusion,
        anchors=_anchors(metrics, label_cells),
        explanations=_explanations(metrics.get("explanations")),
        policies=_policies(metrics, label_cells),
        feedback=_feedback(metrics),
        columns=_columns(metrics),
        **_data_quality(metrics["data_quality"]),
        split=_split_and_training(metrics),
    )
