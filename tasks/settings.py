"""The pipeline's settings, one frozen section per concern.

`flows.config.PipelineConfig` composes these sections from one config file (TOML or YAML). A task
or plain function takes the sections it needs, by keyword (``columns=cfg.columns``,
``scoring=cfg.scoring``): never the whole config, never a section unpacked into scalars. Adding a
setting is one field in one section and one reader of it (docs/architecture.md).

Sections live in ``tasks`` (not ``flows``) because tasks read them and dependencies point
flows -> tasks -> models. Every section forbids unknown keys, so a typo is an error naming the key.
"""

from __future__ import annotations

import codecs
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.output_names import OUTPUT_COLUMNS, PARTITION_COLUMN, reserved_output_name


class Section(BaseModel):
    """A settings section: unknown keys are errors, and a section never changes once built."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


def folder_name(value: str, key: str) -> str:
    """``value`` when it can name one folder of the storage layout (the dataset, a tuning study);
    raises ValueError naming ``key`` otherwise."""
    if not value or any(ch in value for ch in "/\\ ") or value.startswith("."):
        raise ValueError(
            f"{key} must be a plain folder name (no '/', spaces or leading '.'), got {value!r}"
        )
    return value


class StorageSettings(Section):
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


class ColumnsSettings(Section):
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
    def _roles_do_not_overlap(self) -> ColumnsSettings:
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
        with_commas = [c for c in features if "," in c]
        if with_commas:
            raise ValueError(
                f"feature column(s) {with_commas} contain ',': top_features names the columns "
                "that explain a row joined by ',', so a reader could not split it. Rename the "
                "column in the batches (or in the CSV export before aeflow ingest) and in this "
                "config"
            )
        for role in ("id", "timestamp"):
            name = getattr(self, role)
            if name is not None and reserved_output_name(name):
                raise ValueError(
                    f"columns.{role} {name!r} is also the name of a column aeflow writes to every "
                    f"scored row ({', '.join(OUTPUT_COLUMNS)}, z_0.., and the '{PARTITION_COLUMN}' "
                    "partition of scored/): the scored files would hold two columns of that name, "
                    "which pandas and pyarrow cannot read. Rename the column in the batches (or "
                    "in the CSV export before aeflow ingest) and in this config"
                )
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


class ValidationSettings(Section):
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


class DatePartsSettings(Section):
    """A timestamp built from month and day columns when the rows are in date order but carry no
    year (UCI bank-full): the year starts at `first_year` and goes up whenever the month goes back.
    """

    month: str = Field(description="column holding the month: 1-12 or jan..dec")
    day: str = Field(description="column holding the day of the month")
    first_year: int = Field(description="calendar year of the first row")


class IngestSettings(Section):
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
    date_from_parts: DatePartsSettings | None = Field(
        None,
        description="build the timestamp column from month/day columns (see DatePartsSettings)",
    )
    decimal: str = Field(
        ".", description="decimal mark of numeric columns, one character (',' for 12,5)"
    )
    encoding: str = Field(
        "utf-8", description="the file's text encoding, e.g. 'cp1252' or 'latin-1' (utf-8)"
    )
    thousands: str | None = Field(
        None,
        description="thousands separator of numeric columns, removed before reading them "
        "('.' for 12.345,67; ',' for \"12,345.67\")",
    )

    @model_validator(mode="after")
    def _csv_layout_is_complete(self) -> IngestSettings:
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
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(
                f"ingest.encoding: unknown encoding {self.encoding!r}; use a Python codec name "
                "such as 'utf-8', 'cp1252' or 'latin-1'"
            ) from None
        if len(self.decimal) != 1 or self.decimal == self.thousands:
            raise ValueError(
                "ingest.decimal is one character, and ingest.thousands another (or none), got "
                f"{self.decimal!r} and {self.thousands!r}"
            )
        return self


LABEL_METHODS = ("max_f1", "target_precision", "target_recall")


class ThresholdSettings(Section):
    """How the anomaly threshold is chosen: on held-out validation scores without labels (fpr,
    quantile, mean_std, contamination, fixed), or from labels (max_f1, target_precision,
    target_recall; see docs/feedback.md), with a label-free fallback when the labels are too few."""

    method: Literal[
        "fpr",
        "quantile",
        "mean_std",
        "contamination",
        "fixed",
        "max_f1",
        "target_precision",
        "target_recall",
    ] = "fpr"
    value: float = Field(
        0.01,
        description=(
            "fpr/contamination: share in (0, 0.5]; quantile: in (0.5, 1); mean_std: k >= 0; "
            "fixed: the score threshold; target_precision/target_recall: the target share in "
            "(0, 1]; max_f1: not used"
        ),
    )
    labels: Literal["auto", "validation", "feedback"] = Field(
        "auto",
        description="label methods: which labels choose the threshold: 'validation' (the "
        "labelled rows the model held out for validation), 'feedback' (analysts' verdicts, "
        "`aeflow feedback add`), or 'auto' (validation when the training window is labelled, "
        "else feedback)",
    )
    min_anomalies: int = Field(
        10, ge=1, description="label methods: labelled anomalies needed, else the fallback is used"
    )
    min_normals: int = Field(
        10, ge=1, description="label methods: labelled normal rows needed, else the fallback"
    )
    fallback_method: Literal["fpr", "quantile", "mean_std", "contamination", "fixed"] = Field(
        "fpr", description="label methods: the label-free method used when labels are too few"
    )
    fallback_value: float = Field(0.01, description="the fallback method's value (see value)")

    @model_validator(mode="after")
    def _value_fits_method(self) -> ThresholdSettings:
        _check_label_free(self.fallback_method, self.fallback_value, "threshold.fallback_value")
        v, m = self.value, self.method
        if m in LABEL_METHODS:
            if m != "max_f1" and "value" not in self.model_fields_set:
                raise ValueError(
                    f"threshold.method {m!r} needs its target in threshold.value, e.g. value = 0.9"
                )
            if m != "max_f1" and not 0 < v <= 1:
                raise ValueError(
                    f"threshold.value for method {m!r} is the target share, in (0, 1], got {v}; "
                    "e.g. value = 0.9"
                )
            return self
        _check_label_free(m, v, "threshold.value")
        return self

    @property
    def uses_labels(self) -> bool:
        return self.method in LABEL_METHODS

    @property
    def label_free(self) -> tuple[str, float]:
        """(method, value) the detector calibrates on its validation scores: the configured
        ones, or the fallback of a label method."""
        if self.uses_labels:
            return self.fallback_method, self.fallback_value
        return self.method, self.value


def _check_label_free(method: str, value: float, key: str) -> None:
    if method in ("fpr", "contamination") and not 0 < value <= 0.5:
        raise ValueError(f"{key} for method {method!r} must be in (0, 0.5], got {value}")
    if method == "quantile" and not 0.5 < value < 1:
        raise ValueError(f"{key} for method 'quantile' must be in (0.5, 1), got {value}")
    if method == "mean_std" and value < 0:
        raise ValueError(f"{key} for method 'mean_std' must be >= 0, got {value}")


class FeedbackSettings(Section):
    """What analysts' verdicts on flagged rows change (`aeflow feedback`, docs/feedback.md)."""

    exclude_confirmed: bool = Field(
        True,
        description="retraining leaves out rows analysts confirmed as anomalies (flagged or not)",
    )
    keep_false_positives: bool = Field(
        True,
        description="retraining keeps rows analysts marked false positive, even when "
        "retrain.exclude_flagged leaves the other flagged rows out",
    )
    precision_floor: float | None = Field(
        None,
        gt=0,
        le=1,
        description="the 'feedback' retraining trigger fires when the champion's flag precision "
        "from verdicts (confirmed / reviewed flags) over the last precision_days falls below "
        "this (null: no feedback trigger)",
    )
    precision_days: int = Field(
        7, ge=1, description="days of batches (by batch date) the flag precision is measured over"
    )
    min_verdicts: int = Field(
        20,
        ge=1,
        description="reviewed flags needed before the precision trigger may fire (fewer: noise)",
    )


class TrainingSettings(Section):
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


class ScoringSettings(Section):
    """How batches are scored."""

    workers: int = Field(4, ge=1, description="batches scored concurrently (thread task runner)")
    chunk_rows: int = Field(
        65_536, ge=1024, description="rows per record batch streamed through the model"
    )
    top_k: int = Field(3, ge=1, description="columns named in top_features per row")


class EvaluationSettings(Section):
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


class DriftSettings(Section):
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
    def _warn_below_retrain(self) -> DriftSettings:
        if self.psi_warn >= self.psi_retrain:
            raise ValueError(
                f"drift.psi_warn must be below drift.psi_retrain, got {self.psi_warn} >= "
                f"{self.psi_retrain}; e.g. psi_warn = 0.1, psi_retrain = 0.25"
            )
        return self


class RetrainingSettings(Section):
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


class ScheduleSettings(Section):
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
