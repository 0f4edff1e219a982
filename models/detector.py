"""``AutoencoderDetector``: a mixed-type autoencoder anomaly detector with a scikit-learn contract.

Scores are reconstruction errors split by original column: a squared error for each numeric column
(plus its missing indicator), a cross-entropy over the levels of each categorical column. A row's
score is the weighted sum of its column errors, so every flag comes with the columns that explain it.
Higher scores are more anomalous (the PyOD convention).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from models import calibration
from models.column_scores import ColumnScorer, ScorerSettings
from models.detector_params import (
    check_params,
    column_weight_vector,
    library_versions,
    resolve_device,
    validation_split,
)
from models.explanations import (
    ScoreResult,
    explanation_details,
    top_feature_strings,
)
from models.fast_preprocessing import FastPreprocessor
from models.latent import LatentRotation
from models.network import Architecture, ColumnErrors, MixedAutoencoder, level_blocks, pad_rows
from models.persistence import SavedState, read_bundle, save_detector
from models.preprocessing import (
    INPUT_CLIP,
    PreprocessingSettings,
    as_frame,
    binary_columns,
    check_columns_present,
    clipped_features,
    describe_layout,
    fit_preprocessor,
    normalise_frame,
    resolve_columns,
)
from models.reconstruction import RowReconstruction, reconstruction_of_rows
from models.trainer import (
    ColumnLoss,
    ProgressCallback,
    TrainingConfig,
    TrainingRows,
    resolve_batch_size,
    resolve_learning_rate,
    train_network,
)

# Rows per forward pass when scoring: large enough to amortise per-call overhead, small enough that
# a 64k-row chunk of a wide frame stays well under a GiB of activations.
INFERENCE_CHUNK_ROWS = 65536
# On CPU a smaller chunk keeps activations and errors in cache (2048 rows beat 65536 by ~2x); 4096
# halves the calls, each a GIL hand-off beside the reading thread, for a similar cache cost.
CPU_INFERENCE_CHUNK_ROWS = 4096


class AutoencoderDetector(BaseEstimator):
    """Autoencoder anomaly detector for mixed numeric / categorical tables.

    Parameters are keyword-only. The defaults were chosen by ablation over ADBench, NSL-KDD, the
    real mixed-type tables and generated ones (``benchmarks/quality.py``, ``real_tables.py``,
    ``explanations.py``; docs/benchmarks/ablation.md). Those that matter most:
    ``trim_fraction=0.2`` (unlabelled training data holds anomalies; leaving each batch's
    worst-reconstructed rows out of the loss keeps the model from learning them), ``dropout=0.2``
    (a model that reconstructs everything well flags nothing), ``error_normalization="surprise"``
    with ``marginal_weight`` (every column counts in nats of excess surprise, so no column dominates
    the scores or the explanations, see :mod:`models.column_scores`) and ``clip_inputs`` (a wild
    value does not drag the reconstruction of the rest of its row along).

    Every parameter is described in :mod:`models.detector_params`, which also checks them.
    """

    # scikit-learn's convention: the estimator's __init__ stores every parameter, by keyword.
    def __init__(  # noqa: PLR0913
        self,
        *,
        numeric_columns: Sequence[str] | None = None,
        categorical_columns: Sequence[str] | None = None,
        scaling: str = "auto",
        binary_columns: bool = True,
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
        clip_inputs: bool = True,
        trim_fraction: float = 0.2,
        epochs: int = 100,
        batch_size: int | str = "auto",
        learning_rate: float | str = "auto",
        weight_decay: float = 1e-4,
        patience: int = 10,
        grad_clip: float = 1.0,
        validation_fraction: float = 0.1,
        column_weights: dict[str, float] | None = None,
        error_normalization: str = "surprise",
        marginal_weight: float = 0.5,
        typical_error_floor: float = 0.01,
        explanation_quantile: float = 0.99,
        explanation_floor: float = 10.0,
        threshold_method: str = "fpr",
        threshold_value: float = 0.01,
        whiten_latent: bool = True,
        random_state: int = 0,
        device: str = "auto",
    ):
        self.numeric_columns = numeric_columns
        self.categorical_columns = categorical_columns
        self.scaling = scaling
        self.binary_columns = binary_columns
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
        self.clip_inputs = clip_inputs
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
        self.marginal_weight = marginal_weight
        self.typical_error_floor = typical_error_floor
        self.explanation_quantile = explanation_quantile
        self.explanation_floor = explanation_floor
        self.threshold_method = threshold_method
        self.threshold_value = threshold_value
        self.whiten_latent = whiten_latent
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ helpers
    def _member_hidden_sizes(self, member: int) -> list[int]:
        factor = 1.0
        if self.ensemble_widths:
            factor = float(self.ensemble_widths[member % len(self.ensemble_widths)])
        return [max(1, round(size * factor)) for size in self.hidden_sizes]

    def _build_network(self, member: int, n_features: int) -> MixedAutoencoder:
        return MixedAutoencoder(
            n_features,
            Architecture(
                hidden_sizes=tuple(self._member_hidden_sizes(member)),
                latent_dim=self.latent_dim,
                activation=self.activation,
                dropout=self.dropout,
                batch_norm=self.batch_norm,
                variational=self.variant == "variational",
                clip_inputs=self.clip_inputs,
            ),
        )

    def _features(self, X) -> torch.Tensor:
        """Frame/array -> (n, n_features) float32 tensor on the detector's device."""
        frame = as_frame(X)
        check_columns_present(frame, self.feature_names_in_)
        fast = self.fast_preprocessor()
        if fast is not None:
            if len(frame) == 0:
                return torch.zeros((0, self.layout_.n_features), device=self.device_)
            features = fast.transform(frame, clip=INPUT_CLIP)
            return torch.from_numpy(features).to(self.device_)
        normalised = normalise_frame(frame, self.numeric_columns_, self.categorical_columns_)
        if normalised.empty:
            return torch.zeros((0, self.layout_.n_features), device=self.device_)
        features = clipped_features(self.preprocessor_, normalised)
        return torch.from_numpy(features).to(self.device_)

    def fast_preprocessor(self) -> FastPreprocessor | None:
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
    def _member_passes(self, features: torch.Tensor) -> tuple[list, torch.Tensor, torch.Tensor]:
        """(n, n_features) -> raw errors of each member (n, n_columns), codes (n, latent_dim_) and
        the transposed one-hot features (``ColumnErrors.target_levels``, None without any)."""
        errors, codes = [], []
        levels = self._column_errors.target_levels(features)
        for network in self.networks_:
            output, mean, _ = network(features)
            errors.append(self._column_errors(output, features, levels))
            codes.append(mean.float())
        return errors, torch.cat(codes, dim=1), levels

    @torch.inference_mode()
    def _forward(self, features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(n, n_features) -> contributions (n, n_columns) float32, encoded features
        (n, latent_dim_) float32."""
        n_rows = features.shape[0]
        contributions = np.empty((n_rows, len(self.feature_names_in_)), dtype=np.float32)
        codes = np.empty((n_rows, self.latent_dim_), dtype=np.float32)
        chunk_rows = (
            CPU_INFERENCE_CHUNK_ROWS if features.device.type == "cpu" else INFERENCE_CHUNK_ROWS
        )
        for start in range(0, n_rows, chunk_rows):
            chunk = features[start : start + chunk_rows]
            stop = start + chunk.shape[0]
            chunk = pad_rows(chunk)  # a row's bits must not depend on the rows beside it
            errors, code, levels = self._member_passes(chunk)
            rows = stop - start
            contributions[start:stop] = self._scorer(errors, chunk, levels)[:rows].cpu().numpy()
            codes[start:stop] = code[:rows].cpu().numpy()
        return contributions, self._encoded(codes)

    def _encoded(self, codes: np.ndarray) -> np.ndarray:
        """(n, latent_dim_) raw codes -> the encoded features ``transform`` returns."""
        if self.latent_rotation_ is None:
            return codes
        return self.latent_rotation_.apply(codes)

    def _prepare_scoring(self) -> None:
        """Build the scoring tensors used by :meth:`_forward` from the fitted state."""
        self._column_errors = ColumnErrors(self.layout_, self.device_)
        self._scorer = self.column_scorer_.torch_state(self.layout_, self.device_)
        if self.clip_inputs:
            # The fit rows' level shares (what an unseen level is encoded as) are the scorer's.
            shares = np.exp(-self.column_scorer_.level_surprise)
            for network in self.networks_:
                self._set_unseen_fill(network, torch.as_tensor(shares, device=self.device_))

    def _set_unseen_fill(self, network: MixedAutoencoder, shares: torch.Tensor) -> None:
        first, level_block = level_blocks(self.layout_)
        network.set_unseen_fill(first, level_block.to(self.device_), shares)

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, progress: ProgressCallback | None = None) -> AutoencoderDetector:
        """Fit the preprocessor, the network(s), the column scorer, the latent rotation and the
        calibration on ``X`` (labels are ignored).

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
        check_params(self)
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

        validation_rows, train_rows = validation_split(
            len(normalised), self.validation_fraction, self.random_state
        )

        training_part = normalised.iloc[train_rows]
        flags = binary_columns(training_part, numeric) if self.binary_columns else []
        self.preprocessor_ = fit_preprocessor(
            training_part,
            numeric,
            categorical,
            PreprocessingSettings(
                scaling=self.scaling,
                numeric_imputation=self.numeric_imputation,
                add_missing_indicators=self.add_missing_indicators,
                min_frequency=self.min_frequency,
                max_categories=self.max_categories,
                random_state=self.random_state,
                binary=flags,
            ),
        )
        self.numeric_columns_ = numeric
        self.categorical_columns_ = categorical
        self.feature_names_in_ = np.asarray([*numeric, *categorical], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.layout_ = describe_layout(self.preprocessor_, numeric, categorical)
        self.column_weights_ = column_weight_vector(self.column_weights, self.layout_.columns)

        features = self._features(normalised)
        train = features[torch.as_tensor(train_rows, device=self.device_)]
        validation = features[torch.as_tensor(validation_rows, device=self.device_)]
        weights = torch.as_tensor(self.column_weights_, device=self.device_)
        self._column_errors = ColumnErrors(self.layout_, self.device_)
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

        self.networks_, histories = [], []
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
                if self.clip_inputs:
                    network.set_input_bounds(train.amin(dim=0), train.amax(dim=0))
                    self._set_unseen_fill(
                        network, train[:, level_blocks(self.layout_)[0] :].mean(0)
                    )
                generator = torch.Generator(device=self.device_).manual_seed(seed)
                history = train_network(
                    network,
                    ColumnLoss(self._column_errors, weights, feature_column),
                    TrainingRows(train, validation),
                    config,
                    generator,
                    member_progress,
                )
            self.networks_.append(network)
            histories.append(history)
        self.latent_dim_ = self.latent_dim * self.n_members
        self.history_ = dict(histories[0])
        if self.n_members > 1:
            self.history_["members"] = histories

        # One pass over the fit rows gives every statistic: the column scorer's typical errors,
        # the latent rotation and the calibration scores.
        member_errors, codes = [], []
        for chunk in features.split(INFERENCE_CHUNK_ROWS):
            errors, code, _ = self._member_passes(chunk)
            member_errors.append(errors)
            codes.append(code)
        member_errors = [torch.cat(parts) for parts in zip(*member_errors, strict=True)]
        codes = torch.cat(codes).double().cpu().numpy()
        feature_matrix = features.cpu().numpy()
        self.column_scorer_ = ColumnScorer.fit(
            self.layout_,
            [errors.double().cpu().numpy() for errors in member_errors],
            feature_matrix,
            validation_rows,
            ScorerSettings(
                self.error_normalization,
                self.marginal_weight,
                self.column_weights_,
                self.typical_error_floor,
            ),
        )
        self.latent_rotation_ = (
            LatentRotation.fit(codes[train_rows], feature_matrix[train_rows])
            if self.whiten_latent
            else None
        )
        self._prepare_scoring()
        with torch.inference_mode():
            fit_contributions = self._scorer(member_errors, features)
        fit_scores = fit_contributions.sum(dim=1, dtype=torch.float64).cpu().numpy()
        self.column_scorer_ = self.column_scorer_.with_rank_scale(
            fit_contributions.cpu().numpy(), self.explanation_quantile, self.explanation_floor
        )
        validation_scores = fit_scores[validation_rows]
        self.threshold_, reference, calibrated_on = calibration.calibrate(
            self.threshold_method, self.threshold_value, validation_scores, fit_scores
        )
        self.reference_scores_ = calibration.reference_scores(reference)
        named = {name: list(cols) for name, _, cols in self.preprocessor_.transformers_}
        self.metadata_ = {
            "fit_seconds": round(time.perf_counter() - started, 3),
            "fitted_at": pd.Timestamp.now(tz="UTC").isoformat(),
            "n_rows": int(len(normalised)),
            "n_train_rows": int(len(train_rows)),
            "n_validation_rows": int(len(validation_rows)),
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
            "n_features_preprocessed": int(self.layout_.n_features),
            "binary_columns": list(flags),
            "reshaped_columns": named.get("skewed", []),
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

    def set_threshold(self, threshold: float, calibration_record: dict) -> AutoencoderDetector:
        """Replace the fitted threshold, e.g. by one chosen from labels
        (:mod:`models.label_thresholds`); ``calibration_record`` says where it came from and
        becomes ``metadata_["calibration"]``. Percentiles keep their reference. Returns self."""
        check_is_fitted(self)
        self.threshold_ = float(threshold)
        self.metadata_ = {**self.metadata_, "calibration": dict(calibration_record)}
        return self

    def predict(self, X) -> np.ndarray:
        """(n,) int64: 1 where the score exceeds ``threshold_``, else 0."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def transform(self, X) -> np.ndarray:
        """(n, latent_dim_) float32 encoded features: the code's principal axes, whitened (unit
        variance on the training rows), largest variance first, signs fixed by the data (see
        :mod:`models.latent`); the members' raw codes side by side when ``whiten_latent=False``."""
        check_is_fitted(self)
        return self._forward(self._features(X))[1]

    def encoded_features(self, X, scores: bool = True, column_scores: bool = True) -> pd.DataFrame:
        """Features for a downstream model: ``z_0 .. z_{k-1}`` (:meth:`transform`), then with
        ``scores`` the ``anomaly_score``, and with ``column_scores`` one ``score_<column>`` per
        input column (its contribution to the score). A DataFrame (n, k [+ 1] [+ n_columns])
        indexed like ``X``; float32 except ``anomaly_score`` (float64)."""
        check_is_fitted(self)
        contributions, latent = self._forward(self._features(X))
        index = X.index if isinstance(X, pd.DataFrame) else None
        out = pd.DataFrame(latent, columns=[f"z_{i}" for i in range(latent.shape[1])], index=index)
        if scores:
            out["anomaly_score"] = contributions.sum(axis=1, dtype=np.float64)
        if column_scores:
            for j, name in enumerate(self.feature_names_in_):
                out[f"score_{name}"] = contributions[:, j]
        return out

    def percentile(self, scores) -> np.ndarray:
        """(n,) scores -> (n,) float64 in [0, 1] against the validation scores."""
        check_is_fitted(self)
        return calibration.percentile(self.reference_scores_, scores)

    def explain(self, X, top_k: int | None = 3, details: bool = False) -> pd.DataFrame:
        """Per-column contributions to each row's score, or the details of each row's top columns.

        By default a DataFrame (n, n_columns) indexed like ``X`` with one column per original column
        (``feature_names_in_``; a categorical column's one-hot levels are one column). Rows sum to
        :meth:`decision_function`. With ``top_k``, each row keeps its ``top_k`` first columns as
        ``top_features`` ranks them (``explanation_quantile``); ``top_k=None`` keeps all.

        With ``details=True``, a long DataFrame with one row per (input row, rank <= ``top_k``):
        ``row`` (the index of ``X``), ``rank`` (1 = first), ``column``, ``contribution``,
        ``direction`` (``"above"`` / ``"below"``: the observed numeric or flag value is above or
        below what the model expected; ``"unexpected level"``: a categorical level other than the
        most likely one; ``"as expected"``), ``observed`` and ``expected`` (the model's
        reconstruction in the column's own units, or its most likely level).
        """
        check_is_fitted(self)
        features = self._features(X)
        contributions, _ = self._forward(features)
        if details:
            self._check_top_k(top_k)
            index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(contributions))
            return explanation_details(self, as_frame(X), features, contributions, top_k, index)
        if top_k is not None:
            self._check_top_k(top_k)
            keep = np.zeros_like(contributions, dtype=bool)
            top = self.column_scorer_.first_columns(contributions, top_k)
            np.put_along_axis(keep, top, True, axis=1)
            contributions = np.where(keep, contributions, np.float32(0))
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(contributions, columns=list(self.feature_names_in_), index=index)

    def score(self, X, top_k: int = 3) -> ScoreResult:
        """Score ``X`` for the scoring job in one forward pass; see :class:`ScoreResult`."""
        check_is_fitted(self)
        return self.score_preprocessed(self._features(X), top_k)

    def score_preprocessed(
        self, features: np.ndarray | torch.Tensor, top_k: int = 3
    ) -> ScoreResult:
        """:meth:`score` of rows already preprocessed: ``features`` (n, n_features) float32 as
        :meth:`fast_preprocessor`'s ``transform(frame, clip=INPUT_CLIP)`` gives them."""
        check_is_fitted(self)
        self._check_top_k(top_k)
        if isinstance(features, np.ndarray):
            features = torch.from_numpy(features).to(self.device_)
        contributions, latent = self._forward(features)
        scores = contributions.sum(axis=1, dtype=np.float64)
        top = self.column_scorer_.first_columns(contributions, top_k)
        names = [str(c) for c in self.feature_names_in_]
        return ScoreResult(
            scores=scores,
            percentiles=calibration.percentile(self.reference_scores_, scores),
            is_anomaly=scores > self.threshold_,
            latent=latent,
            top_features=top_feature_strings(top, names, contributions),
            contributions=contributions,
        )

    @staticmethod
    def _check_top_k(top_k) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")

    def reconstruct(self, X) -> RowReconstruction:
        """(n, n_columns) rows -> what the model reconstructs them as, ensemble-averaged: numeric
        values in the columns' own units and level probabilities per categorical block
        (:func:`models.reconstruction.reconstruction_of_rows`; evaluation measures its errors on
        it)."""
        check_is_fitted(self)
        return reconstruction_of_rows(self, X)

    # ------------------------------------------------------------------ persistence
    def save(self, dir_path: str | Path) -> Path:
        """Write a self-contained bundle to ``dir_path`` (created); see :mod:`models.persistence`."""
        check_is_fitted(self)
        return save_detector(self, dir_path)

    @classmethod
    def load(cls, dir_path: str | Path, device: str = "auto") -> AutoencoderDetector:
        """Load a bundle written by :meth:`save`, verifying checksums and skops types."""
        return cls.from_saved_state(read_bundle(dir_path), device=device)

    @classmethod
    def from_saved_state(cls, state: SavedState, device: str = "auto") -> AutoencoderDetector:
        """The fitted detector a bundle's contents (:func:`models.persistence.read_bundle`) hold,
        on ``device``."""
        detector = cls(**{**state.params, "device": device})
        detector.device_ = resolve_device(device)
        for name, value in state.fitted_attributes().items():
            setattr(detector, name, value)
        detector.networks_ = []
        for member in range(detector.n_members):
            network = detector._build_network(member, detector.layout_.n_features)
            network.load_state_dict(state.member_weights(member), strict=True)
            detector.networks_.append(network.to(detector.device_).eval())
        detector._prepare_scoring()
        return detector
