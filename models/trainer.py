"""Plain-torch training loop for :class:`models.network.MixedAutoencoder`.

The training and validation matrices are preloaded on the device once; each epoch draws one random
permutation and slices large mini-batches out of it (no DataLoader, no per-row Python). AdamW with a
warm-up + cosine learning-rate schedule, gradient-norm clipping, early stopping on the validation
reconstruction loss (the best weights are restored), bf16 autocast on CUDA. All randomness (batch
order, swap noise, the variational sample, dropout) comes from torch RNGs seeded by the caller, so the
same data and seed give the same weights on CPU.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.network import ColumnErrors, MixedAutoencoder, kl_divergence

ProgressCallback = Callable[[int, int, float, float], None]
"""``progress(epoch, n_epochs, train_loss, val_loss)``; ``epoch`` counts from 1."""


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings.

    Attributes:
        epochs: maximum number of passes over the training rows.
        batch_size: rows per optimisation step.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        patience: epochs without a validation improvement before stopping; 0 disables early stopping.
        grad_clip: maximum gradient L2 norm; 0 disables clipping.
        swap_noise: probability of replacing each (row, column) input value with the same column's
            value from a random training row (denoising variant); 0 trains a plain autoencoder.
        kl_weight: weight of the KL term for the variational variant (ignored otherwise).
        trim_fraction: share of each batch's highest-error rows left out of the loss, so anomalies
            hidden in unlabelled training data are not learned; 0 uses every row.
        warmup_fraction: share of the steps spent warming the learning rate up linearly.
    """

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int
    grad_clip: float
    swap_noise: float = 0.0
    kl_weight: float = 1.0
    trim_fraction: float = 0.0
    warmup_fraction: float = 0.05


