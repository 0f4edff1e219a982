"""The pipeline config: one typed file per dataset (TOML or YAML), composed of the frozen settings
sections of :mod:`tasks.settings`.

Every section forbids unknown keys, so a typo is an error that names the key, the file and the keys
that are allowed instead of a setting that is silently ignored. Paths in the file (the storage root,
the suite) are resolved against the file's folder when it is read, so every section a task receives
holds usable paths.
"""

from __future__ import annotations

import tomllib
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from tasks.settings import (
    ColumnsSettings,
    DriftSettings,
    EvaluationSettings,
    FeedbackSettings,
    IngestSettings,
    RetrainingSettings,
    ScheduleSettings,
    ScoringSettings,
    Section,
    StorageSettings,
    ThresholdSettings,
    TrainingSettings,
    ValidationSettings,
    folder_name,
)
from tasks.tuning.settings import TuningSettings

if TYPE_CHECKING:
    from tasks.io import Storage


class ConfigError(ValueError):
    """A pipeline config file that cannot be used; the message says what to change."""


class PipelineConfig(Section):
    """One dataset's pipeline: storage, columns, contract, model and thresholds."""

    dataset: str = Field(description="dataset name: folder name under incoming/, scored/, models/")
    storage: StorageSettings = Field(default_factory=StorageSettings)
    columns: ColumnsSettings
    validation: ValidationSettings
    model: dict[str, Any] = Field(
        default_factory=dict,
        description="AutoencoderDetector parameters (see `aeflow train --help`)",
    )
    threshold: ThresholdSettings = Field(default_factory=ThresholdSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    retrain: RetrainingSettings = Field(default_factory=RetrainingSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    tuning: TuningSettings = Field(default_factory=TuningSettings)
    source: str | None = Field(None, description="the file this config was read from (set on load)")

    @model_validator(mode="before")
    @classmethod
    def _paths_relative_to_the_file(cls, data: Any) -> Any:
        """The storage root and the suite, relative to the config file's folder unless absolute
        or a URL (nothing to resolve against without ``source``)."""
        if not isinstance(data, dict) or not data.get("source"):
            return data
        folder = Path(data["source"]).parent
        data = dict(data)
        for section, key, default in (("storage", "root", "data"), ("validation", "suite", None)):
            given = data.get(section, {} if default is not None else None)
            if isinstance(given, BaseModel):
                given = given.model_dump()
            if not isinstance(given, dict):
                continue
            path = given.get(key, default)
            if isinstance(path, str):
                data[section] = {**given, key: _relative_to(folder, path)}
        return data

    @field_validator("dataset")
    @classmethod
    def _dataset_is_a_folder_name(cls, value: str) -> str:
        return folder_name(value, "dataset")

    @field_validator("model")
    @classmethod
    def _model_params_are_known(cls, value: dict[str, Any]) -> dict[str, Any]:
        from models.param_names import detector_parameter_names

        allowed = set(detector_parameter_names())
        # The columns and the threshold have their own config sections.
        reserved = {"numeric_columns", "categorical_columns", "threshold_method", "threshold_value"}
        unknown = sorted(set(value) - (allowed - reserved))
        if unknown:
            raise ValueError(
                f"unknown model parameter(s) {unknown}; allowed: {sorted(allowed - reserved)}"
            )
        return value

    def detector_params(self) -> dict[str, Any]:
        """Keyword arguments for `models.AutoencoderDetector`, columns and threshold included
        (a label threshold method passes its label-free fallback: the labels come after the fit,
        see tasks.label_threshold)."""
        method, value = self.threshold.label_free
        return {
            **self.model,
            "numeric_columns": list(self.columns.numeric),
            "categorical_columns": list(self.columns.categorical),
            "threshold_method": method,
            "threshold_value": value,
            "random_state": self.model.get("random_state", self.training.seed),
        }

    def resolve(self, path: str) -> str:
        """A path from the config, relative to the config file's folder unless absolute or a URL."""
        if self.source is None:
            return path
        return _relative_to(Path(self.source).parent, path)

    @property
    def storage_root(self) -> str:
        """The storage root (resolved when the file was read)."""
        return self.storage.root

    @property
    def suite_path(self) -> str:
        """The suite file (resolved when the file was read)."""
        return self.validation.suite


def storage_of(cfg: PipelineConfig) -> Storage:
    """The run's storage (root, dataset, fsspec options, retries, layout), built once from the
    config."""
    from tasks.io import Storage  # Prefect and pyarrow: only for commands that touch storage

    return Storage.from_settings(cfg.storage, cfg.dataset)


def _relative_to(folder: Path, path: str) -> str:
    if "://" in path or Path(path).is_absolute():
        return path
    return str((folder / path).resolve())


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
