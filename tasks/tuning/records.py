"""Typed records the tuning tasks exchange (frozen; JSON-able through ``to_dict``/``from_dict``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"
DEFAULTS_TRIAL = -1  # the number of the run with the config's own parameters (the baseline)


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return cls(**data)


@dataclass(frozen=True)
class SearchData(_Record):
    """The rows a search scores trials on: both files are parts of the training part of the split
    the train flow makes; the evaluation holdout is not among them.

    Attributes:
        fit_path, validation_path: Parquet files (features, plus the label columns named below).
        numeric, categorical: feature columns.
        label: the 0/1 anomaly label column in both files, or None.
        downstream: the 0/1 downstream label column in the validation file, or None.
        objective: the resolved objective ("auprc", "reconstruction", "downstream").
        fit_rows, validation_rows, holdout_rows: row counts (the holdout's rows are never read).
        notes: why this objective, and anything left out.
    """

    fit_path: str
    validation_path: str
    numeric: list[str]
    categorical: list[str]
    label: str | None
    downstream: str | None
    objective: str
    fit_rows: int
    validation_rows: int
    holdout_rows: int
    notes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PruningRule(_Record):
    """Median pruning on the validation curve, against the trials finished when the round began.

    ``references`` maps a comparability key (the preprocessing and ensemble size, whose losses are
    on the same scale) to the validation-loss curves (per epoch) of the finished trials with it.
    """

    enabled: bool
    warmup_epochs: int
    startup_trials: int
    references: dict[str, list[list[float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialSpec(_Record):
    """One trial to run: its number in the study, its detector parameters and seed."""

    number: int
    params: dict[str, Any]
    drawn: dict[str, Any]
    seed: int
    pruning: PruningRule


@dataclass(frozen=True)
class TrialOutcome(_Record):
    """What one trial gave: ``state`` complete/pruned/failed, the objective ``value`` (None unless
    complete), the per-epoch ``val_curve`` and ``train_curve`` (mean loss per row), its ``seconds``
    and a ``message`` (why it was pruned or failed)."""

    number: int
    state: str
    value: float | None
    val_curve: list[float]
    train_curve: list[float]
    seconds: float
    message: str = ""
