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

from models import cpu
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


# batch_size="auto": about AUTO_STEPS_PER_EPOCH optimisation steps per epoch, rounded to a power of
# two within [AUTO_BATCH_MIN, AUTO_BATCH_MAX] rows. Small tables keep 256-row steps (the size the
# other defaults were tuned at); large ones get steps big enough to amortise torch's per-call cost,
# which dominates a small network's step below a few thousand rows on CPU. On ADBench
# (docs/benchmarks/quality.md) mean AUROC is flat within seed noise from fixed 256-row steps
# (0.836) through 16 and 8 steps per epoch (0.835, 0.834) to 4 (0.833, where single sets start to
# lose: Wilt -0.020); 8 keeps a step away from that.
AUTO_STEPS_PER_EPOCH = 8
AUTO_BATCH_MIN, AUTO_BATCH_MAX = 256, 4096
# learning_rate="auto": BASE_LEARNING_RATE up to BASE_BATCH rows per step (where the other defaults
# were tuned), scaled with the square root of the rows per step above that (the square-root rule
# for Adam-type optimisers: a step's gradient noise falls with the square root of its rows).
BASE_LEARNING_RATE, BASE_BATCH = 1e-3, 256


def resolve_batch_size(batch_size: int | str, n_train: int) -> int:
    """Rows per optimisation step for ``n_train`` training rows: ``batch_size``, or the
    ``"auto"`` rule above; never more than ``n_train``."""
    if batch_size == "auto":
        target = max(1.0, n_train / AUTO_STEPS_PER_EPOCH)
        batch_size = min(AUTO_BATCH_MAX, max(AUTO_BATCH_MIN, 2 ** round(math.log2(target))))
    return max(1, min(int(batch_size), n_train))


def resolve_learning_rate(learning_rate: float | str, batch_size: int) -> float:
    """Peak learning rate: ``learning_rate``, or for ``"auto"`` BASE_LEARNING_RATE times
    ``sqrt(max(batch_size, BASE_BATCH) / BASE_BATCH)``."""
    if learning_rate == "auto":
        return BASE_LEARNING_RATE * math.sqrt(max(batch_size, BASE_BATCH) / BASE_BATCH)
    return float(learning_rate)


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


