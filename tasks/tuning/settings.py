"""The ``[tuning]`` section of a pipeline config: what `aeflow tune` searches and how."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from models.search_space import SearchSpaceError, build_space
from tasks.settings import Section, folder_name

OBJECTIVES = ("auto", "auprc", "reconstruction", "downstream")


class TuningSettings(Section):
    """Hyperparameter search settings (see docs/tuning.md)."""

    study: str = Field(
        "default",
        description="study name: its folder is <root>/reports/<dataset>/tuning/<study>/; running "
        "`aeflow tune` again with the same name resumes it",
    )
    trials: int = Field(20, ge=1, le=10_000, description="trials the study should hold in all")
    timeout_s: float | None = Field(
        None, gt=0, description="no new round of trials starts after this many seconds"
    )
    objective: Literal["auto", "auprc", "reconstruction", "downstream"] = Field(
        "auto",
        description="'auprc' (labels in the training window), 'reconstruction' (no labels), "
        "'downstream' (tuning.downstream_label), or 'auto': downstream when a downstream label "
        "is named, else auprc when the window has both label values, else reconstruction",
    )
    seed: int | None = Field(None, description="sampler and trial seed (training.seed when unset)")
    trials_per_round: int = Field(
        4,
        ge=1,
        le=64,
        description="trials asked together and run in parallel; the results depend on it, not on "
        "the number of workers",
    )
    workers: int = Field(2, ge=1, le=64, description="trials run at once (thread task runner)")
    validation_fraction: float = Field(
        0.25,
        gt=0,
        lt=0.9,
        description="share of the training part (never the evaluation holdout) that scores trials",
    )
    startup_trials: int = Field(
        10, ge=0, description="trials drawn at random before TPE models the results"
    )
    pruning: bool = Field(True, description="stop trials whose validation curve trails the median")
    pruning_warmup_epochs: int = Field(
        5, ge=0, description="epochs every trial runs before it can be pruned"
    )
    pruning_startup_trials: int = Field(
        4, ge=1, description="comparable finished trials needed before pruning starts"
    )
    max_rows: int = Field(
        50_000, ge=100, description="cap on the training-part rows the search uses (seeded sample)"
    )
    downstream_label: str | None = Field(
        None,
        description="a 0/1 (or text) column the encoded features should predict: selects the "
        "'downstream' objective (cross-validated logistic regression AUROC on the latent features)",
    )
    downstream_positive: list[str] = Field(
        default_factory=list, description="for a text downstream label: the values meaning 1"
    )
    space: dict[str, Any] = Field(
        default_factory=dict,
        description="search-space overrides by parameter: {low, high, log}, {choices = [...]}, "
        "or one fixed value (see models/search_space.py for the defaults)",
    )

    def search_seed(self, training_seed: int) -> int:
        """The search's seed (its row samples and splits, the sampler, every trial's detector):
        ``seed``, or the config's ``training.seed`` when unset."""
        return training_seed if self.seed is None else self.seed

    @field_validator("study")
    @classmethod
    def _study_is_a_folder_name(cls, value: str) -> str:
        return folder_name(value, "tuning.study")

    @field_validator("space")
    @classmethod
    def _space_entries_fit(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            build_space(value)
        except SearchSpaceError as exc:
            raise ValueError(str(exc)) from None
        return value
