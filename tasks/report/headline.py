"""Numbers for people: the formatting the HTML report and the Markdown artifact share, and the
headline table both show (this model against the champion on the holdout).

Cells are HTML text: a string value is escaped with :func:`html.escape`; the Markdown artifact
unescapes them.
"""

from __future__ import annotations

import html
from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    """A value as HTML text: "–" for None, yes/no, ``digits`` significant digits (scientific
    notation from 1e5), other values escaped."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.3e}"
    return html.escape(str(value))


def pct(value: float | None) -> str:
    """A share (0-1) as a percentage with two decimals, "–" for None."""
    return "–" if value is None else f"{value:.2%}"


def headline_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """[name, this model's value, the champion's value (when it was evaluated)] per headline
    number of a metrics.json document."""
    champion = metrics.get("champion") or {}
    sources = [metrics, champion] if champion.get("reconstruction") else [metrics]

    def pick(source: dict[str, Any], section: str, key: str) -> Any:
        return (source.get(section) or {}).get(key)

    rows = [
        ["holdout rows", *[fmt(pick(s, "scores", "rows")) for s in sources]],
        ["reconstruction MSE", *[fmt(pick(s, "reconstruction", "mse")) for s in sources]],
        ["reconstruction RMSE", *[fmt(pick(s, "reconstruction", "rmse")) for s in sources]],
        ["reconstruction MAE", *[fmt(pick(s, "reconstruction", "mae")) for s in sources]],
        ["threshold", *[fmt(pick(s, "scores", "threshold")) for s in sources]],
        ["flag rate", *[pct(pick(s, "scores", "flag_rate")) for s in sources]],
        [
            "percentile calibration (KS)",
            *[fmt(pick(s, "scores", "percentile_ks")) for s in sources],
        ],
    ]
    if metrics.get("labels"):
        for key, name in (
            ("auroc", "AUROC"),
            ("auprc", "AUPRC"),
            ("precision", "precision at the threshold"),
            ("recall", "recall at the threshold"),
            ("f1", "F1 at the threshold"),
            ("false_positive_rate", "false-positive rate"),
        ):
            rows.append([name, *[fmt(pick(s, "labels", key)) for s in sources]])
        rows.append(
            [
                "precision@k (k = labelled anomalies)",
                *[
                    fmt(((s.get("labels") or {}).get("precision_at_k") or {}).get("precision"))
                    for s in sources
                ],
            ]
        )
    return rows
