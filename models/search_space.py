"""The hyperparameter search space of :class:`models.detector.AutoencoderDetector`, declared once.

`aeflow tune` searches it; a config's ``tuning.space`` overrides single entries (a narrower range,
other choices, or one fixed value that takes the parameter out of the search). The space is plain
data (no Optuna, no Prefect): :func:`suggest` draws one point through any object with Optuna's
``suggest_int`` / ``suggest_float`` / ``suggest_categorical`` methods, and :func:`detector_params`
turns that point into detector keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

# The detector's choices, written out so that reading a config does not import torch
# (tests/unit/test_search_space.py checks they match models.detector_params and preprocessing).
VARIANTS = ("plain", "denoising", "variational")
SCALINGS = ("auto", "standard", "robust", "quantile", "minmax", "none")
Choice = int | float | str | bool | None


@dataclass(frozen=True)
class Dimension:
    """One searched parameter.

    Attributes:
        kind: ``"int"``, ``"float"`` or ``"categorical"``.
        low, high: inclusive bounds (int and float kinds).
        log: draw on a log scale (bounds must be > 0).
        choices: the values a categorical dimension draws from.
        fixed: set when the config fixes the parameter; it is then not searched.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Choice, ...] = ()
    fixed: Any = None

    def describe(self) -> str:
        """One line for reports: ``int in [2, 32] (log)``, ``one of plain, denoising``."""
        if self.fixed is not None:
            return f"fixed at {self.fixed!r}"
        if self.kind == "categorical":
            return "one of " + ", ".join(str(c) for c in self.choices)
        scale = " (log)" if self.log else ""
        return f"{self.kind} in [{self.low}, {self.high}]{scale}"


# hidden_sizes is drawn as text ("128-64" = two encoder layers of 128 then 64 units), because a
# categorical dimension holds scalars; :func:`detector_params` turns it back into a list.
DEFAULT_SPACE: dict[str, Dimension] = {
    "hidden_sizes": Dimension(
        "categorical", choices=("32", "64", "128", "64-32", "128-64", "256-128")
    ),
    "latent_dim": Dimension("int", 2, 32, log=True),
    "dropout": Dimension("float", 0.0, 0.4),
    "trim_fraction": Dimension("float", 0.0, 0.4),
    "scaling": Dimension("categorical", choices=("auto", "standard", "robust", "quantile")),
    "learning_rate": Dimension("float", 1e-4, 1e-2, log=True),
    "batch_size": Dimension("categorical", choices=("auto", 64, 128, 256, 512)),
    "epochs": Dimension("int", 20, 150, log=True),
    "patience": Dimension("int", 3, 20),
    "variant": Dimension("categorical", choices=VARIANTS),
    "n_members": Dimension("int", 1, 3),
}

# Categorical values each parameter accepts (others are config errors naming the key).
ALLOWED_CHOICES: dict[str, tuple[Choice, ...]] = {
    "scaling": SCALINGS,
    "variant": VARIANTS,
}
ENTRY_KEYS = ("low", "high", "log", "choices")


class SearchSpaceError(ValueError):
    """A search-space entry that cannot be used; the message names the key and the fix."""


def _hidden_sizes(value: Any) -> list[int]:
    if isinstance(value, list | tuple):
        return [int(v) for v in value]
    return [int(part) for part in str(value).split("-")]


def _check_choice(name: str, value: Any) -> None:
    allowed = ALLOWED_CHOICES.get(name)
    if allowed is not None and value not in allowed:
        raise SearchSpaceError(
            f"tuning.space.{name}: {value!r} is not a valid {name}; allowed: {list(allowed)}"
        )
    if name == "hidden_sizes":
        try:
            sizes = _hidden_sizes(value)
        except ValueError:
            sizes = []
        if not sizes or any(s < 1 for s in sizes):
            raise SearchSpaceError(
                f"tuning.space.{name}: {value!r} is not a layer layout; write widths joined by "
                "'-', e.g. '128-64', or a list such as [128, 64]"
            )
    if name == "batch_size" and value != "auto" and (not isinstance(value, int) or value < 1):
        raise SearchSpaceError(
            f"tuning.space.{name}: {value!r} must be a positive integer or 'auto'"
        )


