"""From the network's raw per-column errors to the score's per-column contributions.

The raw errors are in incomparable units: a squared error in scaled units for a numeric column, a
cross-entropy in nats for a categorical one. Summed as they are, a hard-to-predict or heavy-tailed
column dominates every score and every explanation, and a 10-level categorical column (about 2 nats
on every row) is named in most rows' top features. :class:`ColumnScorer` puts every column in nats of
*excess surprise* over what is typical for it on the training rows:

- reconstruction surprise: a numeric column's squared error divided by twice its typical squared
  error (the negative log-likelihood, up to a constant, of a normal residual whose variance is
  estimated robustly: the median squared error over the chi-square(1) median), a categorical or flag
  column's cross-entropy as it is;
- marginal surprise (weighted by ``marginal_weight``): how far the value itself lies from the
  column's bulk, whatever the other columns say: half the squared robust z-score of a numeric value
  (after the preprocessing's skew transform), minus the log share of a categorical level (a level
  never seen costs as much as a share of half a row);
- a level never seen at fit (an all-zero one-hot block) has a reconstruction surprise of at least
  that of a level with a share of half a row, like its marginal surprise;
- each term minus its median on the training rows, floored at 0, so an ordinary row contributes
  about nothing in every column and the columns named first are the ones that are unusual *for
  them*.

A row's score is the sum of its contributions. ``error_normalization="none"`` keeps the raw errors
(the scoring before issue 14) for comparisons.

Which columns *explain* a row is a second question: a column whose natural values often cost many
nats (a count that is zero on most rows and anything on the rest, a heavy-tailed amount) would
otherwise be named first in every row where it is merely being itself. Each row's columns are
ranked by :meth:`ColumnScorer.ranking_key`: its contribution over what is a high contribution *for
that column* (its ``explanation_quantile`` on the fit rows, at least ``explanation_floor`` nats).
The scores and contributions do not change; only the order of ``top_features``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.explanations import top_indices
from models.network import ColumnSet, OneHotLevels, block_sums, level_rows
from models.preprocessing import NORMAL_IQR, FeatureLayout

ERROR_NORMALIZATIONS = ("surprise", "none", "validation_mean")
# Median of a chi-square variable with one degree of freedom: a normal residual's squared error
# divided by its variance has this median.
CHI2_MEDIAN = 0.45493642311957283
# The default floor of a numeric column's typical squared error (in scaled units: a residual standard
# deviation of 10% of the column's spread; the detector's ``typical_error_floor``). A column
# reconstructed almost exactly would otherwise count a rounding difference as a huge surprise. Chosen
# by ablation (docs/benchmarks/ablation.md): lower and higher floors both cost ADBench AUROC.
MIN_TYPICAL_ERROR = 1e-2


@dataclass(frozen=True)
class ScorerSettings:
    """The detector's choices a :class:`ColumnScorer` is fitted with (its parameters of the same
    names): ``normalization`` (``error_normalization``), ``marginal_weight``, ``column_weights``
    ((n_columns,) user weights) and ``typical_error_floor``."""

    normalization: str
    marginal_weight: float
    column_weights: np.ndarray
    typical_error_floor: float = MIN_TYPICAL_ERROR


@dataclass(frozen=True)
class ColumnScorer:
    """Per-column normalisation of raw errors into contributions (all arrays float64).

    Attributes:
        recon_scale: (n_members, n_columns) divisor of each member's raw error.
        recon_offset: (n_members, n_columns) median normalised error on the fit rows (subtracted,
            then floored at 0; zeros for ``error_normalization != "surprise"``).
        value_center, value_scale: (n_values,) median and robust spread of each scaled numeric value
            feature on the fit rows.
        level_surprise: (n_level_features,) ``-log share`` of each one-hot level (flags and
            categorical blocks, in feature order) on the fit rows.
        unknown_surprise: (n_blocks,) surprise of a level never seen (an all-zero block).
        marginal_offset: (n_columns,) median marginal surprise on the fit rows.
        marginal_weight: weight of the marginal term.
        column_weights: (n_columns,) user weights (1 by default).
        excess: subtract the offsets and floor at 0 (``"surprise"``) or not.
        rank_scale: (n_columns,) what a row's contributions are divided by to rank its columns
            (:meth:`with_rank_scale`); None (a bundle saved before it existed): ranked as they are.
    """

    recon_scale: np.ndarray
    recon_offset: np.ndarray
    value_center: np.ndarray
    value_scale: np.ndarray
    level_surprise: np.ndarray
    unknown_surprise: np.ndarray
    marginal_offset: np.ndarray
    marginal_weight: float
    column_weights: np.ndarray
    excess: bool
    rank_scale: np.ndarray | None = None

    @classmethod
    def fit(
        cls,
        layout: FeatureLayout,
        member_errors: list[np.ndarray],
        features: np.ndarray,
        validation_rows: np.ndarray,
        settings: ScorerSettings,
    ) -> ColumnScorer:
        """Fit on the raw errors of each member (n_fit, n_columns) and the preprocessed fit rows
        (n_fit, n_features); ``validation_rows`` index the held-out rows among them."""
        normalization, marginal_weight = settings.normalization, settings.marginal_weight
        column_weights, typical_error_floor = settings.column_weights, settings.typical_error_floor
        if normalization not in ERROR_NORMALIZATIONS:
            raise ValueError(
                f"error_normalization must be one of {ERROR_NORMALIZATIONS}, got {normalization!r}"
            )
        squared = _squared_error_columns(layout)
        scales, offsets = [], []
        for errors in member_errors:
            if normalization == "surprise":
                typical = np.median(errors, axis=0) / CHI2_MEDIAN
                typical = np.maximum(typical, typical_error_floor)
                scale = np.where(squared, 2.0 * typical, 1.0)
                offset = np.median(errors / scale, axis=0)
            elif normalization == "validation_mean":
                scale = np.maximum(errors[validation_rows].mean(axis=0), 1e-6)
                offset = np.zeros(errors.shape[1])
            else:
                scale, offset = np.ones(errors.shape[1]), np.zeros(errors.shape[1])
            scales.append(scale)
            offsets.append(offset)
        n_values = len(layout.value_columns)
        values = features[:, :n_values].astype(np.float64)
        center = np.median(values, axis=0) if len(values) else np.zeros(n_values)
        spread = _robust_spread(values)
        level_surprise, unknown_surprise = _level_surprises(layout, features)
        scorer = cls(
            recon_scale=np.asarray(scales),
            recon_offset=np.asarray(offsets),
            value_center=center,
            value_scale=spread,
            level_surprise=level_surprise,
            unknown_surprise=unknown_surprise,
            marginal_offset=np.zeros(len(layout.columns)),
            marginal_weight=float(marginal_weight),
            column_weights=np.asarray(column_weights, dtype=np.float64),
            excess=normalization == "surprise",
        )
        if scorer.excess:
            marginal = scorer.torch_state(layout, torch.device("cpu")).marginal(
                torch.from_numpy(features.astype(np.float32))
            )
            offset = np.median(marginal.double().numpy(), axis=0) if len(features) else 0.0
            scorer = _replace(scorer, marginal_offset=np.asarray(offset, dtype=np.float64))
        return scorer

    def with_rank_scale(
        self, contributions: np.ndarray, quantile: float, floor: float
    ) -> ColumnScorer:
        """This scorer with ``rank_scale`` fitted on the fit rows' (n_fit, n_columns)
        contributions: each column's ``quantile`` of them, at least ``floor`` nats (so a column
        that is almost never surprising does not turn its first small surprise into the row's
        main cause)."""
        if len(contributions):
            high = np.quantile(contributions.astype(np.float64), quantile, axis=0)
        else:
            high = np.zeros(contributions.shape[1])
        return _replace(self, rank_scale=np.maximum(high, floor))

    def first_columns(self, contributions: np.ndarray, top_k: int) -> np.ndarray:
        """(n, n_columns) contributions -> (n, min(top_k, n_columns)) column indices of the
        columns that explain each row, first cause first: :func:`models.explanations.top_indices`
        of :meth:`ranking_key` (what ``top_features`` and ``explain`` name)."""
        return top_indices(self.ranking_key(contributions), top_k)

    def ranking_key(self, contributions: np.ndarray) -> np.ndarray:
        """(n, n_columns) contributions -> what each row's columns are ranked by for
        ``top_features``: each contribution over its column's ``rank_scale`` (the contributions
        themselves without one)."""
        if self.rank_scale is None:
            return contributions
        return contributions / self.rank_scale.astype(contributions.dtype)

    def torch_state(self, layout: FeatureLayout, device: torch.device) -> TorchColumnScorer:
        """The tensors :class:`TorchColumnScorer` computes contributions with, on ``device``."""
        return TorchColumnScorer(self, layout, device)

    def to_dict(self) -> dict:
        return {
            "recon_scale": self.recon_scale.tolist(),
            "recon_offset": self.recon_offset.tolist(),
            "value_center": self.value_center.tolist(),
            "value_scale": self.value_scale.tolist(),
            "level_surprise": self.level_surprise.tolist(),
            "unknown_surprise": self.unknown_surprise.tolist(),
            "marginal_offset": self.marginal_offset.tolist(),
            "marginal_weight": self.marginal_weight,
            "column_weights": self.column_weights.tolist(),
            "excess": self.excess,
            "rank_scale": None if self.rank_scale is None else self.rank_scale.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ColumnScorer:
        arrays = {
            key: np.asarray(data[key], dtype=np.float64)
            for key in (
                "recon_scale",
                "recon_offset",
                "value_center",
                "value_scale",
                "level_surprise",
                "unknown_surprise",
                "marginal_offset",
                "column_weights",
            )
        }
        rank_scale = data.get("rank_scale")
        return cls(
            **arrays,
            marginal_weight=float(data["marginal_weight"]),
            excess=bool(data["excess"]),
            rank_scale=None if rank_scale is None else np.asarray(rank_scale, dtype=np.float64),
        )


def _replace(scorer: ColumnScorer, **changes) -> ColumnScorer:
    return ColumnScorer(**{**scorer.__dict__, **changes})


def _squared_error_columns(layout: FeatureLayout) -> np.ndarray:
    """(n_columns,) bool: the column's error is a squared error (numeric values and indicators)."""
    squared = np.zeros(len(layout.columns), dtype=bool)
    squared[list(layout.regression_column)] = True
    return squared


