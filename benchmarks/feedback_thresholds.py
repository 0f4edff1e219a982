"""Flag precision at a fixed review budget: thresholds from analysts' verdicts against the
label-free ``fpr`` policy, on NSL-KDD and the demo data.

The setting: a model is trained without labels and flags rows with the label-free policy (fpr 1%
of its validation scores). Analysts review flags; their verdicts then choose a threshold
(`target_precision` 0.9 and `max_f1`, models/label_thresholds.py, with aeflow's default minimum
of 10 labelled anomalies and 10 normal rows, else the fpr fallback). Each policy is then
measured on later rows the verdicts never saw.

- **Verdicts.** During a *feedback period* analysts review rows from a review queue: the rows
  scoring above the model's fpr 10% point (what a team reviews when it widens the queue to learn
  where the threshold should be). 50, 200 or 1,000 of them (seeded sample; the whole queue when it
  is smaller) get a verdict = the row's label.
- **Review budget.** In the *evaluation period* (later rows, split in batches) analysts can review
  at most 1% of a batch's rows, the flags in row order (arrival order, not by score). Flag
  precision = confirmed / reviewed flags; caught = confirmed anomalies per batch.
- **NSL-KDD.** Train on the normal rows of KDDTrain+_20Percent; the stream is KDDTest+ with attacks
  subsampled to 5% of rows (attacks are 57% there; no team reviews a stream half made of attacks),
  shuffled (seeded), first half feedback period, second half evaluation in 10 batches.
- **Demo.** `aeflow demo-data` days (no drifted or malformed day), about 2% injected anomalies:
  train on days 1-3 as they come (unlabelled, anomalies included, as in production), feedback
  period days 4-7, evaluation days 8-10 (one batch per day).

    .venv/bin/python benchmarks/feedback_thresholds.py
    .venv/bin/python benchmarks/feedback_thresholds.py --seeds 0 --datasets demo --no-write  # quick

Writes docs/benchmarks/feedback_thresholds.md unless ``--no-write``; the load average (``uptime``)
at start and end is in the file (quality numbers do not depend on it, the seconds do).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, require_datasets, write_report  # noqa: E402
from models import AutoencoderDetector, calibration  # noqa: E402
from models.label_thresholds import calibrate_from_labels  # noqa: E402

VERDICT_COUNTS = (50, 200, 1000)
REVIEW_QUEUE_FPR = 0.10
BUDGET_SHARE = 0.01
LABEL_FREE = ("fpr", 0.01)
LABEL_POLICIES = (("target_precision", 0.9), ("max_f1", 0.0))
MIN_LABELS = 10  # threshold.min_anomalies / min_normals defaults
VERDICT_DRAWS = 3  # verdict samples per fitted model
NSLKDD_ATTACK_SHARE = 0.05


@dataclass(frozen=True)
class Scenario:
    """Rows of one dataset and seed: ``train`` (features only), the feedback period and the
    evaluation period (features, 0/1 labels), and the evaluation period's batch sizes."""

    name: str
    train: pd.DataFrame
    feedback: tuple[pd.DataFrame, np.ndarray]
    evaluation: tuple[pd.DataFrame, np.ndarray]
    batches: list[int]
    numeric: list[str]
    categorical: list[str]


def nslkdd_scenario(seed: int) -> Scenario:
    from benchmarks.nslkdd import CATEGORICAL, NUMERIC, load

    folder = require_datasets("nslkdd")
    train, train_labels = load(folder / "KDDTrain+_20Percent.txt")
    test, test_labels = load(folder / "KDDTest+.txt")
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(test_labels == 0)
    n_attacks = round(normal.size * NSLKDD_ATTACK_SHARE / (1 - NSLKDD_ATTACK_SHARE))
    attacks = rng.choice(np.flatnonzero(test_labels == 1), size=n_attacks, replace=False)
    stream = rng.permutation(np.r_[normal, attacks])
    half = stream.size // 2
    rows, labels = test.iloc[stream].reset_index(drop=True), test_labels[stream]
    evaluation_rows = len(rows) - half
    return Scenario(
        "NSL-KDD",
        train.loc[train_labels == 0].reset_index(drop=True),
        (rows.iloc[:half].reset_index(drop=True), labels[:half]),
        (rows.iloc[half:].reset_index(drop=True), labels[half:]),
        [len(chunk) for chunk in np.array_split(np.arange(evaluation_rows), 10)],
        list(NUMERIC),
        list(CATEGORICAL),
    )


