"""The pipeline config: one typed file per dataset (TOML or YAML).

Every section forbids unknown keys, so a typo is an error that names the key, the file and the keys
that are allowed instead of a setting that is silently ignored.
"""

from __future__ import annotations

import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.tuning.settings import TuningSettings


class ConfigError(ValueError):
    """A pipeline config file that cannot be used; the message says what to change."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class StorageConfig(_Section):
    """Where batches, models and outputs live: a local folder or an fsspec URL (s3://, gs://, ...)."""

    root: str = Field(
        "data", description="storage root: a folder (relative to the config's folder) or URL"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec storage options, e.g. endpoint_url for S3"
    )
    retries: int = Field(
        4,
        ge=0,
        le=20,
        description="retries of a batch's task after a transient storage error (connection "
        "refused or reset, timeout, 5xx, throttling) before the run fails naming the storage",
    )
    retry_delay_s: float = Field(
        2.0,
        ge=0,
        le=600,
        description="seconds before the first retry; each further retry waits twice as long",
    )


class ColumnsConfig(_Section):
    """The roles of the dataset's columns."""

    id: str = Field(description="unique row id, copied to every scored row")
    timestamp: str | None = Field(None, description="event time of each row")
    label: str | None = Field(
        None,
        description="optional 0/1 anomaly label: used to evaluate when a batch has it, never "
        "required (production batches usually lack it)",
    )
    batch_date: Literal["auto", "timestamp", "id", "arrival"] = Field(
        "auto",
        description="where a batch's date (its date= partition, nightly/backfill/training "
        "windows) comes from: 'timestamp' (earliest value of the timestamp column), 'id' (a date "
        "in the batch id, e.g. 2026-01-05, 20260105, 2026-01, 2026-W02), 'arrival' (the file's "
        "modification date, recorded once), or 'auto' (timestamp, else id, else arrival)",
    )
    numeric: list[str] = Field(default_factory=list, description="numeric feature columns")
    categorical: list[str] = Field(default_factory=list, description="categorical feature columns")
    missing_values: list[str] = Field(
        default_factory=list, description="tokens that mean 'missing' in the raw data, e.g. '?'"
    )
    label_positive: list[str] = Field(
        default_factory=list,
        description="for a text label: the values that mean anomaly (others mean normal)",
    )
    label_negative: list[str] = Field(
        default_factory=list,
        description="for a text label: the values that mean normal (others mean anomaly)",
    )

    @model_validator(mode="after")
    def _roles_do_not_overlap(self) -> ColumnsConfig:
        if not self.numeric and not self.categorical:
            raise ValueError("list at least one feature column under numeric or categorical")
        features = self.numeric + self.categorical
        duplicated = sorted({c for c in features if features.count(c) > 1})
        if duplicated:
            raise ValueError(f"columns listed twice among numeric/categorical: {duplicated}")
        for role in ("id", "timestamp", "label"):
            name = getattr(self, role)
            if name is not None and name in features:
                raise ValueError(f"the {role} column {name!r} must not also be a feature column")
        if self.label_positive and self.label_negative:
            raise ValueError("give label_positive or label_negative, not both")
        if self.batch_date == "timestamp" and self.timestamp is None:
            raise ValueError(
                "batch_date = 'timestamp' needs columns.timestamp; name the timestamp column or "
                "use batch_date = 'auto' (a date in the batch id, else the arrival)"
            )
        return self

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def passthrough(self) -> list[str]:
        """Columns copied unchanged from the input to the scored output."""
        return [c for c in (self.id, self.timestamp) if c is not None]


class ValidationConfig(_Section):
    """The data contract and what a failure means."""

    suite: str = Field(
        description="Great Expectations suite file (relative to the config's folder)"
    )
    on_warning: Literal["score", "quarantine"] = Field(
        "score", description="what a batch with only warning-level failures gets"
    )
    severity: dict[str, Literal["critical", "warning"]] = Field(
        default_factory=dict,
        description=(
            "severity overrides for the suite's expectations, keyed by expectation type "
            "('expect_column_values_to_be_in_set') or type:column "
            "('expect_column_values_to_be_in_set:service'); the more specific key wins"
        ),
    )
    data_docs: bool = Field(
        False, description="also render Great Expectations Data Docs HTML under <root>/reports/"
    )

    @field_validator("severity")
    @classmethod
    def _severity_keys_name_expectations(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(key for key in value if not key.startswith("expect_"))
        if bad:
            raise ValueError(
                f"severity keys are expectation types, optionally with ':column', got {bad}; "
                "e.g. 'expect_column_values_to_be_in_set:service'"
            )
        return value


class DatePartsConfig(_Section):
    """A timestamp built from month and day columns when the rows are in date order but carry no
    year (UCI bank-full): the year starts at `first_year` and goes up whenever the month goes back.
    """

    month: str = Field(description="column holding the month: 1-12 or jan..dec")
    day: str = Field(description="column holding the day of the month")
    first_year: int = Field(description="calendar year of the first row")


class IngestConfig(_Section):
    """How `aeflow ingest` reads a CSV export (the defaults read a plain comma-separated file
    with a header row)."""

    header: bool = Field(True, description="the first (non-comment) line names the columns")
    column_names: list[str] = Field(
        default_factory=list, description="the CSV's column names, in order, when header is false"
    )
    separator: str = Field(",", description="field separator, one character")
    comment_prefix: str | None = Field(
        None, description="lines starting with this are skipped (e.g. '|' in adult.test)"
    )
    strip_whitespace: bool = Field(
        False, description="trim spaces around values (for ', '-separated files)"
    )
    drop_columns: list[str] = Field(
        default_factory=list, description="CSV columns not carried into the batches"
    )
    replace: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="per column, exact values to rewrite, e.g. {income = {'>50K.' = '>50K'}}",
    )
    date_from_parts: DatePartsConfig | None = Field(
        None, description="build the timestamp column from month/day columns (see DatePartsConfig)"
    )

    @model_validator(mode="after")
    def _csv_layout_is_complete(self) -> IngestConfig:
        if len(self.separator) != 1:
            raise ValueError(f"ingest.separator must be one character, got {self.separator!r}")
        if not self.header and not self.column_names:
            raise ValueError(
                "ingest.header is false: list the CSV's columns in ingest.column_names"
            )
        if self.header and self.column_names:
            raise ValueError(
                "give ingest.column_names only for a CSV without a header (set header = false)"
            )
        return self


class ThresholdConfig(_Section):
    """How the anomaly threshold is calibrated on held-out validation scores."""

    method: Literal["fpr", "quantile", "mean_std", "contamination", "fixed"] = "fpr"
    value: float = Field(
        0.01,
        description=(
            "fpr/contamination: share in (0, 0.5]; quantile: in (0.5, 1); mean_std: k >= 0; "
            "fixed: the score threshold"
        ),
    )

    @model_validator(mode="after")
    def _value_fits_method(self) -> ThresholdConfig:
        v, m = self.value, self.method
        if m in ("fpr", "contamination") and not 0 < v <= 0.5:
            raise ValueError(f"threshold.value for method {m!r} must be in (0, 0.5], got {v}")
        if m == "quantile" and not 0.5 < v < 1:
            raise ValueError(f"threshold.value for method 'quantile' must be in (0.5, 1), got {v}")
        if m == "mean_std" and v < 0:
            raise ValueError(f"threshold.value for method 'mean_std' must be >= 0, got {v}")
        return self


class TrainingConfig(_Section):
    """Which data trains the model."""

    window_days: int = Field(30, ge=1, description="train on the last N days of accepted batches")
    batches: list[str] | None = Field(
        None, description="explicit batch ids to train on (overrides window_days)"
    )
    exclude_labelled_anomalies: bool = Field(
        False, description="drop rows whose label marks an anomaly before fitting"
    )
    max_rows: int = Field(500_000, ge=100, description="cap on training rows (seeded sample)")
    seed: int = 0


class ScoringConfig(_Section):
    """How batches are scored."""

    workers: int = Field(4, ge=1, description="batches scored concurrently (thread task runner)")
    chunk_rows: int = Field(
        65_536, ge=1024, description="rows per record batch streamed through the model"
    )
    top_k: int = Field(3, ge=1, description="columns named in top_features per row")


class EvaluationConfig(_Section):
    """The holdout evaluation after training, the report and the promotion gate
    (see docs/evaluation.md)."""

    holdout_fraction: float = Field(
        0.2,
        gt=0,
        lt=0.9,
        description="share of the training window held out for evaluation: the latest rows by "
        "columns.timestamp, or a seeded random share without one",
    )
    holdout_max_rows: int = Field(
        100_000, ge=100, description="cap on holdout rows (seeded sample) to bound evaluation time"
    )
    baselines: bool = Field(
        True, description="fit Isolation Forest and PCA-reconstruction baselines beside the model"
    )
    baseline_max_rows: int = Field(
        20_000, ge=100, description="training rows (seeded sample) the baselines are fitted on"
    )
    report: bool = Field(
        True, description="write the HTML report and metrics.json under <root>/reports/"
    )
    reconstruction_margin: float = Field(
        0.05,
        ge=0,
        description="gate: the challenger's holdout reconstruction MSE may exceed the champion's "
        "by at most this share (0.05 = 5%)",
    )
    auroc_margin: float = Field(
        0.01,
        ge=0,
        le=1,
        description="gate (labelled data): the challenger's holdout AUROC may be at most this much "
        "below the champion's",
    )
    leakage_auroc: float = Field(
        0.98,
        gt=0.5,
        le=1,
        description="a feature whose AUROC alone against the label reaches this is reported as "
        "possible leakage",
    )


class DriftConfig(_Section):
    """Drift of each night's batches against the champion's training data: per-column PSI, the
    score distribution and the flag rate (see docs/operations.md)."""

    numeric_bins: int = Field(
        10, ge=2, le=100, description="quantile bins per numeric column, edges from the reference"
    )
    max_levels: int = Field(
        50,
        ge=1,
        description="most frequent reference levels kept per categorical column; the rest share "
        "one 'other' bin",
    )
    epsilon: float = Field(
        1e-4, gt=0, le=0.01, description="floor of a bin's share so PSI stays finite"
    )
    psi_warn: float = Field(
        0.1,
        gt=0,
        description="PSI at or above which a column (or the score) is reported as shifting",
    )
    psi_retrain: float = Field(
        0.25, gt=0, description="PSI at or above which a column (or the score) has drifted"
    )
    min_drifted_columns: int = Field(
        1, ge=1, description="drifted feature columns needed for a batch to count as drifted"
    )
    flag_rate_ratio: float = Field(
        3.0,
        gt=1,
        description="the flag rate has drifted at this many times the reference's, or this many "
        "times smaller",
    )
    reference_rows: int = Field(
        100_000,
        ge=1000,
        description="rows sampled (seeded) from the champion's training batches for the reference",
    )

    @model_validator(mode="after")
    def _warn_below_retrain(self) -> DriftConfig:
        if self.psi_warn >= self.psi_retrain:
            raise ValueError(
                f"drift.psi_warn must be below drift.psi_retrain, got {self.psi_warn} >= "
                f"{self.psi_retrain}; e.g. psi_warn = 0.1, psi_retrain = 0.25"
            )
        return self


class RetrainConfig(_Section):
    """When the nightly flow retrains, and on which rows."""

    on_drift: bool = Field(True, description="retrain when a night's batch has drifted")
    max_model_age_days: int | None = Field(
        30,
        ge=1,
        description="retrain when the champion has gone unchallenged this many days (null: never)",
    )
    window_days: int | None = Field(
        None, ge=1, description="days of accepted batches to retrain on (training.window_days)"
    )
    exclude_flagged: bool = Field(
        True, description="leave out rows the champion flagged as anomalies in their scored output"
    )


class ScheduleConfig(_Section):
    """Cron schedules of the deployments `aeflow serve` creates."""

    nightly: str = Field(
        "0 2 * * *", description="cron of the nightly flow (score, drift, retrain when triggered)"
    )
    retrain: str = Field("0 3 * * 0", description="cron of the scheduled (weekly) retraining")
    timezone: str = Field("UTC", description="IANA time zone the cron expressions are read in")

    @field_validator("nightly", "retrain")
    @classmethod
    def _is_a_cron(cls, value: str) -> str:
        from prefect._vendor.croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(
                f"must be a 5-field cron expression (minute hour day month weekday), got {value!r}; "
                "e.g. '0 2 * * *' for 02:00 every day"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _is_a_time_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"must be an IANA time zone such as 'UTC' or 'Europe/Berlin', got {value!r}"
            ) from None
        return value


class PipelineConfig(_Section):
    """One dataset's pipeline: storage, columns, contract, model and thresholds."""

    dataset: str = Field(description="dataset name: folder name under incoming/, scored/, models/")
    storage: StorageConfig = Field(default_factory=StorageConfig)
    columns: ColumnsConfig
    validation: ValidationConfig
    model: dict[str, Any] = Field(
        default_factory=dict,
        description="AutoencoderDetector parameters (see `aeflow train --help`)",
    )
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    tuning: TuningSettings = Field(default_factory=TuningSettings)
    source: str | None = Field(None, description="the file this config was read from (set on load)")

    @field_validator("dataset")
    @classmethod
    def _dataset_is_a_folder_name(cls, value: str) -> str:
        if not value or any(ch in value for ch in "/\\ ") or value.startswith("."):
            raise ValueError(
                f"dataset must be a plain folder name (no '/', spaces or leading '.'), got {value!r}"
            )
        return value

    @field_validator("model")
    @classmethod
    def _model_params_are_known(cls, value: dict[str, Any]) -> dict[str, Any]:
        from models import AutoencoderDetector

        allowed = set(AutoencoderDetector().get_params())
        # The columns and the threshold have their own config sections.
        reserved = {"numeric_columns", "categorical_columns", "threshold_method", "threshold_value"}
        unknown = sorted(set(value) - (allowed - reserved))
        if unknown:
            raise ValueError(
                f"unknown model parameter(s) {unknown}; allowed: {sorted(allowed - reserved)}"
            )
        return value

    def detector_params(self) -> dict[str, Any]:
        """Keyword arguments for `models.AutoencoderDetector`, columns and threshold included."""
        return {
            **self.model,
            "numeric_columns": list(self.columns.numeric),
            "categorical_columns": list(self.columns.categorical),
            "threshold_method": self.threshold.method,
            "threshold_value": self.threshold.value,
            "random_state": self.model.get("random_state", self.training.seed),
        }

    def resolve(self, path: str) -> str:
        """A path from the config, relative to the config file's folder unless absolute or a URL."""
        if "://" in path or Path(path).is_absolute() or self.source is None:
            return path
        return str((Path(self.source).parent / path).resolve())

    @property
    def storage_root(self) -> str:
        return self.resolve(self.storage.root)

    @property
    def suite_path(self) -> str:
        return self.resolve(self.validation.suite)

    def validation_arguments(self) -> dict[str, Any]:
        """Keyword arguments for `tasks.validate.validate_batch` (and its task) after the batch:
        the suite, the column roles, the warning policy, storage options, severities and the
        optional columns (the label: used when present, never required)."""
        cols = self.columns
        return {
            "suite_path": self.suite_path,
            "id_column": cols.id,
            "timestamp_column": cols.timestamp,
            "numeric": cols.numeric,
            "categorical": cols.categorical,
            "missing_tokens": cols.missing_values,
            "on_warning": self.validation.on_warning,
            "options": self.storage.options,
            "severity_overrides": self.validation.severity,
            "optional_columns": [cols.label] if cols.label else [],
        }


def _read_mapping(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ConfigError(
                f"{path}: config files end in .toml, .yaml or .yml, got {path.suffix!r}"
            )
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def _describe(error: dict[str, Any], path: Path) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = error["loc"][:-1]
        section: type[BaseModel] = PipelineConfig
        for part in parent:
            field = section.model_fields.get(str(part))
            # `Section | None` fields: look through the union for the section class.
            candidates = typing.get_args(field.annotation) or (field.annotation,) if field else ()
            for candidate in candidates:
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    section = candidate
        allowed = sorted(name for name in section.model_fields if name != "source")
        return f"{path}: unknown key {key!r}; allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{path}: missing required key {key!r}"
    return f"{path}: {key}: {error['msg']} (got {error.get('input')!r})"


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline config; raises ConfigError naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {path} does not exist; pass --config with a .toml or .yaml file"
        )
    data = _read_mapping(path)
    if "source" in data:
        raise ConfigError(f"{path}: 'source' is set by aeflow, remove it from the file")
    try:
        return PipelineConfig(**data, source=str(path.resolve()))
    except ValidationError as exc:
        problems = [_describe(err, path) for err in exc.errors()]
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems)) from None


def with_model_params(cfg: PipelineConfig, path: str | Path) -> PipelineConfig:
    """``cfg`` with the ``[model]`` table of a parameters file (such as the ``best-params.toml``
    `aeflow tune` writes) laid over its model section; raises ConfigError naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameters file {path} does not exist; pass --params with a .toml file")
    data = _read_mapping(path)
    extra = sorted(set(data) - {"model"})
    if extra or not isinstance(data.get("model"), dict):
        raise ConfigError(
            f"{path}: a parameters file holds one [model] table of detector parameters"
            + (f"; unknown section(s) {extra}" if extra else "")
        )
    merged = {**cfg.model_dump(exclude={"source"}), "model": {**cfg.model, **data["model"]}}
    try:
        return PipelineConfig(**merged, source=cfg.source)
    except ValidationError as exc:
        problems = [_describe(err, path) for err in exc.errors()]
        raise ConfigError("invalid parameters:\n  " + "\n  ".join(problems)) from None
