"""Shared helpers for aeflow's benchmarks: dataset lookup, ADBench's split protocol, machine info and
markdown output. Benchmarks are scripts, not tests; each writes a table to docs/benchmarks/."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS_DIR = REPO_ROOT / "docs" / "benchmarks"
# Text after this line in a report is written by people (how results were read, decisions taken);
# regenerating the report keeps it.
NOTES_MARKER = "<!-- notes: text below this line is kept when the benchmark rewrites this file -->"


def datasets_root() -> Path | None:
    """The shared datasets folder: ``$AEFLOW_DATASETS``, else ``../shared/datasets`` next to the
    repository; ``None`` when it does not exist."""
    configured = os.environ.get("AEFLOW_DATASETS")
    root = Path(configured) if configured else REPO_ROOT.parent / "shared" / "datasets"
    return root if root.is_dir() else None


def require_datasets(subfolder: str) -> Path:
    """Return ``datasets_root()/subfolder`` or exit with a message saying how to provide it."""
    root = datasets_root()
    folder = root / subfolder if root else None
    if folder is None or not folder.is_dir():
        sys.exit(
            f"datasets folder {subfolder!r} not found: set AEFLOW_DATASETS or place the shared "
            "datasets at ../shared/datasets relative to the repository"
        )
    return folder


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """ADBench ``.npz`` -> ``X`` (n, d) float64, ``y`` (n,) int (1 = anomaly)."""
    with np.load(path, allow_pickle=False) as data:
        return data["X"].astype(np.float64), data["y"].astype(np.int64)


def adbench_split(
    X: np.ndarray, y: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ADBench's unsupervised protocol: stratified 70/30 split with ``seed``, MinMax-scaled with the
    training part's statistics. Returns ``(X_train, X_test, y_test)``; training labels are dropped
    because detectors fit without them (the training part still holds anomalies)."""
    X_train, X_test, _, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=seed
    )
    scaler = MinMaxScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_test


def auroc_auprc(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(AUROC, AUPRC) of ``scores`` (higher = more anomalous) against 0/1 labels."""
    return float(roc_auc_score(y_true, scores)), float(average_precision_score(y_true, scores))


def add_variant_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """``--variant NAME=JSON`` (repeatable): an extra aeflow run with parameters overriding the
    defaults; ``example`` is shown in the help."""
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help=f"extra aeflow variant, parameters overriding the defaults, e.g. {example}; "
        "repeatable",
    )


def parse_variants(specs: Sequence[str]) -> dict[str, dict]:
    """``["name={...}", ...]`` from ``--variant`` -> ``{name: params}``."""
    variants = {}
    for spec in specs:
        name, _, params = spec.partition("=")
        try:
            variants[name] = json.loads(params)
        except json.JSONDecodeError as error:
            raise SystemExit(
                f"--variant {spec!r}: the part after '=' must be a JSON object of detector "
                f'parameters ({error}); e.g. \'robust={{"scaling": "robust"}}\''
            ) from None
    return variants


def machine_info() -> str:
    """One line: CPU model, core count, Python and torch versions, torch threads."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def command_line() -> str:
    """The command that reproduces this run, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO_ROOT))
    except ValueError:
        script_text = str(script)
    return " ".join([".venv/bin/python", script_text, *map(shlex.quote, sys.argv[1:])])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats are written with 3 decimals."""

    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(name: str, title: str, sections: Sequence[str]) -> Path:
    """Write ``docs/benchmarks/<name>.md`` with a header (command, machine, date) and ``sections``,
    keeping any notes after :data:`NOTES_MARKER` in the existing file."""
    DOCS_DIR.mkdir(parents=True, exist_ok=True)
    path = DOCS_DIR / f"{name}.md"
    notes = ""
    if path.is_file() and NOTES_MARKER in (existing := path.read_text()):
        notes = existing[existing.index(NOTES_MARKER) :]
    header = [
        f"# {title}",
        "",
        "Generated by the benchmark (hand-written notes, if any, follow the notes marker at the "
        "end and are kept when it runs again). Reproduce with:",
        "",
        "```",
        command_line(),
        "```",
        "",
        f"- machine: {machine_info()}",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
    ]
    path.write_text("\n".join(header + [*sections, ""]) + ("\n" + notes if notes else ""))
    return path


def cached(cache: Path | None, key: str, compute):
    """``compute()`` (a JSON-able result), read from ``cache/<key>.json`` when a run already wrote
    it, so an interrupted benchmark resumes; no cache when ``cache`` is None."""
    path = cache / f"{key}.json" if cache else None
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    result = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))
    return result


def rank_summary(per_method: dict[str, dict[str, float]], ours: str) -> tuple[int, int, list]:
    """For ``{method: {set: value}}``: on how many sets ``ours`` is first, and first or second,
    and the per-set ranks (1 = best)."""
    sets = list(per_method[ours])
    ranks = []
    for name in sets:
        better = sum(per_method[m][name] > per_method[ours][name] for m in per_method if m != ours)
        ranks.append(better + 1)
    return sum(r == 1 for r in ranks), sum(r <= 2 for r in ranks), ranks