def _override(name: str, base: Dimension, entry: Any) -> Dimension:
    """``base`` with the config's ``entry`` applied: a mapping of low/high/log/choices, or a value."""
    if not isinstance(entry, Mapping):
        _check_choice(name, entry)
        return replace(base, fixed=list(entry) if isinstance(entry, list | tuple) else entry)
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise SearchSpaceError(
            f"tuning.space.{name}: unknown field(s) {unknown}; an entry takes {list(ENTRY_KEYS)} "
            "(low/high/log for numbers, choices for a list of values) or a single fixed value"
        )
    if base.kind == "categorical":
        if set(entry) - {"choices"}:
            raise SearchSpaceError(
                f"tuning.space.{name} is categorical: give choices = [...], not low/high/log"
            )
        choices = entry.get("choices")
        if not isinstance(choices, list | tuple) or not choices:
            raise SearchSpaceError(f"tuning.space.{name}.choices must be a non-empty list")
        for choice in choices:
            _check_choice(name, choice)
        return replace(
            base,
            choices=tuple(
                "-".join(map(str, c)) if isinstance(c, list | tuple) else c for c in choices
            ),
        )
    if "choices" in entry:
        raise SearchSpaceError(
            f"tuning.space.{name} is a {base.kind} range: give low/high (and log), not choices"
        )
    low, high = entry.get("low", base.low), entry.get("high", base.high)
    log = bool(entry.get("log", base.log))
    numbers = (int,) if base.kind == "int" else (int, float)
    for field, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, numbers):
            raise SearchSpaceError(
                f"tuning.space.{name}.{field} must be {'an integer' if base.kind == 'int' else 'a number'}, got {value!r}"
            )
    if low >= high:
        raise SearchSpaceError(
            f"tuning.space.{name}: low ({low}) must be below high ({high}); to fix the value, "
            f"write {name} = {low}"
        )
    if log and low <= 0:
        raise SearchSpaceError(f"tuning.space.{name}: a log range needs low > 0, got {low}")
    return replace(base, low=low, high=high, log=log)


def build_space(overrides: Mapping[str, Any] | None = None) -> dict[str, Dimension]:
    """The default space with the config's ``tuning.space`` entries applied.

    Raises:
        SearchSpaceError: an unknown parameter or an entry that does not fit it, naming the key.
    """
    space = dict(DEFAULT_SPACE)
    for name, entry in (overrides or {}).items():
        if name not in space:
            raise SearchSpaceError(
                f"tuning.space.{name}: not a searched parameter; the space covers "
                f"{sorted(DEFAULT_SPACE)} (other model parameters are set in [model])"
            )
        space[name] = _override(name, space[name], entry)
    return space


def searched(space: Mapping[str, Dimension]) -> dict[str, Dimension]:
    """The dimensions that are drawn (not fixed)."""
    return {name: dim for name, dim in space.items() if dim.fixed is None}


def suggest(trial: Any, space: Mapping[str, Dimension]) -> dict[str, Any]:
    """Draw one point of ``space`` through ``trial`` (Optuna's suggest API); fixed entries are not
    drawn. Returns ``{name: value}`` as drawn (hidden_sizes as text)."""
    point: dict[str, Any] = {}
    for name, dim in searched(space).items():
        if dim.kind == "int":
            point[name] = trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
        elif dim.kind == "float":
            point[name] = trial.suggest_float(name, float(dim.low), float(dim.high), log=dim.log)
        else:
            point[name] = trial.suggest_categorical(name, list(dim.choices))
    return point


def detector_params(point: Mapping[str, Any], space: Mapping[str, Dimension]) -> dict[str, Any]:
    """Detector keyword arguments for a drawn ``point`` plus the space's fixed entries."""
    params = {name: dim.fixed for name, dim in space.items() if dim.fixed is not None}
    params.update(point)
    if "hidden_sizes" in params:
        params["hidden_sizes"] = _hidden_sizes(params["hidden_sizes"])
    return params
