"""``AutoencoderDetector``: a mixed-type autoencoder anomaly detector with a scikit-learn contract.

Scores are reconstruction errors split by original column: a squared error for each numeric column
(plus its missing indicator), a cross-entropy over the levels of each categorical column. A row's
score is the weighted sum of its column errors, so every flag comes with the columns that explain it.
Higher scores are more anomalous (the PyOD convention).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from models import calibration
from models.network import ACTIVATIONS, ColumnErrors, MixedAutoencoder
from models.preprocessing import (
    SCALINGS,
    FastPreprocessor,
    as_frame,
    build_preprocessor,
    check_columns_present,
    describe_layout,
    normalise_frame,
    resolve_columns,
)
from models.trainer import (
    ProgressCallback,
    TrainingConfig,
    resolve_batch_size,
    resolve_learning_rate,
    train_network,
)

VARIANTS = ("plain", "denoising", "variational")
ERROR_NORMALIZATIONS = ("none", "validation_mean")
# Rows per forward pass when scoring: large enough to amortise per-call overhead, small enough that
# a 64k-row chunk of a wide frame stays well under a GiB of activations.
INFERENCE_CHUNK_ROWS = 65536
# On CPU a smaller chunk keeps the activations and column errors in cache between the operations,
# which is worth more than the per-call overhead it adds (measured: 2048 rows beat 65536 by ~2x).
CPU_INFERENCE_CHUNK_ROWS = 2048
# Scaled inputs are clipped to this magnitude so an absurd value cannot overflow float32 squares.
INPUT_CLIP = 1e4


@dataclass(frozen=True)
class ScoreResult:
    """Everything the scoring job writes for n rows, from one forward pass.

    Attributes:
        scores: (n,) float64 anomaly scores, higher = more anomalous.
        percentiles: (n,) float64 in [0, 1], share of validation rows scoring at or below.
        is_anomaly: (n,) bool, ``scores > threshold``.
        latent: (n, latent_dim) float32 latent features.
        top_features: n strings, each the names of the row's ``top_k`` largest contributors joined by
            ``","`` (largest first), e.g. ``"amount,merchant,hour"``.
        contributions: (n, n_columns) float32 per-column score contributions (they sum to
            ``scores``), columns in ``detector.feature_names_in_`` order.
    """

    scores: np.ndarray
    percentiles: np.ndarray
    is_anomaly: np.ndarray
    latent: np.ndarray
    top_features: list[str]
    contributions: np.ndarray


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu' or a CUDA device such as 'cuda:0', got {device!r}"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} needs CUDA, which is not available; use device='auto'")
    return resolved


class AutoencoderDetector(BaseEstimator):
    """Autoencoder anomaly detector for mixed numeric / categorical tables.

    Parameters are keyword-only. The defaults were chosen with ``benchmarks/quality.py`` (ADBench,
    with an ablation table) and ``benchmarks/nslkdd.py``; see docs/benchmarks/quality.md. The two
    that matter most: ``trim_fraction=0.2`` (unlabelled training data holds anomalies; leaving each
    batch's worst-reconstructed rows out of the loss keeps the model from learning them) and
    ``dropout=0.2`` (a model that reconstructs everything well flags nothing).

    Columns
        numeric_columns, categorical_columns: column names; both ``None`` detects every column of the
            fit frame from its dtype. Naming either uses exactly the named columns (the other list
            defaults to empty) and ignores the rest (ids, timestamps, labels).
    Preprocessing
        scaling: ``"standard"``, ``"robust"``, ``"quantile"`` (to a normal), ``"minmax"`` or ``"none"``.
        numeric_imputation: ``"median"`` or ``"mean"``.
        add_missing_indicators: add a 0/1 feature for each numeric column with missing values at fit.
        min_frequency, max_categories: rare-level grouping of the one-hot encoder (scikit-learn
            semantics: a count, or a share of rows when a float < 1); unseen levels map to the rare
            group, or cost as much as the least likely level when a column has none.
    Network
        hidden_sizes: encoder hidden widths (decoder mirrored); latent_dim: latent width per member.
        activation: one of ``relu, leaky_relu, elu, gelu, silu, tanh``; dropout: rate in [0, 1);
        batch_norm: batch normalisation after hidden layers.
        variant: ``"plain"``, ``"denoising"`` (swap noise with rate ``swap_noise``) or
            ``"variational"`` (KL term weighted by ``kl_weight``).
        n_members: ensemble size; members differ by seed and, when ``ensemble_widths`` is given, by
            hidden width (member m multiplies ``hidden_sizes`` by ``ensemble_widths[m % len]``).
            Member scores are divided by their validation standard deviation, then averaged.
    Training
        trim_fraction: share of each batch's highest-error rows left out of the loss, in [0, 1).
        epochs, weight_decay, patience (early stopping on the validation loss, 0 = off), grad_clip
            (max gradient norm, 0 = off), validation_fraction (held-out share used for early
            stopping and calibration).
        batch_size: rows per optimisation step, or ``"auto"``: about 8 steps per epoch, a power of
            two from 256 to 4096 rows (small tables keep 256; see
            :func:`models.trainer.resolve_batch_size`).
        learning_rate: AdamW peak (warm-up, then cosine decay), or ``"auto"``: 1e-3 up to 256 rows
            per step, growing with the square root of the rows per step above that (4096 rows:
            4e-3). ``metadata_`` records both values used.
    Scoring
        column_weights: optional ``{column: weight}`` (default 1 each) for the loss and the score.
        error_normalization: ``"validation_mean"`` divides each column's error by its mean on the
            validation rows (so noisy columns do not dominate); ``"none"`` keeps raw errors.
        threshold_method, threshold_value: see :func:`models.calibration.fit_threshold`.
    Runtime
        random_state: seed for the split, initialisation, batch order and noise.
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda[:i]"``.
    """

    def __init__(
        self,
        *,
        numeric_columns: Sequence[str] | None = None,
        categorical_columns: Sequence[str] | None = None,
        scaling: str = "standard",
        numeric_imputation: str = "median",
        add_missing_indicators: bool = True,
        min_frequency: int | float | None = 5,
        max_categories: int | None = None,
        hidden_sizes: Sequence[int] = (64,),
        latent_dim: int = 8,
        activation: str = "relu",
        dropout: float = 0.2,
        batch_norm: bool = False,
        variant: str = "plain",
        swap_noise: float = 0.1,
        kl_weight: float = 0.01,
        n_members: int = 1,
        ensemble_widths: Sequence[float] | None = None,
        trim_fraction: float = 0.2,
        epochs: int = 100,
        batch_size: int | str = "auto",
        learning_rate: float | str = "auto",
        weight_decay: float = 1e-4,
        patience: int = 10,
        grad_clip: float = 1.0,
        validation_fraction: float = 0.1,
        column_weights: dict[str, float] | None = None,
        error_normalization: str = "none",
        threshold_method: str = "fpr",
        threshold_value: float = 0.01,
        random_state: int = 0,
        device: str = "auto",
    ):
        self.numeric_columns = numeric_columns
        self.categorical_columns = categorical_columns
        self.scaling = scaling
        self.numeric_imputation = numeric_imputation
        self.add_missing_indicators = add_missing_indicators
        self.min_frequency = min_frequency
        self.max_categories = max_categories
        self.hidden_sizes = hidden_sizes
        self.latent_dim = latent_dim
        self.activation = activation
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.variant = variant
        self.swap_noise = swap_noise
        self.kl_weight = kl_weight
        self.n_members = n_members
        self.ensemble_widths = ensemble_widths
        self.trim_fraction = trim_fraction
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.grad_clip = grad_clip
        self.validation_fraction = validation_fraction
        self.column_weights = column_weights
        self.error_normalization = error_normalization
        self.threshold_method = threshold_method
        self.threshold_value = threshold_value
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        def positive_int(name: str, value) -> None:
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {tuple(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.error_normalization not in ERROR_NORMALIZATIONS:
            raise ValueError(
                f"error_normalization must be one of {ERROR_NORMALIZATIONS}, "
                f"got {self.error_normalization!r}"
            )
        for name in ("latent_dim", "n_members", "epochs"):
            positive_int(name, getattr(self, name))
        if self.batch_size != "auto" and (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int | np.integer)
            or self.batch_size < 1
        ):
            raise ValueError(
                f'batch_size must be a positive integer or "auto", got {self.batch_size!r}'
            )
        for size in self.hidden_sizes:
            positive_int("every hidden_sizes entry", size)
        if self.ensemble_widths is not None and (
            len(self.ensemble_widths) == 0 or any(w <= 0 for w in self.ensemble_widths)
        ):
            raise ValueError(
                f"ensemble_widths must be None or a non-empty list of positive multipliers, "
                f"got {self.ensemble_widths!r}"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.trim_fraction < 1:
            raise ValueError(f"trim_fraction must be in [0, 1), got {self.trim_fraction}")
        if not 0 <= self.swap_noise < 1:
            raise ValueError(f"swap_noise must be in [0, 1), got {self.swap_noise}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction}"
            )
        if self.learning_rate != "auto" and not (
            isinstance(self.learning_rate, int | float | np.number)
            and not isinstance(self.learning_rate, bool)
            and self.learning_rate > 0
        ):
            raise ValueError(
                f'learning_rate must be a number > 0 or "auto", got {self.learning_rate!r}'
            )
        for name in ("weight_decay", "grad_clip", "kl_weight", "patience"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        calibration.check_threshold(self.threshold_method, self.threshold_value)
        resolve_device(self.device)

    # ------------------------------------------------------------------ helpers
    def _member_hidden_sizes(self, member: int) -> list[int]:
        factor = 1.0
        if self.ensemble_widths:
            factor = float(self.ensemble_widths[member % len(self.ensemble_widths)])
        return [max(1, round(size * factor)) for size in self.hidden_sizes]

    def _build_network(self, member: int, n_features: int) -> MixedAutoencoder:
        return MixedAutoencoder(
            n_features=n_features,
            hidden_sizes=self._member_hidden_sizes(member),
            latent_dim=self.latent_dim,
            activation=self.activation,
            dropout=self.dropout,
            batch_norm=self.batch_norm,
            variational=self.variant == "variational",
        )

    def _column_weight_vector(self, columns: Sequence[str]) -> np.ndarray:
        weights = np.ones(len(columns), dtype=np.float32)
        for name, weight in (self.column_weights or {}).items():
            if name not in columns:
                raise ValueError(
                    f"column_weights names column {name!r}, which the detector does not use; "
                    f"use one of {list(columns)}"
                )
            if not weight >= 0:
                raise ValueError(f"column_weights[{name!r}] must be >= 0, got {weight}")
            weights[list(columns).index(name)] = weight
        return weights

    def _features(self, X) -> torch.Tensor:
        """Frame/array -> (n, n_features) float32 tensor on the detector's device."""
        frame = as_frame(X)
        check_columns_present(frame, self.feature_names_in_)
        fast = self._fast_preprocessor()
        if fast is not None:
            if len(frame) == 0:
                return torch.zeros((0, self.layout_.n_features), device=self.device_)
            features = fast.transform(frame, clip=INPUT_CLIP)
            return torch.from_numpy(features).to(self.device_)
        normalised = normalise_frame(frame, self.numeric_columns_, self.categorical_columns_)
        if normalised.empty:
            return torch.zeros((0, self.layout_.n_features), device=self.device_)
        features = self.preprocessor_.transform(normalised).astype(np.float32, copy=False)
        np.clip(features, -INPUT_CLIP, INPUT_CLIP, out=features)
        return torch.from_numpy(features).to(self.device_)

    def _fast_preprocessor(self) -> FastPreprocessor | None:
        """The numpy replay of ``preprocessor_`` (rebuilt when ``preprocessor_`` is replaced), or
        ``None`` when it is not one :func:`build_preprocessor` makes or its width disagrees with
        ``layout_``; ``_features`` then uses ``preprocessor_.transform``."""
        cached = getattr(self, "_fast_cache", None)
        if cached is None or cached[0] is not self.preprocessor_:
            fast = FastPreprocessor.from_fitted(
                self.preprocessor_, self.numeric_columns_, self.categorical_columns_
            )
            if fast is not None and fast.n_features != self.layout_.n_features:
                fast = None
            cached = (self.preprocessor_, fast)
            self._fast_cache = cached
        return cached[1]

    @torch.inference_mode()
    def _forward(self, features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(n, n_features) -> contributions (n, n_columns) float32, latent (n, latent_dim_) float32."""
        n_rows = features.shape[0]
        contributions = np.empty((n_rows, len(self.feature_names_in_)), dtype=np.float32)
        latents = np.empty((n_rows, self.latent_dim_), dtype=np.float32)
        chunk_rows = (
            CPU_INFERENCE_CHUNK_ROWS if features.device.type == "cpu" else (INFERENCE_CHUNK_ROWS)
        )
        for start in range(0, n_rows, chunk_rows):
            chunk = features[start : start + chunk_rows]
            stop = start + chunk.shape[0]
            total = None
            member_latents = []
            for network, scale in zip(self.networks_, self._member_scales, strict=True):
                output, mean, _ = network(chunk)
                weighted = self._column_errors(output, chunk).mul_(scale)
                total = weighted if total is None else total.add_(weighted)
                member_latents.append(mean.float())
            contributions[start:stop] = total.cpu().numpy()
            latents[start:stop] = torch.cat(member_latents, dim=1).cpu().numpy()
        return contributions, latents

    def _prepare_scoring(self) -> None:
        """Build the per-member scale vectors used by :meth:`_forward` from the calibration state."""
        weights = torch.as_tensor(self.column_weights_, device=self.device_)
        self._column_errors = ColumnErrors(self.layout_, self.device_)
        self._member_scales = [
            weights / torch.as_tensor(normalizer, device=self.device_) / (std * len(self.networks_))
            for normalizer, std in zip(self.member_normalizers_, self.member_stds_, strict=True)
        ]

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, progress: ProgressCallback | None = None) -> AutoencoderDetector:
        """Fit the preprocessor, the network(s) and the calibration on ``X`` (labels are ignored).

        Args:
            X: DataFrame or numeric array, (n_rows, n_columns), n_rows >= 2.
            y: ignored (unsupervised); accepted for scikit-learn pipelines.
            progress: optional ``progress(epoch, n_epochs, train_loss, val_loss)`` called after each
                epoch; with an ensemble, epochs count across members (``n_epochs`` =
                ``epochs * n_members``, and early-stopped members skip ahead).

        Returns:
            self
        """
        started = time.perf_counter()
        self._check_params()
        frame = as_frame(X)
        numeric, categorical = resolve_columns(
            frame, self.numeric_columns, self.categorical_columns
        )
        check_columns_present(frame, [*numeric, *categorical])
        if len(frame) < 2:
            raise ValueError(
                f"fit needs at least 2 rows (training + validation), got {len(frame)}; "
                "pass more rows"
            )
        normalised = normalise_frame(frame, numeric, categorical)
        self.device_ = resolve_device(self.device)

        order = np.random.default_rng(self.random_state).permutation(len(normalised))
        n_validation = min(
            len(normalised) - 1, max(1, round(self.validation_fraction * len(normalised)))
        )
        validation_rows, train_rows = order[:n_validation], order[n_validation:]

        preprocessor = build_preprocessor(
            normalised.iloc[train_rows],
            numeric,
            categorical,
            scaling=self.scaling,
            numeric_imputation=self.numeric_imputation,
            add_missing_indicators=self.add_missing_indicators,
            min_frequency=self.min_frequency,
            max_categories=self.max_categories,
            random_state=self.random_state,
        )
        preprocessor.fit(normalised.iloc[train_rows])
        self.preprocessor_ = preprocessor
        self.numeric_columns_ = numeric
        self.categorical_columns_ = categorical
        self.feature_names_in_ = np.asarray([*numeric, *categorical], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.layout_ = describe_layout(preprocessor, numeric, categorical)
        self.column_weights_ = self._column_weight_vector(self.layout_.columns)

        features = self._features(normalised)
        train = features[torch.as_tensor(train_rows, device=self.device_)]
        validation = features[torch.as_tensor(validation_rows, device=self.device_)]
        weights = torch.as_tensor(self.column_weights_, device=self.device_)
        column_errors = ColumnErrors(self.layout_, self.device_)
        feature_column = torch.tensor(
            self._feature_column_index(), dtype=torch.long, device=self.device_
        )
        batch_size = resolve_batch_size(self.batch_size, len(train_rows))
        config = TrainingConfig(
            epochs=self.epochs,
            batch_size=batch_size,
            learning_rate=resolve_learning_rate(self.learning_rate, batch_size),
            weight_decay=self.weight_decay,
            patience=self.patience,
            grad_clip=self.grad_clip,
            swap_noise=self.swap_noise if self.variant == "denoising" else 0.0,
            kl_weight=self.kl_weight,
            trim_fraction=self.trim_fraction,
        )

        self.networks_, histories, normalizers, stds = [], [], [], []
        for member in range(self.n_members):
            seed = int(self.random_state) + 1000 * member
            member_progress = None
            if progress is not None:

                def member_progress(epoch, _n, train_loss, val_loss, offset=member * self.epochs):
                    progress(offset + epoch, self.epochs * self.n_members, train_loss, val_loss)

            # The global RNG drives init, dropout and the variational sample: fork it so fitting
            # neither depends on nor disturbs the caller's torch random state.
            fork_devices = [self.device_] if self.device_.type == "cuda" else []
            with torch.random.fork_rng(devices=fork_devices):
                torch.manual_seed(seed)
                network = self._build_network(member, self.layout_.n_features).to(self.device_)
                generator = torch.Generator(device=self.device_).manual_seed(seed)
                history = train_network(
                    network,
                    column_errors,
                    train,
                    validation,
                    weights,
                    feature_column,
                    config,
                    generator,
                    member_progress,
                )
            with torch.inference_mode():
                validation_errors = np.concatenate(
                    [
                        column_errors(network(chunk)[0], chunk).double().cpu().numpy()
                        for chunk in validation.split(INFERENCE_CHUNK_ROWS)
                    ]
                )
            if self.error_normalization == "validation_mean":
                normalizer = np.maximum(validation_errors.mean(axis=0), 1e-6)
            else:
                normalizer = np.ones(len(self.layout_.columns))
            member_scores = (validation_errors * self.column_weights_ / normalizer).sum(axis=1)
            std = float(np.std(member_scores))
            self.networks_.append(network)
            histories.append(history)
            normalizers.append(normalizer.astype(np.float32))
            stds.append(std if std > 1e-12 else 1.0)

        self.member_normalizers_ = normalizers
        self.member_stds_ = stds
        self.latent_dim_ = self.latent_dim * self.n_members
        self.history_ = dict(histories[0])
        if self.n_members > 1:
            self.history_["members"] = histories
        self._prepare_scoring()

        fit_contributions, _ = self._forward(features)
        fit_scores = fit_contributions.sum(axis=1, dtype=np.float64)
        validation_scores = fit_scores[validation_rows]
        self.threshold_, reference, calibrated_on = calibration.calibrate(
            self.threshold_method, self.threshold_value, validation_scores, fit_scores
        )
        self.reference_scores_ = calibration.reference_scores(reference)
        self.metadata_ = {
            "fit_seconds": round(time.perf_counter() - started, 3),
            "fitted_at": pd.Timestamp.now(tz="UTC").isoformat(),
            "n_rows": int(len(normalised)),
            "n_train_rows": int(len(train_rows)),
            "n_validation_rows": int(len(validation_rows)),
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            "n_features_preprocessed": int(self.layout_.n_features),
            "device": str(self.device_),
            "validation_score_mean": float(validation_scores.mean()),
            "validation_flag_rate": float((validation_scores > self.threshold_).mean()),
            "calibration": calibrated_on,
            "versions": library_versions(),
        }
        return self

    def _feature_column_index(self) -> list[int]:
        """(n_features,) original-column index of each preprocessed feature."""
        index = list(self.layout_.regression_column)
        for start, stop, column in self.layout_.categorical_blocks:
            index += [column] * (stop - start)
        return index

    # ------------------------------------------------------------------ scoring
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "threshold_")

    def decision_function(self, X) -> np.ndarray:
        """(n,) float64 anomaly scores of ``X``; higher = more anomalous."""
        check_is_fitted(self)
        contributions, _ = self._forward(self._features(X))
        return contributions.sum(axis=1, dtype=np.float64)

    def predict(self, X) -> np.ndarray:
        """(n,) int64: 1 where the score exceeds ``threshold_``, else 0."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def transform(self, X) -> np.ndarray:
        """(n, latent_dim_) float32 latent features (members' codes side by side)."""
        check_is_fitted(self)
        return self._forward(self._features(X))[1]

    def percentile(self, scores) -> np.ndarray:
        """(n,) scores -> (n,) float64 in [0, 1] against the validation scores."""
        check_is_fitted(self)
        return calibration.percentile(self.reference_scores_, scores)

    def explain(self, X, top_k: int | None = 3) -> pd.DataFrame:
        """Per-column contributions to each row's score.

        Returns a DataFrame (n, n_columns) indexed like ``X`` with one column per original column
        (``feature_names_in_``; a categorical column's one-hot levels are one column). Rows sum to
        :meth:`decision_function`. With ``top_k``, each row keeps only its ``top_k`` largest
        contributions and the others are 0; ``top_k=None`` keeps all of them.
        """
        check_is_fitted(self)
        contributions, _ = self._forward(self._features(X))
        if top_k is not None:
            self._check_top_k(top_k)
            keep = np.zeros_like(contributions, dtype=bool)
            np.put_along_axis(keep, _top_indices(contributions, top_k), True, axis=1)
            contributions = np.where(keep, contributions, np.float32(0))
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(contributions, columns=list(self.feature_names_in_), index=index)

    def score(self, X, top_k: int = 3) -> ScoreResult:
        """Score ``X`` for the scoring job in one forward pass; see :class:`ScoreResult`."""
        check_is_fitted(self)
        self._check_top_k(top_k)
        contributions, latent = self._forward(self._features(X))
        scores = contributions.sum(axis=1, dtype=np.float64)
        top_features = self._top_feature_strings(_top_indices(contributions, top_k))
        return ScoreResult(
            scores=scores,
            percentiles=calibration.percentile(self.reference_scores_, scores),
            is_anomaly=scores > self.threshold_,
            latent=latent,
            top_features=top_features,
            contributions=contributions,
        )

    def _top_feature_strings(self, top: np.ndarray) -> list[str]:
        """(n, k) column indices -> n strings ``"col_a,col_b,..."``. Rows share few distinct
        combinations, so each distinct one is joined once."""
        if top.shape[0] == 0:
            return []
        n_columns = len(self.feature_names_in_)
        if n_columns ** top.shape[1] < 2**62:
            # One integer per combination (base n_columns digits): a 1-D unique is far cheaper
            # than a row-wise one.
            keys = np.zeros(top.shape[0], dtype=np.int64)
            for position in range(top.shape[1]):
                keys *= n_columns
                keys += top[:, position]
            unique_keys, row_combination = np.unique(keys, return_inverse=True)
            combinations = np.empty((len(unique_keys), top.shape[1]), dtype=np.int64)
            for position in reversed(range(top.shape[1])):
                combinations[:, position] = unique_keys % n_columns
                unique_keys = unique_keys // n_columns
        else:
            combinations, row_combination = np.unique(top, axis=0, return_inverse=True)
        names = [str(c) for c in self.feature_names_in_]
        joined = np.array([",".join(names[i] for i in row) for row in combinations], dtype=object)
        return joined[row_combination.reshape(-1)].tolist()

    @staticmethod
    def _check_top_k(top_k) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")

    # ------------------------------------------------------------------ persistence
    def save(self, dir_path: str | Path) -> Path:
        """Write a self-contained bundle to ``dir_path`` (created); see :mod:`models.persistence`."""
        from models.persistence import save_detector

        check_is_fitted(self)
        return save_detector(self, dir_path)

    @classmethod
    def load(cls, dir_path: str | Path, device: str = "auto") -> AutoencoderDetector:
        """Load a bundle written by :meth:`save`, verifying checksums and skops types."""
        from models.persistence import load_detector

        return load_detector(dir_path, device=device)


def _top_indices(contributions: np.ndarray, top_k: int) -> np.ndarray:
    """(n, c) -> (n, min(top_k, c)) column indices of the largest contributions, largest first."""
    k = min(top_k, contributions.shape[1])
    if k < contributions.shape[1]:
        candidates = np.argpartition(-contributions, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(k), contributions.shape).copy()
    picked = np.take_along_axis(contributions, candidates, axis=1)
    order = np.argsort(-picked, axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a bundle depends on (recorded at fit and save)."""
    import platform

    import sklearn
    import skops

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
    }
