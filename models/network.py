"""The mixed-type autoencoder network and its per-column reconstruction error.

The network maps a preprocessed row (n_features,) to a latent code (latent_dim,) and back to one
output per preprocessed feature: a value for each regression feature (scaled numeric value or
missing indicator) and a logit for each one-hot level. :class:`ColumnErrors` turns an output and its
target into one error per original column (squared errors of a numeric column and of its missing
indicator summed; a cross-entropy over the levels of a categorical column), which is both the
training loss and the anomaly score's split into per-column contributions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from models.preprocessing import FeatureLayout

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


_SEED_BOUND = 1 << 62


class Dropout(nn.Module):
    """Inverted dropout whose CPU mask comes from 15-bit random integers, several times cheaper.

    torch's CPU dropout draws one Bernoulli variate per element from a sequential Mersenne
    twister; on the small matrices of tabular autoencoders that draw costs more than the layer's
    matrix product. Here one 64-bit random word yields four 15-bit uniform integers, and an element
    is dropped when its integer is below ``round(p * 2**15)``, so the drop rate is ``p`` to within
    2**-16 and the kept values are scaled by the exact inverse of the keep rate. The words come
    from a numpy SFC64 generator seeded by one draw from the global torch RNG, so
    ``torch.manual_seed`` makes the masks deterministic. On CUDA, and for small inputs, it is
    torch's own dropout.
    """

    LEVELS = 1 << 15
    # Below about this many values torch's own dropout is the cheaper call (measured on CPU).
    SMALL = 1 << 12

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * self.LEVELS)
        # Rates within 2**-16 of 1 round to dropping everything; torch's dropout handles those.
        kept_levels = self.LEVELS - self.threshold
        self.scale = self.LEVELS / kept_levels if kept_levels else 1.0 / (1.0 - p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, width) -> (n, width); the identity in eval mode."""
        if not self.training or self.threshold == 0:
            return x
        if x.device.type != "cpu" or x.numel() < self.SMALL or self.threshold == self.LEVELS:
            return functional.dropout(x, self.p, training=True)
        n_values = x.numel()
        # numpy's SFC64 generator fills 64-bit words about twice as fast as torch's CPU Mersenne
        # twister; seeding it with one draw from torch's global RNG keeps the masks reproducible
        # under torch.manual_seed. Clearing each 16-bit piece's top bit leaves four independent
        # 15-bit uniform integers per word.
        seed = int(torch.randint(0, _SEED_BOUND, (), dtype=torch.int64))
        words = torch.from_numpy(
            np.random.SFC64(seed).random_raw((n_values + 3) // 4).view(np.int64)
        )
        levels = words.view(torch.int16)[:n_values].view(x.shape).bitwise_and_(self.LEVELS - 1)
        # threshold - 1 - level is negative exactly where level >= threshold (kept), so shifting
        # its sign bit down gives -1 there and 0 where dropped. Integer arithmetic in place,
        # because on CPU a comparison into a bool tensor and that tensor's conversion to float
        # cost several times as much as these int16 operations.
        kept = levels.neg_().add_(self.threshold - 1).bitwise_right_shift_(15)
        return x * kept.to(x.dtype).mul_(-self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _dense_stack(
    sizes: Sequence[int], activation: str, dropout: float, batch_norm: bool
) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers.append(nn.Linear(n_in, n_out))
        if batch_norm:
            layers.append(nn.BatchNorm1d(n_out))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(Dropout(dropout))
    return layers


@dataclass(frozen=True)
class Architecture:
    """The shape of a :class:`MixedAutoencoder` (its input width aside); see there."""

    hidden_sizes: tuple[int, ...]
    latent_dim: int
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False
    variational: bool = False
    clip_inputs: bool = False


def level_rows(layout) -> tuple[int, list[tuple[int, int]]]:
    """(the first one-hot feature of a feature layout, each categorical block's ``(start, stop)``
    counted from it: its rows in the transposed (n_levels, n) one-hot matrix); no categorical
    block: (n_features, [])."""
    blocks = layout.categorical_blocks
    first = blocks[0][0] if blocks else layout.n_features
    return first, [(start - first, stop - first) for start, stop, _ in blocks]


# Up to this many categorical blocks, their sums are a matrix product (see set_unseen_fill).
MATMUL_BLOCKS = 32


def level_blocks(layout) -> tuple[int, torch.Tensor]:
    """(the first one-hot feature, (n_levels,) long: the categorical block each one-hot level
    belongs to) of a feature layout; no categorical block: (n_features, empty)."""
    first, rows = level_rows(layout)
    level_block = torch.zeros(layout.n_features - first, dtype=torch.long)
    for block, (start, stop) in enumerate(rows):
        level_block[start:stop] = block
    return first, level_block


class MixedAutoencoder(nn.Module):
    """Fully connected autoencoder: ``n_features -> hidden_sizes -> latent_dim -> reversed -> out``.

    Args:
        n_features: width of the preprocessed input and of the output.
        architecture: the rest (:class:`Architecture`):
        hidden_sizes: widths of the encoder's hidden layers (the decoder mirrors them); may be empty.
        latent_dim: width of the latent code.
        activation: a key of :data:`ACTIVATIONS`.
        dropout: dropout rate after each hidden activation, in [0, 1).
        batch_norm: batch normalisation after each hidden linear layer.
        variational: encode a Gaussian (mean and log-variance) and sample from it while training.
        clip_inputs: the encoder sees each input feature clipped to the range set by
            :meth:`set_input_bounds` (buffers ``input_low`` / ``input_high``, saved with the
            weights), while the loss and the errors use the unclipped value. A value far outside the
            training range then moves the code no further than the range's edge: its own column's
            error grows with it, but it does not drag the reconstruction of the row's other columns
            along (which would spread, and misplace, the blame). Likewise a one-hot block with no
            level set (a level never seen at fit) reaches the encoder as the block's training
            shares (:meth:`set_unseen_fill`), not as an input pattern it never saw.
    """

    def __init__(self, n_features: int, architecture: Architecture):
        super().__init__()
        hidden_sizes, latent_dim = architecture.hidden_sizes, architecture.latent_dim
        activation, dropout = architecture.activation, architecture.dropout
        batch_norm, variational = architecture.batch_norm, architecture.variational
        clip_inputs = architecture.clip_inputs
        self.latent_dim = latent_dim
        self.variational = variational
        self.clip_inputs = clip_inputs
        self.first_level = n_features
        if clip_inputs:
            self.register_buffer("input_low", torch.full((n_features,), -torch.inf))
            self.register_buffer("input_high", torch.full((n_features,), torch.inf))
        # Set by set_unseen_fill from the fit data; rebuilt on load, so not saved.
        self.register_buffer("level_block", None, persistent=False)
        self.register_buffer("block_membership", None, persistent=False)
        self.register_buffer("level_fill", None, persistent=False)
        encoder_sizes = [n_features, *hidden_sizes]
        self.encoder = nn.Sequential(
            *_dense_stack(encoder_sizes, activation, dropout, batch_norm),
            nn.Linear(encoder_sizes[-1], latent_dim * (2 if variational else 1)),
        )
        decoder_sizes = [latent_dim, *reversed(hidden_sizes)]
        self.decoder = nn.Sequential(
            *_dense_stack(decoder_sizes, activation, dropout, batch_norm),
            nn.Linear(decoder_sizes[-1], n_features),
        )

    @torch.no_grad()
    def set_input_bounds(self, low: torch.Tensor, high: torch.Tensor) -> None:
        """Set the (n_features,) range the encoder clips its inputs to (``clip_inputs`` only)."""
        self.input_low.copy_(low)
        self.input_high.copy_(high)

    def set_unseen_fill(
        self, first_level: int, level_block: torch.Tensor, level_shares: torch.Tensor
    ) -> None:
        """One-hot features start at ``first_level``; ``level_block`` (n_levels,) long is the
        block of each level (:func:`level_blocks`); ``level_shares`` (n_levels,) the share of fit
        rows with each level. An all-zero block then reaches the encoder as its shares
        (``clip_inputs``)."""
        self.first_level = first_level
        self.level_block = level_block.long()
        self.n_blocks = int(level_block.max()) + 1 if level_block.numel() else 0
        self.level_fill = level_shares.float()
        # Few blocks: their sums as one small matrix product (the fastest way there); many: an
        # index-add, whose cost does not grow with the number of blocks. The same sums of 0/1.
        self.block_membership = (
            functional.one_hot(self.level_block, self.n_blocks).float()
            if 0 < self.n_blocks <= MATMUL_BLOCKS
            else None
        )

    def _encode_distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.clip_inputs:
            # One pass (the bounds are ordered: the same values as max(min(x, high), low)); a
            # new tensor, so the fill below may write into it.
            x = torch.clamp(x, self.input_low, self.input_high)
            if self.level_fill is not None and self.level_fill.numel():
                self._fill_unseen(x)
        encoded = self.encoder(x)
        if not self.variational:
            return encoded, None
        mean, log_var = encoded.chunk(2, dim=1)
        return mean, log_var.clamp(-10.0, 10.0)

    def _fill_unseen(self, x: torch.Tensor) -> None:
        """In place: each all-zero one-hot block of (n, n_features) ``x`` set to its level shares.

        Only the rows with such a block are written (most rows have none), with ``levels +
        unseen[level_block] * level_fill``: a row without an unseen block would only have 0
        added. With many blocks, the block sums are an index-add over the levels, linear in their
        number (a product with the levels x blocks membership matrix grows with its square: it
        took a second per 4,096 rows of a table of 1,555 flags).
        """
        levels = x[:, self.first_level :]
        if self.block_membership is not None:
            unseen = levels @ self.block_membership < 0.5
        else:
            present = levels.new_zeros(self.n_blocks, levels.shape[0])
            unseen = present.index_add_(0, self.level_block, levels.t().contiguous()).t() < 0.5
        rows = unseen.any(dim=1).nonzero().squeeze(1) if unseen.numel() else None
        if rows is None or not len(rows):
            return
        fill = unseen[rows][:, self.level_block].to(levels.dtype) * self.level_fill
        levels[rows] = levels[rows] + fill

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, n_features) -> (n, latent_dim) latent code (the mean for the variational variant)."""
        return self._encode_distribution(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) -> (n, n_features): regression values, then one-hot logits."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Return ``(output (n, n_features), latent mean (n, k), latent log-variance or None)``.

        The variational variant samples the latent code while training and uses the mean otherwise,
        so scores are deterministic.
        """
        mean, log_var = self._encode_distribution(x)
        z = mean
        if log_var is not None and self.training:
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        return self.decode(z), mean, log_var


# Rows go through the network and the column errors in blocks of this many, the last block padded
# with zero rows (see :func:`pad_rows`).
ROW_BLOCK = 64


def pad_rows(rows: torch.Tensor, block: int = ROW_BLOCK) -> torch.Tensor:
    """(n, d) -> (m, d) with m the next multiple of ``block`` (at least ``block``), zero rows added.

    Why: torch's CPU kernels take other code paths for a few rows (a matrix-vector product) and for
    a ragged tail (scalar loops after the vectorised ones, whose exp/log round differently), so
    without padding a row's score changed in its last bits with the number of rows scored beside
    it. Padded, a row gets the same bits alone (an online request) and in any chunk of a batch.
    Slice the outputs back to ``n`` rows.
    """
    n_rows = rows.shape[0]
    padded = max(block, -(-n_rows // block) * block)
    if padded == n_rows:
        return rows
    return torch.cat([rows, rows.new_zeros((padded - n_rows, *rows.shape[1:]))])


def kl_divergence(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """(n, k) Gaussian parameters -> (n,) KL divergence to the standard normal, in nats."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=1)


def _width_groups(
    blocks: Sequence[tuple[int, int]], device: torch.device | str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Categorical blocks ``(start, stop)`` grouped by width: for each width, the blocks'
    positions among the blocks ((n_group,) long) and their features ((n_group, width) long)."""
    groups: dict[int, list[int]] = {}
    for position, (start, stop) in enumerate(blocks):
        groups.setdefault(stop - start, []).append(position)
    return [
        (
            torch.tensor(positions, dtype=torch.long, device=device),
            torch.tensor(
                [list(range(blocks[p][0], blocks[p][1])) for p in positions],
                dtype=torch.long,
                device=device,
            ),
        )
        for _, positions in sorted(groups.items())
    ]


def _block_cross_entropies(logits: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """(n, n_blocks, width) logits and one-hot targets of blocks of one width -> (n, n_blocks)
    cross-entropies (nats); a block whose one-hots are all 0 (a level never seen at fit) costs
    as much as its least likely level."""
    log_probs = functional.log_softmax(logits, dim=2)
    known = one_hot.sum(dim=2) > 0.5
    observed = -(one_hot * log_probs).sum(dim=2)
    least_likely = -log_probs.min(dim=2).values
    return torch.where(known, observed, least_likely)


def transposed_copy(matrix: torch.Tensor) -> torch.Tensor:
    """(n, d) -> its (d, n) transpose, contiguous. On the CPU (no gradient) through numpy, whose
    transposing copy is about 1.5x as fast as torch's here; the same values either way."""
    if matrix.device.type == "cpu" and not matrix.requires_grad:
        return torch.from_numpy(np.ascontiguousarray(matrix.numpy().T))
    return matrix.t().contiguous()


def block_sums(
    rows: torch.Tensor, blocks: Sequence[tuple[int, int]], weights: torch.Tensor | None = None
) -> torch.Tensor:
    """(n_levels, n) transposed one-hot features -> (n_blocks, n): each block's sum of its rows
    ``start:stop`` (times ``weights`` (n_levels,)). A block is a contiguous run of rows there, so
    each sum runs along the n rows; a scatter over the row-major matrix costs several times more."""
    if weights is not None:
        rows = rows * weights[:, None]
    sums = rows.new_empty(len(blocks), rows.shape[1])
    for block, (start, stop) in enumerate(blocks):
        torch.sum(rows[start:stop], dim=0, out=sums[block])
    return sums


class ColumnSet:
    """Column indices of an (n, n_columns) matrix, added to as one slice when they are one
    increasing run (a categorical column per block, a value per numeric column usually are): an
    indexed add over the columns costs several times a slice's. The same arithmetic either way
    (each element of the run gets its own source value added once)."""

    def __init__(self, indices: Sequence[int], device: torch.device | str):
        indices = [int(i) for i in indices]
        self.index = torch.tensor(indices, dtype=torch.long, device=device)
        run = indices and indices == list(range(indices[0], indices[0] + len(indices)))
        self.run = slice(indices[0], indices[0] + len(indices)) if run else None

    def add_(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """``target[:, columns] += source`` in place; returns ``target``."""
        if self.run is None:
            return target.index_add_(1, self.index, source)
        target[:, self.run] += source
        return target

    def maximum_(self, target: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
        """``target[:, columns] = maximum(target[:, columns], floor)`` in place; returns ``target``."""
        key = self.index if self.run is None else self.run
        target[:, key] = torch.maximum(target[:, key], floor)
        return target


class OneHotLevels(NamedTuple):
    """A chunk's one-hot features in the layout the scoring reductions run in: ``transposed``
    (n_levels, n), and ``present`` (n_blocks, n) each categorical block's sum of its levels (1 for
    a level seen at fit, 0 for one never seen)."""

    transposed: torch.Tensor
    present: torch.Tensor

    @classmethod
    def of(
        cls, features: torch.Tensor, first_level: int, blocks: Sequence[tuple[int, int]]
    ) -> OneHotLevels:
        """Of (n, n_features) rows whose one-hot features start at ``first_level``; ``blocks``:
        each block's rows in the transposed matrix."""
        transposed = transposed_copy(features[:, first_level:])
        return cls(transposed, block_sums(transposed, blocks))


class ColumnErrors:
    """Per-original-column reconstruction errors for a :class:`FeatureLayout`.

    ``errors = ColumnErrors(layout, device)(output, target)`` gives an (n, n_columns) float32 tensor:
    for a numeric column the squared error of its scaled value plus that of its missing indicator;
    for a categorical column the cross-entropy (nats) of its observed level under the predicted
    distribution. A level unseen at fit (an all-zero one-hot block) costs as much as the least likely
    known level: at least as surprising as anything the model knows.
    """

    def __init__(self, layout: FeatureLayout, device: torch.device | str):
        self.n_columns = len(layout.columns)
        self.n_regression = layout.n_regression
        self.regression_column = torch.tensor(
            layout.regression_column, dtype=torch.long, device=device
        )
        self.blocks = [(start, stop) for start, stop, _ in layout.categorical_blocks]
        # Numeric-only data without indicators: feature i is column i, no scatter needed.
        self.identity = not self.blocks and layout.regression_column == tuple(range(self.n_columns))
        self.categorical_columns = ColumnSet(
            [column for _, _, column in layout.categorical_blocks], device
        )
        self.first_level, self.level_rows = level_rows(layout)
        self.width_groups = _width_groups(self.blocks, device)

    def target_levels(self, target: torch.Tensor) -> OneHotLevels | None:
        """(n, n_features) targets -> their :class:`OneHotLevels` (the layout the scoring
        reductions run in), or None without categorical blocks. Computed once per chunk and
        shared by every member's errors and the column scorer."""
        if not self.blocks:
            return None
        return OneHotLevels.of(target, self.first_level, self.level_rows)

    def __call__(
        self, output: torch.Tensor, target: torch.Tensor, levels: OneHotLevels | None = None
    ) -> torch.Tensor:
        """(n, n_features) outputs and targets -> (n, n_columns) errors; ``levels``:
        :meth:`target_levels` of ``target`` when the caller has it (scoring only)."""
        output = output.float()
        if self.identity:
            return (output - target).pow(2)
        errors = output.new_zeros(output.shape[0], self.n_columns)
        if self.n_regression:
            squared = (output[:, : self.n_regression] - target[:, : self.n_regression]).pow(2)
            errors = errors.index_add(1, self.regression_column, squared)
        if self.blocks:
            if output.requires_grad:
                cross_entropies = self._cross_entropies(output, target)
                errors = errors.index_add(1, self.categorical_columns.index, cross_entropies)
            else:
                cross_entropies = self._cross_entropies_transposed(output, target, levels)
                errors = self.categorical_columns.add_(errors, cross_entropies)
        return errors

    def _cross_entropies(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(n, n_features) -> (n, n_categorical) cross-entropies (training, with gradient).

        The blocks of one width are gathered into one (n, n_blocks, width) tensor and reduced
        together: a table of a thousand flags costs a handful of kernels per step, not a thousand
        small ones (which made a step of a 1,555-flag table take about a second). The same values
        as one block at a time."""
        cross_entropies = output.new_empty(output.shape[0], len(self.blocks))
        for positions, features in self.width_groups:
            cross_entropies = cross_entropies.index_copy(
                1, positions, _block_cross_entropies(output[:, features], target[:, features])
            )
        return cross_entropies

    def _cross_entropies_transposed(
        self, output: torch.Tensor, target: torch.Tensor, levels: OneHotLevels | None = None
    ) -> torch.Tensor:
        """The same values as :meth:`_cross_entropies` (up to float rounding), for scoring.

        A block of a row-major (n, n_features) matrix is a narrow strided slice, and reducing over
        its few levels is slow; with the categorical features transposed to (n_levels, n), each
        block is a contiguous run of rows and every reduction runs along the n rows. Per block
        only the log-softmax and one sum; the product with the one-hots, the known-level test
        and the sign run once over all blocks, and the least likely level's log-probability only
        when a block has a level never seen at fit. No gradient.
        """
        if levels is None:
            levels = self.target_levels(target)
        logits = transposed_copy(output[:, self.first_level :])
        log_probs = torch.empty_like(logits)
        for start, stop in self.level_rows:
            torch.log_softmax(logits[start:stop], dim=0, out=log_probs[start:stop])
        known = levels.present > 0.5
        least_likely = None
        if not bool(known.all()):
            least_likely = torch.stack(
                [log_probs[start:stop].amin(dim=0) for start, stop in self.level_rows]
            ).neg_()
        cross_entropies = block_sums(log_probs.mul_(levels.transposed), self.level_rows).neg_()
        if least_likely is not None:
            cross_entropies = torch.where(known, cross_entropies, least_likely)
        return cross_entropies.t()
