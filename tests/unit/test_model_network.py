"""MixedAutoencoder shapes and variants; ColumnErrors per-column losses."""

import math

import pytest
import torch

from models.network import (
    Architecture,
    ColumnErrors,
    ColumnSet,
    Dropout,
    MixedAutoencoder,
    OneHotLevels,
    block_sums,
    kl_divergence,
    transposed_copy,
)
from models.preprocessing import FeatureLayout

# Columns: "amount" (value + missing indicator), "count", "city" (3 levels).
LAYOUT = FeatureLayout(
    columns=("amount", "count", "city"),
    n_features=6,
    n_regression=3,
    regression_column=(0, 1, 0),
    categorical_blocks=((3, 6, 2),),
    levels=(("a", "b", "c"),),
)


@pytest.mark.parametrize("variational", [False, True])
def test_shapes_and_deterministic_eval(variational):
    torch.manual_seed(0)
    network = MixedAutoencoder(6, Architecture((16, 8), 3, "gelu", 0.1, True, variational))
    x = torch.randn(5, 6)
    output, mean, log_var = network(x)
    assert output.shape == (5, 6) and mean.shape == (5, 3)
    assert (log_var is not None) == variational
    assert network.encode(x).shape == (5, 3) and network.decode(mean).shape == (5, 6)
    network.eval()
    torch.testing.assert_close(network(x)[0], network(x)[0])
    torch.testing.assert_close(network.decode(network.encode(x)), network(x)[0])


def test_column_errors_sum_indicator_into_its_column_and_use_cross_entropy():
    target = torch.tensor([[1.0, 2.0, 0.0, 0.0, 1.0, 0.0]])
    logits = torch.tensor([0.0, 2.0, 0.0])
    output = torch.cat([torch.tensor([[0.0, 2.5, 0.5]]), logits[None]], dim=1)
    errors = ColumnErrors(LAYOUT, "cpu")(output, target)
    log_probs = torch.log_softmax(logits, 0)
    expected = torch.tensor([[1.0**2 + 0.5**2, 0.5**2, -log_probs[1].item()]])
    torch.testing.assert_close(errors, expected)


def test_unseen_level_costs_the_least_likely_level():
    logits = torch.tensor([3.0, 0.0, -1.0])
    output = torch.cat([torch.zeros(1, 3), logits[None]], dim=1)
    unseen = torch.zeros(1, 6)
    errors = ColumnErrors(LAYOUT, "cpu")(output, unseen)
    assert errors[0, 2].item() == pytest.approx(-torch.log_softmax(logits, 0)[2].item())


def test_numeric_only_layout_is_plain_squared_error():
    layout = FeatureLayout(("a", "b"), 2, 2, (0, 1), (), ())
    output, target = torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(
        ColumnErrors(layout, "cpu")(output, target), torch.tensor([[1.0, 4.0]])
    )


def test_kl_divergence_is_zero_at_the_prior():
    assert kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)).tolist() == [0.0, 0.0]
    assert kl_divergence(torch.ones(1, 2), torch.zeros(1, 2)).item() == pytest.approx(1.0)
    assert math.isfinite(kl_divergence(torch.zeros(1, 1), torch.full((1, 1), 5.0)).item())


@pytest.mark.parametrize("shape", [(512, 64), (8, 16)])  # the bit-mask path and torch's own
def test_dropout_rate_scale_and_determinism(shape):
    layer = Dropout(0.2)
    x = torch.ones(shape)
    torch.manual_seed(0)
    samples = torch.stack([layer(x) for _ in range(400)])
    torch.manual_seed(0)
    again = torch.stack([layer(x) for _ in range(400)])
    assert torch.equal(samples, again)
    assert abs(float((samples == 0).float().mean()) - 0.2) < 0.01
    assert abs(float(samples.mean()) - 1.0) < 0.02
    kept = samples[samples != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1.25), rtol=1e-4, atol=0.0)
    # Masks of neighbouring values (which share a 64-bit draw) are independent.
    dropped = (samples == 0).float().reshape(-1, 4)
    assert abs(float(torch.corrcoef(dropped.T)[0, 3])) < 0.02
    layer.eval()
    assert torch.equal(layer(x), x)


def test_dropout_rate_that_rounds_to_every_level_uses_torch_dropout():
    layer = Dropout(1.0 - 2**-17)  # rounds to 2**15 of 2**15 levels: no level would be kept
    torch.manual_seed(0)
    samples = layer(torch.ones(512, 64))
    assert float((samples == 0).float().mean()) > 0.99
    assert torch.isfinite(samples).all()


def test_dropout_rate_out_of_range_is_named():
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        Dropout(1.0)


# Columns: "amount" (value + missing indicator), "city" (3 levels), "tier" (2 levels).
TWO_BLOCKS = FeatureLayout(
    columns=("amount", "city", "tier"),
    n_features=7,
    n_regression=2,
    regression_column=(0, 0),
    categorical_blocks=((2, 5, 1), (5, 7, 2)),
    levels=(("a", "b", "c"), ("x", "y")),
)


