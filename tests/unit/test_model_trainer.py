"""The training loop: learning, early stopping, determinism, trimming, progress."""

import dataclasses

import pytest
import torch

from models.network import Architecture, ColumnErrors, MixedAutoencoder
from models.preprocessing import FeatureLayout
from models.trainer import (
    ColumnLoss,
    FlatAdamW,
    TrainingConfig,
    TrainingRows,
    resolve_batch_size,
    resolve_learning_rate,
    train_network,
)

LAYOUT = FeatureLayout(tuple(f"x{i}" for i in range(4)), 4, 4, (0, 1, 2, 3), (), ())


def low_rank_data(n_rows: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    factors = torch.randn(n_rows, 1, generator=generator)
    return factors @ torch.tensor([[1.0, -2.0, 0.5, 1.5]]) + 0.01 * torch.randn(
        n_rows, 4, generator=generator
    )


def fit(config: TrainingConfig, seed: int = 0, progress=None, data=None, latent_dim: int = 1):
    """Train a 4 -> 16 -> ``latent_dim`` network on rows 0-499 of ``data`` (validation: the rest)."""
    torch.manual_seed(seed)
    network = MixedAutoencoder(4, Architecture((16,), latent_dim))
    data = low_rank_data(600) if data is None else data
    history = train_network(
        network,
        ColumnLoss(ColumnErrors(LAYOUT, "cpu"), torch.ones(4), torch.arange(4)),
        TrainingRows(data[:500], data[500:]),
        config,
        torch.Generator().manual_seed(seed),
        progress,
    )
    return network, history


CONFIG = TrainingConfig(
    epochs=30, batch_size=64, learning_rate=3e-3, weight_decay=0.0, patience=0, grad_clip=1.0
)


def test_learns_a_low_rank_structure():
    _, history = fit(CONFIG)
    assert history["val_loss"][-1] < 0.05 * history["val_loss"][0]
    assert history["epochs_run"] == 30 and len(history["train_loss"]) == 30


def test_same_seed_same_weights_and_different_seed_differs():
    first, _ = fit(CONFIG, seed=1)
    second, _ = fit(CONFIG, seed=1)
    third, _ = fit(CONFIG, seed=2)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(first.encoder[0].weight, third.encoder[0].weight)


def test_early_stopping_restores_the_best_epoch():
    config = TrainingConfig(
        epochs=200, batch_size=500, learning_rate=0.3, weight_decay=0.0, patience=3, grad_clip=0.0
    )
    network, history = fit(config)
    assert history["epochs_run"] < 200
    assert history["epochs_run"] - history["best_epoch"] == 3
    data = low_rank_data(600)
    network.eval()
    with torch.no_grad():
        restored = ((network(data[500:])[0] - data[500:]) ** 2).sum(1).mean().item()
    assert abs(restored - min(history["val_loss"])) < 1e-4


def test_trimming_keeps_planted_outliers_out_of_the_fit():
    # 25 of 500 training rows lie along a second direction that a 2-d code could also learn.
    data = low_rank_data(600)
    generator = torch.Generator().manual_seed(5)
    data[:25] = torch.randn(25, 1, generator=generator) * 3 * torch.tensor([[2.0, 1.0, -1.0, 0.0]])

    def outlier_error(trim_fraction):
        config = TrainingConfig(**{**CONFIG.__dict__, "trim_fraction": trim_fraction})
        network, _ = fit(config, data=data, latent_dim=2)
        with torch.no_grad():
            return ((network(data[:25])[0] - data[:25]) ** 2).sum(1).mean().item()

    assert outlier_error(0.1) > 2.5 * outlier_error(0.0)


def test_progress_reports_every_epoch_and_swap_noise_trains():
    calls = []
    config = TrainingConfig(**{**CONFIG.__dict__, "epochs": 3, "swap_noise": 0.2})
    fit(config, progress=lambda *args: calls.append(args))
    assert [(epoch, total) for epoch, total, _, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(train > 0 and val > 0 for _, _, train, val in calls)


def test_flat_adamw_matches_torch_adamw():
    generator = torch.Generator().manual_seed(3)
    start = torch.randn(50, generator=generator)
    gradients = [torch.randn(50, generator=generator) for _ in range(20)]
    rates = [1e-2 * (step + 1) / 20 for step in range(20)]
    ours = torch.nn.Parameter(start.clone())
    reference = torch.nn.Parameter(start.clone())
    optimizer = FlatAdamW(ours, weight_decay=0.05)
    torch_optimizer = torch.optim.AdamW([reference], lr=1.0, weight_decay=0.05)
    for gradient, rate in zip(gradients, rates, strict=True):
        ours.grad, reference.grad = gradient.clone(), gradient.clone()
        optimizer.step(rate)
        torch_optimizer.param_groups[0]["lr"] = rate
        torch_optimizer.step()
    assert not torch.equal(ours.detach(), start)
    torch.testing.assert_close(ours.detach(), reference.detach(), rtol=1e-6, atol=1e-7)


def test_training_leaves_each_parameter_its_own_storage():
    network, _ = fit(dataclasses.replace(CONFIG, epochs=2))
    parameters = list(network.parameters())
    pointers = {p.untyped_storage().data_ptr() for p in parameters}
    assert len(pointers) == len(parameters)  # safetensors refuses shared storage
    assert all(p.grad is None for p in parameters)


FLAT_ADAMW_STEP = FlatAdamW.step


def gradient_norms_at_each_step(monkeypatch, grad_clip: float) -> list[float]:
    norms: list[float] = []

    def recording_step(self, learning_rate):
        norms.append(float(torch.linalg.vector_norm(self.flat.grad)))
        FLAT_ADAMW_STEP(self, learning_rate)

    monkeypatch.setattr(FlatAdamW, "step", recording_step)
    fit(dataclasses.replace(CONFIG, epochs=2, grad_clip=grad_clip), data=low_rank_data(600) * 50)
    return norms


def test_gradients_are_clipped_to_the_configured_norm(monkeypatch):
    unclipped = gradient_norms_at_each_step(monkeypatch, grad_clip=0.0)
    clipped = gradient_norms_at_each_step(monkeypatch, grad_clip=1.0)
    assert max(unclipped) > 10.0
    assert len(clipped) == len(unclipped) == 2 * 8
    assert max(clipped) <= 1.0 + 1e-5


@pytest.mark.parametrize(
    ("n_train", "expected"),
    [(40, 40), (483, 256), (3_036, 512), (7_045, 1024), (30_930, 4096), (1_000_000, 4096)],
)
def test_auto_batch_size_aims_at_eight_steps_per_epoch_within_bounds(n_train, expected):
    assert resolve_batch_size("auto", n_train) == expected
    assert resolve_batch_size(128, n_train) == min(128, n_train)


def test_auto_learning_rate_grows_with_the_square_root_of_the_batch_above_256_rows():
    assert resolve_learning_rate("auto", 64) == pytest.approx(1e-3)
    assert resolve_learning_rate("auto", 256) == pytest.approx(1e-3)
    assert resolve_learning_rate("auto", 1024) == pytest.approx(2e-3)
    assert resolve_learning_rate("auto", 4096) == pytest.approx(4e-3)
    assert resolve_learning_rate(0.02, 4096) == 0.02