class FlatAdamW:
    """AdamW on one flat parameter tensor: torch.optim.AdamW's update rule (decoupled weight
    decay, bias-corrected moments, amsgrad off) in six in-place kernel calls per step.

    torch.optim's Python around the update (hooks, state bookkeeping, per-group checks) costs
    about 90 us a step, several times its fused kernel on a network of a few thousand weights,
    and a step of a small tabular autoencoder costs about 1 ms in all.

    Args:
        flat: the parameter (n,), with its gradient in ``flat.grad`` when :meth:`step` is called.
        weight_decay: decoupled weight decay per unit learning rate.
        betas: decay rates of the first and second moment estimates.
        eps: added to the bias-corrected root of the second moment.
    """

    def __init__(
        self,
        flat: torch.nn.Parameter,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.flat = flat
        self.weight_decay = weight_decay
        self.betas = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(flat, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(flat, memory_format=torch.preserve_format)
        self.steps = 0

    @torch.no_grad()
    def step(self, learning_rate: float) -> None:
        """Update ``flat`` in place from ``flat.grad`` at ``learning_rate``."""
        self.steps += 1
        beta1, beta2 = self.betas
        gradient = self.flat.grad
        self.flat.mul_(1.0 - learning_rate * self.weight_decay)
        self.exp_avg.lerp_(gradient, 1.0 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(gradient, gradient, value=1.0 - beta2)
        bias_correction1 = 1.0 - beta1**self.steps
        bias_correction2 = 1.0 - beta2**self.steps
        denominator = (self.exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denominator, value=-learning_rate / bias_correction1)


def _flatten_parameters(network: torch.nn.Module) -> torch.nn.Parameter:
    """Make every parameter of ``network`` a view of one flat buffer, and its gradient a view of
    the buffer's gradient; return the buffer as a leaf the optimizer can update.

    Backward accumulates into the existing gradient views in place, so the flat gradient is the
    concatenation of the parameters' gradients. :func:`_unflatten_parameters` gives every
    parameter its own storage again (safetensors refuses tensors that share memory).
    """
    parameters = list(network.parameters())
    flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in parameters]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for parameter in parameters:
        size = parameter.numel()
        parameter.data = flat.data[offset : offset + size].view_as(parameter)
        parameter.grad = flat.grad[offset : offset + size].view_as(parameter)
        offset += size
    return flat


def _unflatten_parameters(network: torch.nn.Module) -> None:
    for parameter in network.parameters():
        parameter.data = parameter.data.clone()
        parameter.grad = None


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
    """Size torch's threads for CPU training (models.cpu.choose_torch_threads: AEFLOW_TORCH_THREADS,
    else the CPUs this process may use that busy neighbours leave idle; one for small steps),
    restoring the previous setting after."""
    if device.type != "cpu":
        yield
        return
    most = 1 if work_per_step < SINGLE_THREAD_WORK else None
    with cpu.torch_threads(cpu.choose_torch_threads(most=most)):
        yield


@dataclass(frozen=True)
class ColumnLoss:
    """What the loss is made of: the per-column errors of a reconstruction (``column_errors``),
    each column's weight in the loss (``column_weights``, (n_columns,)), and each preprocessed
    feature's original column (``feature_column``, (n_features,), for swap noise)."""

    column_errors: ColumnErrors
    column_weights: torch.Tensor
    feature_column: torch.Tensor


@dataclass(frozen=True)
class TrainingRows:
    """The preprocessed rows a network is fitted on (``train``, (n_train, n_features)) and stops
    on (``validation``, (n_validation, n_features))."""

    train: torch.Tensor
    validation: torch.Tensor


def train_network(
    network: MixedAutoencoder,
    loss: ColumnLoss,
    rows: TrainingRows,
    config: TrainingConfig,
    generator: torch.Generator,
    progress: ProgressCallback | None = None,
) -> dict:
    """Fit ``network`` in place on ``rows.train``, stopping on ``rows.validation``, with the
    column-weighted loss ``loss``.
    ``generator`` (on the data's device) drives batch order and swap noise; seed the global torch
    RNG too for dropout and the variational sample. Returns the history:
    ``{"train_loss": [...], "val_loss": [...], "best_epoch": int, "epochs_run": int}``
    (losses are mean weighted errors per row; ``best_epoch`` counts from 1).
    """
    n_parameters = sum(p.numel() for p in network.parameters())
    work_per_step = min(config.batch_size, rows.train.shape[0]) * n_parameters
    flat = _flatten_parameters(network)
    try:
        with _cpu_threads(rows.train.device, work_per_step):
            return _train_loop(network, flat, loss, rows, config, generator, progress)
    finally:
        _unflatten_parameters(network)


def _train_loop(
    network: MixedAutoencoder,
    flat: torch.nn.Parameter,
    loss: ColumnLoss,
    rows: TrainingRows,
    config: TrainingConfig,
    generator: torch.Generator,
    progress: ProgressCallback | None,
) -> dict:
    column_errors, column_weights = loss.column_errors, loss.column_weights
    feature_column, train, validation = loss.feature_column, rows.train, rows.validation
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
    # On small networks the per-step Python and dispatch overhead, not arithmetic, bounds
    # throughput: with every parameter and gradient a view of one flat buffer (``flat``),
    # clearing and clipping are one kernel call each and the AdamW update a handful.
    optimizer = FlatAdamW(flat, weight_decay=config.weight_decay)
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
    step = 0

    for epoch in range(1, config.epochs + 1):
        network.train()
        order = torch.randperm(n_train, generator=generator, device=device)
        epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
        for start in starts:
            rows = order[start : start + batch_size]
            target = train.index_select(0, rows)
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
            flat.grad.zero_()
            loss.backward()
            if config.grad_clip > 0:
                # torch.nn.utils.clip_grad_norm_'s rule on the one flat gradient.
                gradient_norm = torch.linalg.vector_norm(flat.grad)
                flat.grad.mul_((config.grad_clip / (gradient_norm + 1e-6)).clamp_(max=1.0))
            optimizer.step(config.learning_rate * _lr_factor(step, total_steps, warmup_steps))
            step += 1
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