def demo_scenario(seed: int, rows_per_day: int) -> Scenario:
    import pyarrow.parquet as pq

    from tasks.demo_data import (
        CATEGORICAL_COLUMNS,
        LABEL_COLUMN,
        NUMERIC_COLUMNS,
        generate_demo_data,
    )
    from tasks.frames import feature_frame

    with tempfile.TemporaryDirectory(prefix="aeflow-feedback-bench-") as folder:
        manifest = generate_demo_data(
            folder, days=10, rows_per_day=rows_per_day, seed=seed, drift_day=None,
            malformed_day=None,
        )  # fmt: skip
        days = [pq.read_table(path) for path in manifest.paths]

    def part(tables) -> tuple[pd.DataFrame, np.ndarray]:
        frames = [feature_frame(t, NUMERIC_COLUMNS, CATEGORICAL_COLUMNS) for t in tables]
        labels = np.concatenate([t.column(LABEL_COLUMN).to_numpy() for t in tables])
        return pd.concat(frames, ignore_index=True), labels.astype(np.int64)

    return Scenario(
        "demo",
        part(days[:3])[0],
        part(days[3:7]),
        part(days[7:]),
        [t.num_rows for t in days[7:]],
        list(NUMERIC_COLUMNS),
        list(CATEGORICAL_COLUMNS),
    )


def review(threshold: float, scores: np.ndarray, labels: np.ndarray, batches: list[int]) -> dict:
    """Flags, reviewed flags (at most BUDGET_SHARE of each batch, in row order) and the confirmed
    ones, summed over the batches."""
    flags = reviewed = confirmed = 0
    start = 0
    for size in batches:
        flagged = np.flatnonzero(scores[start : start + size] > threshold) + start
        budget = max(1, round(BUDGET_SHARE * size))
        seen = flagged[:budget]
        flags += flagged.size
        reviewed += seen.size
        confirmed += int(labels[seen].sum())
        start += size
    return {"flags": flags, "reviewed": reviewed, "confirmed": confirmed}


def run_scenario(scenario: Scenario, seed: int) -> list[dict]:
    """Every policy's review outcome on the scenario's evaluation period, one dict per policy and
    verdict draw."""
    started = time.perf_counter()
    detector = AutoencoderDetector(
        numeric_columns=scenario.numeric,
        categorical_columns=scenario.categorical,
        threshold_method=LABEL_FREE[0],
        threshold_value=LABEL_FREE[1],
        random_state=seed,
        device="cpu",
    ).fit(scenario.train)
    fit_seconds = time.perf_counter() - started
    feedback_scores = detector.decision_function(scenario.feedback[0])
    evaluation_scores = detector.decision_function(scenario.evaluation[0])
    eval_labels = scenario.evaluation[1]
    results = [
        {
            "policy": f"{LABEL_FREE[0]} {LABEL_FREE[1]:g} (label-free)",
            "verdicts": 0,
            "fallback": False,
            "fit_seconds": fit_seconds,
            **review(detector.threshold_, evaluation_scores, eval_labels, scenario.batches),
        }
    ]
    queue_threshold = calibration.fit_threshold(
        "fpr", REVIEW_QUEUE_FPR, detector.reference_scores_, detector.reference_scores_
    )
    queue = np.flatnonzero(feedback_scores > queue_threshold)
    for draw in range(VERDICT_DRAWS):
        rng = np.random.default_rng([seed, draw])
        for count in VERDICT_COUNTS:
            picked = rng.choice(queue, size=min(count, queue.size), replace=False)
            for method, value in LABEL_POLICIES:
                threshold, record = calibrate_from_labels(
                    method, value, feedback_scores[picked], scenario.feedback[1][picked],
                    min_anomalies=MIN_LABELS, min_normals=MIN_LABELS,
                )  # fmt: skip
                fallback = threshold is None
                name = method + ("" if method == "max_f1" else f" {value:g}")
                results.append(
                    {
                        "policy": name,
                        "verdicts": int(picked.size),
                        "asked": count,
                        "fallback": fallback,
                        **review(
                            detector.threshold_ if fallback else threshold,
                            evaluation_scores,
                            eval_labels,
                            scenario.batches,
                        ),  # fmt: skip
                    }
                )
    return results


