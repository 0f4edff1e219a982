"""Ranking quality of aeflow's defaults against the anchors on ADBench-style ``.npz`` sets.

ADBench's unsupervised protocol (see ../shared/datasets/README.md): for each set and seed, a stratified
70/30 split, MinMax scaling with training statistics, detectors fitted on the training part without
labels (it still holds anomalies), AUROC and AUPRC on the test part. Every method runs in the same
process, on the same splits, one after the other. The anchors are PyOD's IForest, ECOD, HBOS, KNN,
PCA, AutoEncoder and DIF with their defaults (``tasks/anchors.py``).

    .venv/bin/python benchmarks/quality.py ../shared/datasets/adbench
    .venv/bin/python benchmarks/quality.py ../shared/datasets/adbench --datasets 4_breastw 29_Pima \\
        --seeds 0 --no-write                                   # a quick subset while developing
    .venv/bin/python benchmarks/quality.py ../shared/datasets/adbench --seeds 0 --baselines \
        --variant 'latent 2={"latent_dim": 2}' --no-write          # try a variant

Needs the ``bench`` extra (``pip install -e '.[bench]'``) for PyOD. Writes
docs/benchmarks/quality.md unless ``--no-write``. The ablation of the defaults over these sets and
the real tables is ``benchmarks/ablation.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    adbench_split,
    add_variant_argument,
    auroc_auprc,
    cached,
    load_npz,
    markdown_table,
    parse_variants,
    rank_summary,
    write_report,
)
from models import AutoencoderDetector  # noqa: E402
from tasks.anchors import ANCHORS, fit_score  # noqa: E402


def score_method(method: str, params: dict | None, X_train, X_test, seed: int):
    """Fit one method on ``X_train``; return (test scores, fit + score seconds)."""
    started = time.perf_counter()
    if params is not None:
        detector = AutoencoderDetector(random_state=seed, **params).fit(X_train)
        scores = detector.decision_function(X_test)
    else:
        scores = fit_score(method, seed, X_train, [X_test], use_pyod=True)[0]
    return scores, time.perf_counter() - started


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of ADBench .npz files")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="*", help="only these set names (file stems)")
    parser.add_argument(
        "--baselines", nargs="*", default=list(ANCHORS), help=f"anchors, a subset of {ANCHORS}"
    )
    add_variant_argument(parser, "'latent 2={\"latent_dim\": 2}'")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for every method (1: fastest for these small networks on a "
        "shared machine)",
    )
    parser.add_argument(
        "--cache", type=Path, help="folder for the anchors' per-split results (resumable)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only, keep the docs")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    files = sorted(f for folder in args.folders for f in folder.glob("*.npz"))
    if args.datasets:
        files = [f for f in files if f.stem in set(args.datasets)]
    if not files:
        sys.exit(f"no .npz files found in {[str(f) for f in args.folders]}")

    methods: dict[str, dict | None] = {"aeflow (defaults)": {}}
    methods.update({name: None for name in args.baselines})
    for name, params in parse_variants(args.variant).items():
        methods[f"ablation: {name}"] = params

    auroc = defaultdict(lambda: defaultdict(list))
    auprc = defaultdict(lambda: defaultdict(list))
    seconds = defaultdict(float)
    for path in files:
        X, y = load_npz(path)
        for seed in args.seeds:
            X_train, X_test, y_test = adbench_split(X, y, seed)
            for method, params in methods.items():

                def run(method=method, params=params, split=(X_train, X_test, y_test, seed)):
                    train, test, labels, split_seed = split
                    scores, elapsed = score_method(method, params, train, test, split_seed)
                    return [*auroc_auprc(labels, scores), elapsed]

                cache = args.cache if params is None else None  # aeflow is what is measured
                roc, pr, elapsed = cached(cache, f"{method}/{path.stem}_{seed}", run)
                auroc[method][path.stem].append(roc)
                auprc[method][path.stem].append(pr)
                seconds[method] += elapsed
                print(f"{path.stem:16s} seed {seed} {method:40s} AUROC {roc:.3f} AUPRC {pr:.3f}")

    names = [f.stem for f in files]
    main_methods = ["aeflow (defaults)", *args.baselines]

    def per_dataset(table, methods_shown):
        rows = [[n, *(float(np.mean(table[m][n])) for m in methods_shown)] for n in names]
        rows.append(["**mean**", *(mean_of(table[m]) for m in methods_shown)])
        return markdown_table(["dataset", *methods_shown], rows)

    def mean_of(per_set) -> float:
        return float(np.mean([np.mean(v) for v in per_set.values()]))

    summary = [[m, mean_of(auroc[m]), mean_of(auprc[m]), f"{seconds[m]:.1f}"] for m in main_methods]
    ours = "aeflow (defaults)"
    anchors = [m for m in main_methods if m != ours]
    per_set = {m: {n: float(np.mean(auroc[m][n])) for n in names} for m in main_methods}
    first, top2, ranks = rank_summary(per_set, ours)
    target_lines = []
    if anchors:
        best_roc = max(anchors, key=lambda m: mean_of(auroc[m]))
        best_pr = max(anchors, key=lambda m: mean_of(auprc[m]))
        target_lines = [
            "## Targets (issue 14)",
            "",
            f"- mean AUROC {mean_of(auroc[ours]):.3f} (target >= 0.85); best anchor {best_roc} "
            f"{mean_of(auroc[best_roc]):.3f}: margin {mean_of(auroc[ours]) - mean_of(auroc[best_roc]):+.3f} "
            "(target >= +0.02)",
            f"- mean AUPRC {mean_of(auprc[ours]):.3f} (target >= 0.56); best anchor {best_pr} "
            f"{mean_of(auprc[best_pr]):.3f}: margin {mean_of(auprc[ours]) - mean_of(auprc[best_pr]):+.3f} "
            "(target >= +0.02)",
            f"- aeflow first by AUROC on {first} of {len(names)} sets, first or second on {top2} "
            f"(target >= 9); ranks per set: "
            + ", ".join(f"{n} {r}" for n, r in zip(names, ranks, strict=True)),
            "",
        ]
    sections = [
        f"Sets: {len(names)} from {', '.join(str(f) for f in args.folders)}; seeds "
        f"{args.seeds}; torch threads: {args.threads}. Protocol: ADBench unsupervised (stratified "
        "70/30 split per seed, MinMax scaling with training statistics, fit without labels on "
        "the training part, which still holds anomalies; AUROC/AUPRC on the test part). "
        "Anchors use PyOD's defaults (tasks/anchors.py); aeflow uses `AutoencoderDetector()` "
        "defaults.",
        "",
        *target_lines,
        "## Summary (means over sets of the per-set mean over seeds)",
        "",
        markdown_table(["method", "AUROC", "AUPRC", "total fit seconds"], summary),
        "",
        "## AUROC per set (mean over seeds)",
        "",
        per_dataset(auroc, main_methods),
        "",
        "## AUPRC per set (mean over seeds)",
        "",
        per_dataset(auprc, main_methods),
        "",
    ]
    variants = [m for m in methods if m.startswith("ablation: ")]
    if variants:
        shown = ["aeflow (defaults)", *variants]
        rows = [
            [
                m.removeprefix("ablation: "),
                mean_of(auroc[m]),
                mean_of(auprc[m]),
                f"{seconds[m]:.1f}",
            ]
            for m in shown
        ]
        sections += [
            "## Ablation: one change from the defaults at a time (same splits)",
            "",
            markdown_table(["aeflow variant", "AUROC", "AUPRC", "total fit seconds"], rows),
            "",
            "AUROC per set:",
            "",
            per_dataset(auroc, shown).replace("ablation: ", ""),
            "",
        ]
    for method in [*main_methods, *variants]:
        print(
            f"{method:48s} mean AUROC {mean_of(auroc[method]):.3f}  "
            f"mean AUPRC {mean_of(auprc[method]):.3f}  fit {seconds[method]:.1f} s"
        )
    if not args.no_write:
        path = write_report(
            "quality", "Quality: aeflow vs the anchors (ADBench protocol)", sections
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