def _robust_spread(values: np.ndarray) -> np.ndarray:
    """(d,) interquartile range / 1.349 of each column, else its standard deviation, else 1."""
    if not len(values):
        return np.ones(values.shape[1])
    q75, q25 = np.percentile(values, [75, 25], axis=0)
    deviation = values.std(axis=0)
    return np.where(q75 > q25, (q75 - q25) / NORMAL_IQR, np.where(deviation > 0, deviation, 1.0))


def _level_surprises(layout: FeatureLayout, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``-log share`` of every one-hot level on the fit rows, and per block the surprise of an
    unseen level (a share of half a row)."""
    if not layout.categorical_blocks:
        return np.zeros(0), np.zeros(0)
    first = layout.categorical_blocks[0][0]
    n_rows = max(1, len(features))
    floor = 0.5 / n_rows
    shares = features[:, first:].astype(np.float64).mean(axis=0) if len(features) else None
    if shares is None:
        shares = np.full(layout.n_features - first, floor)
    level_surprise = -np.log(np.maximum(shares, floor))
    unknown = np.full(len(layout.categorical_blocks), -np.log(floor))
    return level_surprise, unknown


class TorchColumnScorer:
    """:class:`ColumnScorer` as tensors on one device: contributions for chunks of rows."""

    def __init__(self, scorer: ColumnScorer, layout: FeatureLayout, device: torch.device):
        def tensor(values) -> torch.Tensor:
            return torch.as_tensor(np.asarray(values), dtype=torch.float32, device=device)

        self.n_columns = len(layout.columns)
        self.recon_scale = tensor(scorer.recon_scale)
        self.recon_offset = tensor(scorer.recon_offset)
        self.excess = scorer.excess
        self.marginal_weight = scorer.marginal_weight
        self.weights = tensor(scorer.column_weights)
        self.n_values = len(layout.value_columns)
        self.value_center = tensor(scorer.value_center)
        self.value_scale = tensor(scorer.value_scale)
        self.value_columns = ColumnSet(layout.value_columns, device)
        self.blocks = layout.categorical_blocks
        self.first_level, self.block_rows = level_rows(layout)
        self.level_surprise = tensor(scorer.level_surprise)
        self.unknown_surprise = tensor(scorer.unknown_surprise)
        self.block_columns = ColumnSet([column for _, _, column in self.blocks], device)
        self.marginal_offset = tensor(scorer.marginal_offset)

    def _levels(self, features: torch.Tensor) -> OneHotLevels:
        """(n, n_features) -> their :class:`OneHotLevels`."""
        return OneHotLevels.of(features, self.first_level, self.block_rows)

    def unseen_surprise(
        self, features: torch.Tensor, levels: OneHotLevels | None = None
    ) -> torch.Tensor:
        """(n, n_features) preprocessed rows -> (n, n_blocks): the surprise of a level never seen
        at fit where a block is all zero (a value not seen and not grouped as rare), else 0
        (``levels``: :meth:`_levels` of the rows when the caller has it)."""
        present = (self._levels(features) if levels is None else levels).present.t()
        return (1.0 - present).clamp_(min=0.0) * self.unknown_surprise

    def marginal(
        self,
        features: torch.Tensor,
        unseen: torch.Tensor | None = None,
        levels: OneHotLevels | None = None,
    ) -> torch.Tensor:
        """(n, n_features) preprocessed rows -> (n, n_columns) marginal surprise in nats
        (``unseen``: :meth:`unseen_surprise` of the rows, ``levels``: their :meth:`_levels`, when
        the caller has them)."""
        n_rows = features.shape[0]
        surprise = features.new_zeros(n_rows, self.n_columns)
        if self.n_values:
            z = (features[:, : self.n_values] - self.value_center) / self.value_scale
            self.value_columns.add_(surprise, z.square_().mul_(0.5))
        if self.blocks:
            if levels is None:
                levels = self._levels(features)
            level_sums = block_sums(levels.transposed, self.block_rows, self.level_surprise)
            self.block_columns.add_(surprise, level_sums.t())
            if unseen is None:
                unseen = self.unseen_surprise(features, levels)
            self.block_columns.add_(surprise, unseen)
        return surprise

    def __call__(
        self,
        member_errors: list[torch.Tensor],
        features: torch.Tensor,
        levels: OneHotLevels | None = None,
    ) -> torch.Tensor:
        """Raw errors of each member (n, n_columns) and the rows -> (n, n_columns) contributions
        (``levels``: :meth:`_levels` of the rows when the caller has them)."""
        # A level never seen at fit has no probability under the network's softmax; its
        # cross-entropy (the least likely known level's) understates it, so its reconstruction
        # surprise is at least that of an unseen level's share (half a row): otherwise a set
        # flag that 3% of rows have would outrank a level nobody has.
        if levels is None and self.blocks:
            levels = self._levels(features)
        unseen = self.unseen_surprise(features, levels) if self.blocks and self.excess else None
        total = None
        for member, errors in enumerate(member_errors):
            normalised = errors / self.recon_scale[member]
            if unseen is not None:
                self.block_columns.maximum_(normalised, unseen)
            if self.excess:
                normalised = normalised.sub_(self.recon_offset[member]).clamp_(min=0.0)
            total = normalised if total is None else total.add_(normalised)
        total = total.div_(len(member_errors))
        if self.marginal_weight > 0:
            marginal = self.marginal(features, unseen, levels)
            if self.excess:
                marginal = marginal.sub_(self.marginal_offset).clamp_(min=0.0)
            total = total.add_(marginal, alpha=self.marginal_weight)
        return total.mul_(self.weights)