def summarise(results: list[dict], n_batches: int) -> list[list[object]]:
    """One table row per (policy, verdicts asked): means over seeds and draws."""
    frame = pd.DataFrame(results)
    frame["asked"] = frame.get("asked", pd.Series(dtype=float)).fillna(0).astype(int)
    rows = []
    for (policy, asked), group in frame.groupby(["policy", "asked"], sort=False):
        reviewed, confirmed = group["reviewed"].sum(), group["confirmed"].sum()
        rows.append(
            [
                policy,
                asked or "-",
                f"{group['verdicts'].mean():.0f}",
                f"{group['fallback'].mean():.0%}",
                f"{group['flags'].mean() / n_batches:.1f} ({group['flags'].min() / n_batches:.0f}"
                f"-{group['flags'].max() / n_batches:.0f})",
                f"{group['reviewed'].mean() / n_batches:.1f}",
                f"{confirmed / reviewed:.3f}" if reviewed else "n/a",
                f"{group['confirmed'].mean() / n_batches:.1f}",
            ]
        )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--datasets", nargs="+", default=["nslkdd", "demo"])
    parser.add_argument("--demo-rows-per-day", type=int, default=5000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    started = time.perf_counter()
    sections = []
    for dataset in args.datasets:
        results, described = [], None
        for seed in args.seeds:
            scenario = (
                nslkdd_scenario(seed)
                if dataset == "nslkdd"
                else demo_scenario(seed, args.demo_rows_per_day)
            )
            described = scenario
            results += run_scenario(scenario, seed)
            print(f"{dataset} seed {seed}: done ({time.perf_counter() - started:.0f} s)")
        header = [
            "policy", "verdicts asked", "verdicts used", "fell back", "flags / batch (range)",
            "reviewed / batch", "flag precision (reviewed)", "anomalies caught / batch",
        ]  # fmt: skip
        table = markdown_table(header, summarise(results, len(described.batches)))
        fit = np.mean([r["fit_seconds"] for r in results if "fit_seconds" in r])
        sections += [
            f"## {described.name}",
            "",
            f"Training rows {len(described.train)}; feedback period {len(described.feedback[1])} "
            f"rows ({described.feedback[1].mean():.1%} anomalies); evaluation period "
            f"{len(described.evaluation[1])} rows ({described.evaluation[1].mean():.1%} "
            f"anomalies) in {len(described.batches)} batches; review budget "
            f"{BUDGET_SHARE:.0%} of each batch. Seeds {args.seeds}, {VERDICT_DRAWS} verdict "
            f"samples per seed; mean fit {fit:.0f} s.",
            "",
            table,
            "",
        ]
        print(table)
    load_after = os.getloadavg()
    sections.append(
        f"Load average (1, 5, 15 min) at the start {', '.join(f'{v:.1f}' for v in load_before)}"
        f", at the end {', '.join(f'{v:.1f}' for v in load_after)} (2-core machine shared "
        f"with other engineers; the precision numbers do not depend on it, the fit seconds do). "
        f"Total {time.perf_counter() - started:.0f} s."
    )
    if not args.no_write:
        path = write_report(
            "feedback_thresholds",
            "Flag precision at a fixed review budget: thresholds from verdicts vs label-free fpr",
            [__doc__.split("\n\n", 1)[1].split("    .venv")[0].strip(), "", *sections],
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
