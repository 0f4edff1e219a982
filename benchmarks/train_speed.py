"""Training throughput of aeflow's trainer against PyOD's AutoEncoder at equal architecture.

Both fit the training part (70%, seed 0) of ADBench's 32_shuttle (34,367 rows x 9 columns) in the
same process, one after the other, with the same layer sizes (9 -> 64 -> 32 -> 64 -> 9, PyOD's
default), batch norm and dropout 0.2 (PyOD's defaults), the same number of epochs and the same batch
size; aeflow's early stopping is off so both run every epoch. Throughput is rows x epochs per second
of the whole ``fit`` call (PyOD's fit also scores the training rows once; aeflow's also preprocesses,
scores its validation rows and calibrates). aeflow trains on 90% of the rows (10% are held out for
validation), and its row count says so.

    .venv/bin/python benchmarks/train_speed.py
    .venv/bin/python benchmarks/train_speed.py --epochs 2 --batch-sizes 256 --no-write   # quick

Needs the ``bench`` extra (PyOD). Writes docs/benchmarks/train_speed.md unless ``--no-write``.
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
    load_npz,
    markdown_table,
    require_datasets,
    write_report,
)
from models import AutoencoderDetector  # noqa: E402

PYOD_HIDDEN = (64, 32)  # PyOD AutoEncoder's default hidden_neuron_list; its last entry is the code


def timed(fit) -> tuple[float, float]:
    """Run ``fit()``; return (wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fit()
    return time.perf_counter() - wall, time.process_time() - cpu


def fit_pyod(X: np.ndarray, epochs: int, batch_size: int) -> tuple[float, float]:
    from pyod.models.auto_encoder import AutoEncoder

    model = AutoEncoder(
        epoch_num=epochs,
        batch_size=batch_size,
        hidden_neuron_list=list(PYOD_HIDDEN),
        batch_norm=True,
        dropout_rate=0.2,
        verbose=0,
        random_state=0,
    )
    return timed(lambda: model.fit(X))


def fit_aeflow(X: np.ndarray, **params) -> tuple[float, float, int]:
    """Return (wall seconds, CPU seconds, rows x epochs trained)."""
    detector = AutoencoderDetector(random_state=0, device="cpu", **params)
    wall, cpu = timed(lambda: detector.fit(X))
    return wall, cpu, detector.metadata_["n_train_rows"] * detector.history_["epochs_run"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--batch-sizes",
        nargs="+",
        type=int,
        default=[32, 256, 1024, 4096],
        help="32 is PyOD's default",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads for both libraries"
    )
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--default-threads-epochs",
        type=int,
        default=1,
        help="also time PyOD's defaults for this many epochs under torch's default thread count "
        "(how PyOD runs out of the box); 0 skips it",
    )
    args = parser.parse_args(argv)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)

    X, y = load_npz(require_datasets("adbench") / "32_shuttle.npz")
    X_train, _, _ = adbench_split(X, y, seed=0)
    X_train = X_train.astype(np.float32)
    n_rows = len(X_train)
    same_architecture = {
        "hidden_sizes": PYOD_HIDDEN[:-1],
        "latent_dim": PYOD_HIDDEN[-1],
        "batch_norm": True,
        "dropout": 0.2,
        "trim_fraction": 0.0,
        "patience": 0,
    }
    # Warm-up so neither side pays one-off import and allocation costs in its timing.
    fit_aeflow(X_train[:2000], epochs=1)
    fit_pyod(X_train[:2000], epochs=1, batch_size=256)

    rows, pyod_times, aeflow_rates = [], {}, []
    for batch_size in args.batch_sizes:
        pyod_wall, pyod_cpu = pyod_times[batch_size] = fit_pyod(X_train, args.epochs, batch_size)
        ae_wall, ae_cpu, ae_rows = fit_aeflow(
            X_train, epochs=args.epochs, batch_size=batch_size, **same_architecture
        )
        pyod_rows = n_rows * args.epochs
        aeflow_rates.append(ae_rows / ae_wall)
        rows.append(
            [
                batch_size,
                f"{pyod_wall:.1f} / {pyod_cpu:.1f}",
                f"{ae_wall:.2f} / {ae_cpu:.2f}",
                f"{pyod_rows / pyod_wall:,.0f}",
                f"{ae_rows / ae_wall:,.0f}",
                f"{(ae_rows / ae_wall) / (pyod_rows / pyod_wall):.1f}x",
                f"{(ae_rows / ae_cpu) / (pyod_rows / pyod_cpu):.1f}x",
            ]
        )
        print(rows[-1], flush=True)
    # PyOD's defaults are the batch-32 row when the run uses its default 10 epochs.
    if args.epochs == 10 and 32 in pyod_times:
        pyod_default_wall, pyod_default_cpu = pyod_times[32]
    else:
        pyod_default_wall, pyod_default_cpu = fit_pyod(X_train, epochs=10, batch_size=32)
    default_wall, default_cpu, default_rows = fit_aeflow(X_train)
    default_detector = AutoencoderDetector()
    out_of_the_box = []
    if args.default_threads_epochs:
        # PyOD as it runs out of the box: torch's default thread count (the reference
        # figure, "about 2 minutes for 10 epochs", was taken this way), against aeflow's trainer
        # as it runs out of the box (it picks one thread itself for steps this small).
        torch.set_num_threads(default_threads)
        box_rows = []
        for batch_size, rate in zip(args.batch_sizes, aeflow_rates, strict=True):
            wall, _ = fit_pyod(X_train, args.default_threads_epochs, batch_size)
            pyod_rate = n_rows * args.default_threads_epochs / wall
            box_rows.append(
                [batch_size, f"{pyod_rate:,.0f}", f"{rate:,.0f}", f"{rate / pyod_rate:.1f}x"]
            )
            print(box_rows[-1], flush=True)
        torch.set_num_threads(args.threads)
        out_of_the_box = [
            "",
            f"## Against PyOD out of the box (torch's default {default_threads} threads)",
            "",
            f"PyOD timed over {args.default_threads_epochs} epoch(s) per batch size, aeflow's rate "
            "from the equal-architecture table above. More threads do not help networks this "
            "small, and on a busy machine the extra threads mostly wait.",
            "",
            markdown_table(
                [
                    "batch size",
                    "PyOD rows x epochs / wall s",
                    "aeflow rows x epochs / wall s",
                    "speed-up (wall)",
                ],
                box_rows,
            ),
        ]

    sections = [
        f"Data: 32_shuttle training part, {n_rows:,} rows x {X_train.shape[1]} columns; "
        f"{args.epochs} epochs; torch threads: {args.threads} for both libraries.",
        "",
        "Equal architecture: 9 -> 64 -> 32 -> 64 -> 9 with batch norm and dropout 0.2 (PyOD "
        "AutoEncoder defaults), Adam(W) lr 1e-3, every epoch run (aeflow early stopping off, "
        "trimmed loss off).",
        "",
        markdown_table(
            [
                "batch size",
                "PyOD fit s (wall / CPU)",
                "aeflow fit s (wall / CPU)",
                "PyOD rows x epochs / wall s",
                "aeflow rows x epochs / wall s",
                "speed-up (wall)",
                "speed-up (CPU)",
            ],
            rows,
        ),
        "",
        "CPU seconds are this process's CPU time: on a machine shared with other jobs they measure "
        "the work done, while wall seconds also count time waiting for a core.",
        "",
        "## Each library with its own defaults",
        "",
        markdown_table(
            ["library (defaults)", "fit s (wall / CPU)", "rows x epochs trained"],
            [
                [
                    "PyOD AutoEncoder (batch 32, 10 epochs, BN, dropout 0.2)",
                    f"{pyod_default_wall:.1f} / {pyod_default_cpu:.1f}",
                    f"{n_rows * 10:,}",
                ],
                [
                    f"aeflow (batch {default_detector.batch_size}, hidden "
                    f"{default_detector.hidden_sizes}, latent {default_detector.latent_dim}, "
                    "early stopping)",
                    f"{default_wall:.1f} / {default_cpu:.1f}",
                    f"{default_rows:,}",
                ],
            ],
        ),
        *out_of_the_box,
    ]
    if not args.no_write:
        path = write_report("train_speed", "Training speed: aeflow vs PyOD AutoEncoder", sections)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