def _one_hot_rows(n_rows: int, seed: int) -> torch.Tensor:
    """(n_rows, 7) rows of TWO_BLOCKS: values beyond the fit range, and each block all zero (an
    unseen level) in about a fifth of the rows."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.zeros(n_rows, 7)
    rows[:, 0] = torch.randn(n_rows, generator=generator) * 4
    rows[:, 1] = (torch.rand(n_rows, generator=generator) < 0.1).float()
    for start, stop, _ in TWO_BLOCKS.categorical_blocks:
        level = torch.randint(start, stop + 1, (n_rows,), generator=generator)  # stop: unseen
        seen = level < stop
        rows[seen.nonzero().squeeze(1), level[seen]] = 1.0
    return rows


def test_clipped_inputs_fill_only_unseen_blocks_with_the_same_bits_as_over_all_rows():
    from models.network import level_blocks

    torch.manual_seed(0)
    network = MixedAutoencoder(7, Architecture((16,), 3, clip_inputs=True)).eval()
    network.set_input_bounds(torch.tensor([-2.0, 0, 0, 0, 0, 0, 0]), torch.full((7,), 1.0))
    first, level_block = level_blocks(TWO_BLOCKS)
    assert level_block.tolist() == [0, 0, 0, 1, 1]
    membership = torch.nn.functional.one_hot(level_block).float()  # (n_levels, n_blocks)
    shares = torch.tensor([0.5, 0.3, 0.2, 0.9, 0.1])
    network.set_unseen_fill(first, level_block, shares)
    x = _one_hot_rows(256, seed=1)
    # The fill as it was: every row, clipped with maximum(minimum(...)) and concatenated.
    clipped = torch.maximum(torch.minimum(x, network.input_high), network.input_low)
    levels = clipped[:, first:]
    unseen = (levels @ membership < 0.5).float()
    assert 0 < int(unseen.amax(dim=1).sum()) < len(x)
    filled = torch.cat([clipped[:, :first], levels + (unseen @ membership.T) * shares], dim=1)
    with torch.no_grad():
        assert torch.equal(network.encode(x), network.encoder(filled))
        assert torch.equal(network.encode(x[:0]), network.encoder(filled[:0]))
        seen_only = x[unseen.amax(dim=1) == 0]
        assert torch.equal(network.encode(seen_only), network.encoder(seen_only.clamp(-2.0, 1.0)))


def test_block_sums_and_one_hot_levels_of_the_transposed_one_hots():
    rows = _one_hot_rows(64, seed=2)
    levels = OneHotLevels.of(rows, 2, [(0, 3), (3, 5)])
    assert torch.equal(levels.transposed, rows[:, 2:].t())
    assert levels.transposed.is_contiguous()
    assert torch.equal(levels.present[0], rows[:, 2:5].sum(dim=1))
    assert torch.equal(levels.present[1], rows[:, 5:7].sum(dim=1))
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    weighted = block_sums(levels.transposed, [(0, 3), (3, 5)], weights)
    torch.testing.assert_close(weighted[0], rows[:, 2:5] @ weights[:3])
    torch.testing.assert_close(weighted[1], rows[:, 5:7] @ weights[3:])
    matrix = torch.randn(5, 3, requires_grad=True)
    assert torch.equal(transposed_copy(matrix), matrix.t())  # the torch path with a gradient


def test_scoring_cross_entropies_match_the_per_block_loop_bit_for_bit():
    generator = torch.Generator().manual_seed(3)
    target = _one_hot_rows(256, seed=3)
    output = torch.randn(256, 7, generator=generator) * 3
    errors = ColumnErrors(TWO_BLOCKS, "cpu")
    # The scoring path as it was: every reduction per block over the transposed features.
    logits, one_hots = output[:, 2:].t().contiguous(), target[:, 2:].t().contiguous()
    expected = []
    for start, stop in ((0, 3), (3, 5)):
        log_probs = torch.log_softmax(logits[start:stop], dim=0)
        one_hot = one_hots[start:stop]
        observed = -(one_hot * log_probs).sum(dim=0)
        expected.append(torch.where(one_hot.sum(dim=0) > 0.5, observed, -log_probs.amin(dim=0)))
    expected = torch.stack(expected, 1)
    with torch.no_grad():
        got = errors._cross_entropies_transposed(output, target)
        assert torch.equal(got, expected)
        seen = (target[:, 2:5].sum(1) > 0) & (target[:, 5:].sum(1) > 0)  # no unseen level
        assert torch.equal(
            errors._cross_entropies_transposed(output[seen], target[seen]), got[seen]
        )
    torch.testing.assert_close(got, errors._cross_entropies(output, target))  # the training loss


@pytest.mark.parametrize("columns", [[2, 3, 4], [4, 1, 2], [3, 3]])
def test_column_set_adds_and_floors_like_the_indexed_operations(columns):
    generator = torch.Generator().manual_seed(4)
    target = torch.randn(64, 6, generator=generator)
    source = torch.randn(len(columns), 64, generator=generator).t()  # a transposed view
    column_set = ColumnSet(columns, "cpu")
    assert (column_set.run is not None) == (columns == [2, 3, 4])
    expected = target.index_add(1, torch.tensor(columns), source)
    assert torch.equal(column_set.add_(target.clone(), source), expected)
    if len(set(columns)) == len(columns):
        floored = target.clone()
        floored[:, columns] = torch.maximum(floored[:, columns], source)
        assert torch.equal(column_set.maximum_(target.clone(), source), floored)


def _many_blocks_layout(widths: list[int], n_regression: int = 2) -> FeatureLayout:
    """Two numeric columns, then one categorical block per width, in that order."""
    blocks, start = [], n_regression
    for column, width in enumerate(widths, start=n_regression):
        blocks.append((start, start + width, column))
        start += width
    return FeatureLayout(
        columns=tuple(f"c{i}" for i in range(n_regression + len(widths))),
        n_features=start,
        n_regression=n_regression,
        regression_column=tuple(range(n_regression)),
        categorical_blocks=tuple(blocks),
        levels=tuple(tuple(f"l{j}" for j in range(w)) for w in widths),
    )


def _many_blocks_rows(layout: FeatureLayout, n_rows: int, seed: int) -> torch.Tensor:
    """Rows of ``layout`` with one level per block, and every 7th row's first block unseen."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.zeros(n_rows, layout.n_features)
    rows[:, : layout.n_regression] = torch.randn(n_rows, layout.n_regression, generator=generator)
    for start, stop, _ in layout.categorical_blocks:
        level = torch.randint(start, stop, (n_rows,), generator=generator)
        rows[torch.arange(n_rows), level] = 1.0
    first_start, first_stop, _ = layout.categorical_blocks[0]
    rows[::7, first_start:first_stop] = 0.0
    return rows


