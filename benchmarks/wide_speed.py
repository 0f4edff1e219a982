"""Fit and scoring time of aeflow's defaults on tables of many flags or categorical columns.

train_speed.py times a numeric table; a table whose columns are mostly 0/1 flags (ADBench's
InternetAds: 1,555 of them) or categorical columns trains one cross-entropy block per column, and
its cost grows with the number of blocks. Generated tables (seeded; every value 0/1 with a 1% share
of ones, or one of 5 levels), 5% of the rows anomalous (columns drawn at random for each such row
set to their rare value), aeflow's defaults (early stopping on), one torch thread. Reported: the fit's wall seconds,
epochs run and seconds per epoch, scoring microseconds per row (``decision_function`` on fresh
rows), and the AUROC on those rows (a check that the fit learned something; the training table
holds 5% anomalous rows too).

    .venv/bin/python benchmarks/wide_speed.py
    .venv/bin/python benchmarks/wide_speed.py --flags 100 --rows 2000 --no-write   # quick

Writes docs/benchmarks/wide_speed.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, write_report  # noqa: E402
from models import AutoencoderDetector  # noqa: E402

ANOMALY_SHARE = 0.05


def flag_table(n_rows: int, n_flags: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_rows, n_flags) float 0/1 with 1% ones, and (n_rows,) labels: each anomalous row has 10
    more flags set, drawn at random for that row."""
    rng = np.random.default_rng(seed)
    values = (rng.random((n_rows, n_flags)) < 0.01).astype(np.float64)
    labels = np.zeros(n_rows, dtype=np.int64)
    anomalous = rng.permutation(n_rows)[: int(ANOMALY_SHARE * n_rows)]
    labels[anomalous] = 1
    for row in anomalous:
        values[row, rng.choice(n_flags, size=min(10, n_flags), replace=False)] = 1.0
    return values, labels


def level_table(n_rows: int, n_columns: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """(n_rows, n_columns) categorical frame of 5 levels with shares 60/25/10/4/1%, and (n_rows,)
    labels: each anomalous row has 5 columns, drawn at random for that row, at the 1% level."""
    rng = np.random.default_rng(seed)
    levels = np.array(["a", "b", "c", "d", "e"])
    codes = rng.choice(5, size=(n_rows, n_columns), p=[0.6, 0.25, 0.1, 0.04, 0.01])
    labels = np.zeros(n_rows, dtype=np.int64)
    anomalous = rng.permutation(n_rows)[: int(ANOMALY_SHARE * n_rows)]
    labels[anomalous] = 1
    for row in anomalous:
        codes[row, rng.choice(n_columns, size=min(5, n_columns), replace=False)] = 4
    frame = pd.DataFrame(levels[codes], columns=[f"c{j}" for j in range(n_columns)])
    return frame, labels


def measure(name: str, make, n_rows: int, width: int, categorical: bool) -> list[str]:
    train, _ = make(n_rows, width, 0)
    test, labels = make(n_rows, width, 1)
    columns = {"categorical_columns": list(train.columns)} if categorical else {}
    started = time.perf_counter()
    detector = AutoencoderDetector(random_state=0, **columns).fit(train)
    fit_seconds = time.perf_counter() - started
    epochs = int(detector.history_["epochs_run"])  # one member with the defaults
    started = time.perf_counter()
    scores = detector.decision_function(test)
    score_seconds = time.perf_counter() - started
    print(f"{name}: fit {fit_seconds:.1f} s, {epochs} epochs, score {score_seconds:.2f} s")
    return [
        name,
        f"{n_rows:,} x {width:,}",
        str(detector.layout_.n_features),
        f"{fit_seconds:.1f}",
        str(epochs),
        f"{fit_seconds / max(1, epochs):.2f}",
        f"{1e6 * score_seconds / len(test):.0f}",
        f"{roc_auc_score(labels, scores):.3f}",
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--flags", type=int, nargs="+", default=[100, 400, 1555])
    parser.add_argument("--categorical", type=int, nargs="+", default=[200])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = [
        measure(f"{width} flags", flag_table, args.rows, width, False) for width in args.flags
    ] + [
        measure(f"{width} categorical (5 levels)", level_table, args.rows, width, True)
        for width in args.categorical
    ]
    sections = [
        f"Generated tables of {args.rows:,} rows (fit on one, scored on another of the same "
        "kind), aeflow's defaults, one torch thread. Protocol in the script's docstring.",
        "",
        markdown_table(
            [
                "table",
                "rows x columns",
                "features",
                "fit s",
                "epochs run",
                "fit s / epoch",
                "score us / row",
                "AUROC",
            ],
            rows,
        ),
    ]
    if not args.no_write:
        path = write_report(
            "wide_speed", "Fit and scoring time on tables of many flags or categories", sections
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
