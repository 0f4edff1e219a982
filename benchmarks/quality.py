"""Ranking quality of aeflow's defaults against PyOD baselines on ADBench-style ``.npz`` sets.

ADBench's unsupervised protocol (see ../shared/datasets/README.md): for each set and seed, a stratified
70/30 split, MinMax scaling with training statistics, detectors fitted on the training part without
labels (it still holds anomalies), AUROC and AUPRC on the test part. Every method runs in the same
process, on the same splits, one after the other.

    .venv/bin/python benchmarks/quality.py ../shared/datasets/adbench
    .venv/bin/python benchmarks/quality.py ../shared/datasets/adbench --datasets 4_breastw 29_Pima \\
        --seeds 0 --no-write                                   # a quick subset while developing
    .venv/bin/python benchmarks/quality.py ../shared/datasets/adbench --ablation  # + default ablation
    .venv/bin/python benchmarks/quality.py ../shared/datasets/adbench --seeds 0 --baselines \
        --variant 'latent 2={"latent_dim": 2}' --no-write          # try a variant

Needs the ``bench`` extra (``pip install -e '.[bench]'``) for PyOD. Writes
docs/benchmarks/quality.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    adbench_split,
    add_variant_argument,
    auroc_auprc,
    load_npz,
    markdown_table,
    parse_variants,
    write_report,
)
from models import AutoencoderDetector, trainer  # noqa: E402

BASELINES = ("PyOD AutoEncoder", "IForest", "ECOD", "PCA")
# Not a detector parameter: an ablation key that overrides trainer.AUTO_STEPS_PER_EPOCH.
AUTO_STEPS = "auto_steps_per_epoch"
# One change at a time from the defaults: the comparison that chose them.
ABLATION = {
    "defaults": {},
    "trim_fraction=0 (no trimmed loss)": {"trim_fraction": 0.0},
    "dropout=0": {"dropout": 0.0},
    "trim_fraction=0, dropout=0": {"trim_fraction": 0.0, "dropout": 0.0},
    "scaling=robust": {"scaling": "robust"},
    "scaling=quantile": {"scaling": "quantile"},
    "variant=denoising": {"variant": "denoising"},
    # Rows per step. "auto" aims at AUTO_STEPS_PER_EPOCH steps per epoch (8); these rows vary
    # that aim, and compare fixed sizes (256 at 1e-3 was the default before "auto").
    "batch_size=256, learning_rate=0.001": {"batch_size": 256, "learning_rate": 1e-3},
    "batch_size=2048": {"batch_size": 2048},
    "auto batch size at 16 steps per epoch": {AUTO_STEPS: 16},
    "auto batch size at 4 steps per epoch": {AUTO_STEPS: 4},
}


def make_baseline(name: str, seed: int):
    """A PyOD detector with its library defaults (the seed where it takes one)."""
    if name == "PyOD AutoEncoder":
        from pyod.models.auto_encoder import AutoEncoder

        return AutoEncoder(random_state=seed, verbose=0)
    if name == "IForest":
        from pyod.models.iforest import IForest

        return IForest(random_state=seed)
    if name == "ECOD":
        from pyod.models.ecod import ECOD

        return ECOD()
    if name == "PCA":
        from pyod.models.pca import PCA

        return PCA(random_state=seed)
    raise ValueError(f"unknown baseline {name!r}; use one of {BASELINES}")


def score_method(method: str, params: dict | None, X_train, X_test, seed: int):
    """Fit one method on ``X_train``; return (test scores, fit seconds)."""
    started = time.perf_counter()
    if params is not None:
        params = dict(params)
        steps = params.pop(AUTO_STEPS, trainer.AUTO_STEPS_PER_EPOCH)
        default_steps, trainer.AUTO_STEPS_PER_EPOCH = trainer.AUTO_STEPS_PER_EPOCH, steps
        try:
            detector = AutoencoderDetector(random_state=seed, **params).fit(X_train)
        finally:
            trainer.AUTO_STEPS_PER_EPOCH = default_steps
        elapsed = time.perf_counter() - started
        return detector.decision_function(X_test), elapsed
    model = make_baseline(method, seed)
    if method == "PCA":
        # PyOD's PCA divides by each component's variance; a zero-variance component (6_cardio's
        # standardised training matrix is rank-deficient) gives infinite scores. Keep as many
        # components as the matrix has rank, which is PyOD's default everywhere else.
        standardised = StandardScaler().fit_transform(X_train)
        model.set_params(n_components=int(np.linalg.matrix_rank(standardised)))
    model.fit(X_train)
    elapsed = time.perf_counter() - started
    return model.decision_function(X_test), elapsed


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of ADBench .npz files")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="*", help="only these set names (file stems)")
    parser.add_argument(
        "--baselines", nargs="*", default=list(BASELINES), help=f"subset of {BASELINES}"
    )
    parser.add_argument("--ablation", action="store_true", help="also run the ablation variants")
    add_variant_argument(parser, "'latent 2={\"latent_dim\": 2}'")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for every method (1: fastest for these small networks on a "
        "shared machine)",
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
    if args.ablation:
        methods.update({f"ablation: {k}": v for k, v in ABLATION.items() if k != "defaults"})
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
                scores, elapsed = score_method(method, params, X_train, X_test, seed)
                roc, pr = auroc_auprc(y_test, scores)
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
    sections = [
        f"Sets: {len(names)} from {', '.join(str(f) for f in args.folders)}; seeds "
        f"{args.seeds}; torch threads: {args.threads}. Protocol: ADBench unsupervised (stratified "
        "70/30 split per seed, MinMax scaling with training statistics, fit without labels on "
        "the training part, which still holds anomalies; AUROC/AUPRC on the test part). "
        "Baselines use PyOD's defaults; aeflow uses `AutoencoderDetector()` defaults.",
        "",
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
            "quality", "Quality: aeflow vs PyOD baselines (ADBench protocol)", sections
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