def test_training_cross_entropies_grouped_by_width_match_the_per_block_loop():
    # Blocks of one width are reduced together (a table of many flags trains in a few kernels
    # per step); values and gradients must be the bits of the loop over single blocks.
    layout = _many_blocks_layout([2, 5, 2, 3, 5, 2, 40, 3, 2])
    target = _many_blocks_rows(layout, 300, seed=5)
    logits = torch.randn(300, layout.n_features, generator=torch.Generator().manual_seed(6)) * 3
    weights = torch.randn(
        len(layout.categorical_blocks), generator=torch.Generator().manual_seed(7)
    )
    expected_input = logits.clone().requires_grad_()
    expected = []
    for start, stop, _ in layout.categorical_blocks:
        log_probs = torch.log_softmax(expected_input[:, start:stop], dim=1)
        one_hot = target[:, start:stop]
        observed = -(one_hot * log_probs).sum(dim=1)
        least_likely = -log_probs.min(dim=1).values
        expected.append(torch.where(one_hot.sum(dim=1) > 0.5, observed, least_likely))
    expected = torch.stack(expected, 1)
    (expected * weights).sum().backward()
    got_input = logits.clone().requires_grad_()
    got = ColumnErrors(layout, "cpu")._cross_entropies(got_input, target)
    (got * weights).sum().backward()
    assert torch.equal(got, expected)
    assert torch.equal(got_input.grad, expected_input.grad)


@pytest.mark.parametrize(
    "n_blocks", [3, 40]
)  # a matrix product up to 32 blocks, an index-add above
def test_unseen_fill_is_the_membership_product_with_few_or_many_blocks(n_blocks):
    from models.network import MATMUL_BLOCKS, level_blocks

    layout = _many_blocks_layout([2 + block % 3 for block in range(n_blocks)])
    torch.manual_seed(0)
    network = MixedAutoencoder(layout.n_features, Architecture((16,), 3, clip_inputs=True)).eval()
    low = torch.zeros(layout.n_features)
    low[: layout.n_regression] = -2.0
    network.set_input_bounds(low, torch.ones(layout.n_features))
    first, level_block = level_blocks(layout)
    shares = torch.rand(len(level_block), generator=torch.Generator().manual_seed(8))
    network.set_unseen_fill(first, level_block, shares)
    assert (network.block_membership is None) == (n_blocks > MATMUL_BLOCKS)
    x = _many_blocks_rows(layout, 200, seed=9)
    clipped = torch.maximum(torch.minimum(x, network.input_high), network.input_low)
    levels = clipped[:, first:]
    membership = torch.nn.functional.one_hot(level_block).float()
    unseen = (levels @ membership < 0.5).float()
    assert 0 < int(unseen.amax(dim=1).sum()) < len(x)
    filled = torch.cat([clipped[:, :first], levels + (unseen @ membership.T) * shares], dim=1)
    with torch.no_grad():
        assert torch.equal(network.encode(x), network.encoder(filled))
