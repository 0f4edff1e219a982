"""Do explanations point at the cause? Planted single-column anomalies and the demo's injected ones.

Real tables (``benchmarks/_tables.py``): aeflow is fitted on each table's training part (its
defaults, contaminated rows included, labels unused), then one anomaly is planted in each of up to
1,000 normal test rows (``tasks/explanation_check.py``: a numeric value moved 8 robust standard
deviations up or down, or a categorical level replaced by the column's rarest one, for columns whose
rarest level has at most 2% of the rows). bank is cut chronologically (as in ``downstream.py``),
and its later rows have drifted; ``bank_random`` plants into the same rows split at random, which
separates the drift from the model. Reported: the share of rows whose first ``top_features``
column is the planted one (top-1, the target), whose first three include it (top-3), and, for
numeric plantings, whose ``explain(details=True)`` direction matches the move.

The demo (``tasks/demo_data.py``): aeflow is fitted on 6 generated days (as ``make demo``) and
explains the injected anomalies of the next day. Single-column kinds (an out-of-range value, an
amount far from the customer's history) count a hit when the first column is the changed one;
multi-column kinds when it is one of the changed columns.

    .venv/bin/python benchmarks/explanations.py
    .venv/bin/python benchmarks/explanations.py --tables default --seeds 0 --no-demo --no-write
    .venv/bin/python benchmarks/explanations.py --grid 0.98,0.99 3,10    # the ranking's ablation

How a row's columns are ranked (``explanation_quantile``, ``explanation_floor``) changes no score,
so ``--grid`` fits each table once and re-ranks its contributions for every pair.

Writes docs/benchmarks/explanations.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, write_report  # noqa: E402
from benchmarks._tables import Table, downstream_table, fit_aeflow, quality_table  # noqa: E402
from models import AutoencoderDetector  # noqa: E402
from tasks.explanation_check import Planting, check, plant  # noqa: E402

TABLES = ("nslkdd", "churn", "attrition", "default", "synthetic", "bank", "bank_random", "adult")
DOWNSTREAM_ONLY = ("bank", "bank_random", "adult")
TARGET = 0.90
PLANTED_COLUMNS = [
    "table",
    "rows/seed",
    "top-1",
    "top-3",
    "top-1 numeric",
    "top-1 categorical",
    "direction right (numeric)",
    "typical before planting",
    "top-1, typical rows",
    "numeric, typical rows",
    "categorical, typical rows",
]


def bank_random(seed: int) -> Table:
    """bank's rows split at random (70/30, seeded) instead of chronologically: the same rows, without
    the later campaign's drift (its test part has months never or rarely seen in training, and
    seven times the share of previously contacted customers), so a planted column competes only
    with ordinary rows."""
    full = downstream_table("bank", seed)
    frame = pd.concat([full.train, full.test], ignore_index=True)
    y = np.concatenate([full.y_train, full.y_test])
    train, test, y_train, y_test = train_test_split(frame, y, test_size=0.3, random_state=seed)
    return replace(
        full,
        name="bank_random",
        train=train.reset_index(drop=True),
        test=test.reset_index(drop=True),
        y_train=y_train,
        y_test=y_test,
    )


def planted_table(name: str, seed: int, params: dict) -> tuple[Any, pd.DataFrame, Planting]:
    """(the detector fitted on table ``name``'s training part, that part, the planted rows)."""
    if name == "bank_random":
        table = bank_random(seed)
    elif name in DOWNSTREAM_ONLY:
        table = downstream_table(name, seed)
    else:
        table = quality_table(name, seed)
    detector, _ = fit_aeflow(table, seed, params)
    # Labels of bank and adult are outcomes, not anomalies: every test row may be planted into.
    normal = table.test if name in DOWNSTREAM_ONLY else table.test.loc[table.y_test == 0]
    planting = plant(table.train, normal, table.numeric, table.categorical, seed)
    return detector, table.train, planting


def table_check(name: str, seed: int, params: dict) -> dict:
    detector, _, planting = planted_table(name, seed, params)
    return check(detector, planting)


def demo_check(seed: int, params: dict, rows_per_day: int = 20_000) -> dict:
    """Fit on 6 demo days, explain the injected anomalies of day 7."""
    detector, _, injected, changed = demo_injected(seed, params, rows_per_day)
    top = detector.score(injected, top_k=3).top_features
    first = [names.split(",")[0] for names in top]
    single = np.array([len(columns) == 1 for columns in changed])
    hit = np.array([f in columns for f, columns in zip(first, changed, strict=True)])
    return {
        "rows": int(len(injected)),
        "top1": float(hit.mean()),
        "single_rows": int(single.sum()),
        "single_top1": float(hit[single].mean()) if single.any() else None,
        "multi_top1": float(hit[~single].mean()) if (~single).any() else None,
    }


def demo_injected(
    seed: int, params: dict, rows_per_day: int = 20_000
) -> tuple[Any, pd.DataFrame, pd.DataFrame, list[set[str]]]:
    """(the detector fitted on 6 demo days, those days' rows, day 7's injected rows, the columns
    each injected row had changed)."""
    import tasks.demo_data as demo

    touched_per_day: list[dict[str, np.ndarray]] = []
    inject = demo.inject_anomalies

    def capture(rng, numeric, categorical):
        label, counts, touched = inject(rng, numeric, categorical)
        touched_per_day.append(touched)
        return label, counts, touched

    demo.inject_anomalies = capture
    try:
        with tempfile.TemporaryDirectory() as folder:
            manifest = demo.generate_demo_data(
                folder, days=7, rows_per_day=rows_per_day, seed=seed, drift_day=None,
                malformed_day=None,
            )  # fmt: skip
            frames = [pd.read_parquet(path) for path in manifest.paths]
    finally:
        demo.inject_anomalies = inject
    numeric = [
        "amount", "amount_7d_avg", "merchant_risk_score", "distance_from_home_km",
        "seconds_since_last_tx", "tx_count_24h", "customer_age", "account_age_days",
        "credit_limit", "balance_ratio",
    ]  # fmt: skip
    categorical = ["merchant_category", "channel", "country"]
    train = pd.concat(frames[:6], ignore_index=True)
    detector = AutoencoderDetector(
        numeric_columns=numeric, categorical_columns=categorical, random_state=seed, **params
    ).fit(train)
    test, touched = frames[6], touched_per_day[6]
    injected = np.flatnonzero(test[demo.LABEL_COLUMN].to_numpy() == 1)
    changed = [{column for column, mask in touched.items() if mask[row]} for row in injected]
    return detector, train, test.iloc[injected], changed


def ranking_grid(
    tables: list[str], seeds: list[int], quantiles: list[float], floors: list[float], demo: bool
) -> list[str]:
    """Top-1 for every (``explanation_quantile``, ``explanation_floor``) pair: one fit per table
    and seed (the pair changes no score or contribution, only the ranking), each pair's rank
    scale refitted from the fit rows' contributions. Markdown lines."""
    checks = {}  # name -> [(detector, fit-row contributions, planted contributions, hit test)]
    for name in tables:
        for seed in seeds:
            detector, train, planting = planted_table(name, seed, {})
            columns = list(detector.feature_names_in_)
            planted = np.array([columns.index(c) for c in planting.column])
            checks.setdefault(name, []).append(
                (detector, detector.explain(train, top_k=None).to_numpy(),
                 detector.explain(planting.rows, top_k=None).to_numpy(),
                 lambda first, planted=planted: first == planted)
            )  # fmt: skip
    if demo:
        for seed in seeds:
            detector, train, injected, changed = demo_injected(seed, {})
            columns = list(detector.feature_names_in_)
            sets = [{columns.index(c) for c in row} for row in changed]
            checks.setdefault("demo", []).append(
                (detector, detector.explain(train, top_k=None).to_numpy(),
                 detector.explain(injected, top_k=None).to_numpy(),
                 lambda first, sets=sets: np.array([f in s for f, s in zip(first, sets, strict=True)]))
            )  # fmt: skip
    rows = []
    for quantile in quantiles:
        for floor in floors:
            cells = []
            for runs in checks.values():
                hits = []
                for detector, fit_rows, rows_checked, hit in runs:
                    scorer = detector.column_scorer_.with_rank_scale(fit_rows, quantile, floor)
                    hits.append(hit(scorer.ranking_key(rows_checked).argmax(axis=1)).mean())
                cells.append(float(np.mean(hits)))
            rows.append([quantile, floor, *cells, float(np.mean(cells)), float(np.min(cells))])
    header = ["explanation_quantile", "explanation_floor", *checks, "mean", "min"]
    return [markdown_table(header, rows)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="*", default=list(TABLES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--no-demo", action="store_true", help="skip the demo's injected anomalies")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--params",
        type=json.loads,
        default={},
        metavar="JSON",
        help="detector parameters overriding the defaults in every fit, e.g. "
        "'{\"typical_error_floor\": 0.1}' (with --no-write, to compare with the doc's table)",
    )
    parser.add_argument(
        "--grid",
        nargs=2,
        metavar=("QUANTILES", "FLOORS"),
        help="print top-1 for each explanation_quantile x explanation_floor pair instead, e.g. "
        "'0.95,0.98,0.99,0.995' '1,3,10,30' (one fit per table and seed; implies --no-write)",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.grid:
        torch.set_num_threads(args.threads)
        quantiles, floors = ([float(v) for v in part.split(",")] for part in args.grid)
        print("\n".join(ranking_grid(args.tables, args.seeds, quantiles, floors, not args.no_demo)))
        return
    if args.params and not args.no_write:
        parser.error("--params measures a variant: add --no-write (the doc shows the defaults)")
    torch.set_num_threads(args.threads)

    rows = []
    for name in args.tables:
        runs = []
        for seed in args.seeds:
            runs.append(table_check(name, seed, args.params))
            print(f"{name:10s} seed {seed}: top-1 {runs[-1]['top1']:.3f}", flush=True)
        numeric = [r["by_kind"].get("numeric", {}).get("top1") for r in runs]
        categorical = [r["by_kind"].get("categorical", {}).get("top1") for r in runs]
        rows.append(
            [
                name,
                int(np.mean([r["rows"] for r in runs])),
                float(np.mean([r["top1"] for r in runs])),
                float(np.mean([r["top3"] for r in runs])),
                _mean(numeric),
                _mean(categorical),
                _mean([r["direction"] for r in runs]),
                float(np.mean([r["typical"]["rows"] / max(1, r["rows"]) for r in runs])),
                _mean([r["typical"]["top1"] for r in runs]),
                _mean([r["typical"]["by_kind"].get("numeric") for r in runs]),
                _mean([r["typical"]["by_kind"].get("categorical") for r in runs]),
            ]
        )
    sections = [
        f"Tables: {', '.join(args.tables)}; seeds {args.seeds}; aeflow "
        f"{'with ' + json.dumps(args.params) if args.params else 'defaults'}; protocol in the "
        "script's docstring. Target (issue 14): top-1 at least 90% on every table.",
        "",
        "## Planted single-column anomalies",
        "",
        markdown_table(PLANTED_COLUMNS, rows),
        "",
        "Tables below the target: " + _below_target(rows, "top-1"),
        "",
        "Over the rows typical before the planting (every numeric value inside the central 99% "
        "of its training values, every level held by at least 2% of the training rows; "
        "tasks/explanation_check.py), tables below the target: "
        + _below_target(rows, "top-1, typical rows"),
        "",
    ]
    if not args.no_demo:
        demo = [demo_check(seed, args.params) for seed in args.seeds]
        sections += [
            "## The demo's injected anomalies (day 7, model fitted on days 1-6)",
            "",
            markdown_table(
                [
                    "injected rows/seed",
                    "top-1 (any changed column)",
                    "single-column kinds: rows",
                    "single-column kinds: top-1",
                    "multi-column kinds: top-1 is a changed column",
                ],
                [
                    [
                        int(np.mean([d["rows"] for d in demo])),
                        float(np.mean([d["top1"] for d in demo])),
                        int(np.mean([d["single_rows"] for d in demo])),
                        _mean([d["single_top1"] for d in demo]),
                        _mean([d["multi_top1"] for d in demo]),
                    ]
                ],
            ),  # fmt: skip
            "",
        ]
    print("\n".join(sections))
    if not args.no_write:
        title = "Explanations: planted single-column anomalies and the demo's injected ones"
        print(f"wrote {write_report('explanations', title, sections)}")


def _below_target(rows: list[list], column: str) -> str:
    """The tables whose ``column`` (of :data:`PLANTED_COLUMNS`) is under :data:`TARGET`."""
    at = PLANTED_COLUMNS.index(column)
    return ", ".join(f"{r[0]} ({r[at]:.3f})" for r in rows if r[at] < TARGET) or "none"


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


if __name__ == "__main__":
    main()