def _lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1, then cosine decay to 1% of the peak at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _swap_noise(
    batch: torch.Tensor,
    pool: torch.Tensor,
    feature_column: torch.Tensor,
    n_columns: int,
    rate: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Replace each (row, original column) of ``batch`` by a random ``pool`` row's value with
    probability ``rate``; all features of a column (value + indicator, one-hot block) move together."""
    n_rows = batch.shape[0]
    device = batch.device
    swap = torch.rand((n_rows, n_columns), generator=generator, device=device) < rate
    donors = torch.randint(
        0, pool.shape[0], (n_rows, n_columns), generator=generator, device=device
    )
    feature_index = torch.arange(batch.shape[1], device=device)
    donated = pool[donors[:, feature_column], feature_index]
    return torch.where(swap[:, feature_column], donated, batch)


@torch.inference_mode()
def reconstruction_loss(
    network: MixedAutoencoder,
    column_errors: ColumnErrors,
    data: torch.Tensor,
    column_weights: torch.Tensor,
    chunk_rows: int = 65536,
) -> float:
    """Mean weighted reconstruction error per row of ``data`` (n, n_features), in eval mode."""
    was_training = network.training
    network.eval()
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    for start in range(0, data.shape[0], chunk_rows):
        chunk = data[start : start + chunk_rows]
        output, _, _ = network(chunk)
        total += (column_errors(output, chunk) * column_weights).sum(dtype=torch.float64)
    network.train(was_training)
    return float(total) / max(1, data.shape[0])


# Below this many multiply-adds per step (batch rows x parameters), CPU training runs fastest on one
# thread: the matrices are too small to split, and on a busy machine extra threads mostly wait.
SINGLE_THREAD_WORK = 1 << 24


@contextlib.contextmanager
def _cpu_threads(device: torch.device, work_per_step: int):
    """Use one intra-op thread for small CPU workloads, restoring the previous setting after."""
    if device.type != "cpu" or work_per_step >= SINGLE_THREAD_WORK:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_network(
    network: MixedAutoencoder,
    column_errors: ColumnErrors,
    train: torch.Tensor,
    validation: torch.Tensor,
    column_weights: torch.Tensor,
    feature_column: torch.Tensor,
    config: TrainingConfig,
    generator: torch.Generator,
    progress: ProgressCallback | None = None,
) -> dict:
    """Fit ``network`` in place on ``train`` (n_train, n_features), stopping on ``validation``.

    ``column_weights`` (n_columns,) weight each column's error in the loss; ``feature_column``
    (n_features,) maps each preprocessed feature to its original column (for swap noise).
    ``generator`` (on the data's device) drives batch order and swap noise; seed the global torch
    RNG too for dropout and the variational sample. Returns the history:
    ``{"train_loss": [...], "val_loss": [...], "best_epoch": int, "epochs_run": int}``
    (losses are mean weighted errors per row; ``best_epoch`` counts from 1).
    """
    n_parameters = sum(p.numel() for p in network.parameters())
    work_per_step = min(config.batch_size, train.shape[0]) * n_parameters
    with _cpu_threads(train.device, work_per_step):
        return _train_loop(
            network,
            column_errors,
            train,
            validation,
            column_weights,
            feature_column,
            config,
            generator,
            progress,
        )


def _train_loop(
    network: MixedAutoencoder,
    column_errors: ColumnErrors,
    train: torch.Tensor,
    validation: torch.Tensor,
    column_weights: torch.Tensor,
    feature_column: torch.Tensor,
    config: TrainingConfig,
    generator: torch.Generator,
    progress: ProgressCallback | None,
) -> dict:
    device = train.device
    n_train = train.shape[0]
    batch_size = max(1, min(config.batch_size, n_train))
    starts = list(range(0, n_train, batch_size))
    # A batch-norm layer cannot train on a single row: drop a 1-row tail (reshuffled each epoch).
    if len(starts) > 1 and n_train - starts[-1] == 1:
        starts.pop()
    rows_per_epoch = sum(min(batch_size, n_train - start) for start in starts)
    total_steps = config.epochs * len(starts)
    warmup_steps = max(1, int(config.warmup_fraction * total_steps))
    # The fused kernel updates all parameters in one call: on small networks the per-step Python
    # and dispatch overhead, not arithmetic, bounds throughput.
    parameters = list(network.parameters())
    optimizer = torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total_steps, warmup_steps)
    )
    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    n_columns = column_weights.shape[0]
    history: dict = {"train_loss": [], "val_loss": [], "best_epoch": 0, "epochs_run": 0}
    best_loss = math.inf
    best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    epochs_without_improvement = 0

    for epoch in range(1, config.epochs + 1):
        network.train()
        order = torch.randperm(n_train, generator=generator, device=device)
        epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
        for start in starts:
            rows = order[start : start + batch_size]
            target = train[rows]
            inputs = target
            if config.swap_noise > 0:
                inputs = _swap_noise(
                    target, train, feature_column, n_columns, config.swap_noise, generator
                )
            with autocast:
                output, mean, log_var = network(inputs)
            per_row = (column_errors(output, target) * column_weights).sum(dim=1)
            if config.trim_fraction > 0:
                kept = max(1, math.ceil((1.0 - config.trim_fraction) * per_row.shape[0]))
                loss = per_row.topk(kept, largest=False, sorted=False).values.mean()
            else:
                loss = per_row.mean()
            if log_var is not None:
                loss = loss + config.kl_weight * kl_divergence(mean.float(), log_var.float()).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip, foreach=True)
            optimizer.step()
            schedule.step()
            epoch_loss += per_row.detach().sum(dtype=torch.float64)
        train_loss = float(epoch_loss) / rows_per_epoch
        val_loss = reconstruction_loss(network, column_errors, validation, column_weights)
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        history["epochs_run"] = epoch
        if val_loss < best_loss:
            best_loss = val_loss
            history["best_epoch"] = epoch
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            epochs_without_improvement = 0
        else:
            epochs_without_improvement += 1
        if progress is not None:
            progress(epoch, config.epochs, train_loss, val_loss)
        if config.patience and epochs_without_improvement >= config.patience:
            break
    network.load_state_dict(best_state)
    network.eval()
    return history
