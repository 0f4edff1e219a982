"""The typed records that pass between the pipeline's stages.

One batch from incoming/ to scored/ (flows/score.py) passes:

    BatchRef (tasks.incoming)  -> validation -> ValidationOutcome (tasks.validation)
        accepted: -> scoring -> ScoreMarker           (scored/<dataset>/_success/<batch_id>.json)
        rejected: -> quarantine -> QuarantineRecord   (quarantine/<dataset>/<batch_id>/report.json)
    ScoreMarker -> drift -> DriftReport               (reports/<dataset>/drift/<batch_id>.json)

Training (flows/train.py) passes:

    [BatchRef] -> split -> TrainingSplit -> fit -> ModelReference -> evaluate -> Evaluation
        (+ the champion on the same rows: ChampionEvaluation) -> gate -> GateDecision

Records are frozen: a stage builds a new record rather than changing the one it received. Each
has ``to_dict`` (JSON, for storage, Prefect artifacts and the command line: JSON appears only at
those boundaries) and ``from_dict`` (which ignores keys it does not know, so a record written by a
newer version still reads).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self


class Record:
    """Mixin of the records below: ``to_dict`` / ``from_dict`` for the storage boundary."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {name for name, f in cls.__dataclass_fields__.items() if f.init}
        return cls(**{key: value for key, value in data.items() if key in known})

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (records are frozen)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


# ------------------------------------------------------------------------------------ scoring
SCORED = "scored"
SKIPPED = "skipped"


@dataclass(frozen=True)
class ScoreMarker(Record):
    """One batch scored (or skipped: already scored by this model from these bytes).

    Written as ``scored/<dataset>/_success/<batch_id>.json`` after the scored file was committed
    (paths relative to the root there; absolute in this record).
    """

    batch_id: str
    status: str  # SCORED | SKIPPED
    rows_in: int
    rows_out: int
    flagged: int
    model_version: str
    # Paths are None only in a marker of an older format whose path does not map onto this root.
    input_path: str | None = None
    output: str | None = None  # the scored Parquet file
    input_sha256: str | None = None
    input_fingerprint: str | None = None
    date: str | None = None  # the batch's date (YYYY-MM-DD): its partition
    date_source: str | None = None  # "timestamp" | "id" | "arrival"
    scored_at: str | None = None  # ISO time, UTC
    seconds: float | None = None


# --------------------------------------------------------------------------------- quarantine
@dataclass(frozen=True)
class QuarantineRecord(Record):
    """One batch moved into quarantine (or found there already).

    ``status``: "quarantined", or "quarantined_elsewhere" when another run moved it first;
    ``rows`` None when unknown (an unreadable file).
    """

    batch_id: str
    status: str
    rows: int | None
    quarantine_dir: str | None
    reason: str


# ----------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainingSplit(Record):
    """The training window split into training and holdout rows, both written as Parquet.

    ``method``: "time" (the latest rows by the timestamp column are held out) or "random"
    (seeded). ``label_column`` is None when a batch of the window lacks the label
    (``label_note`` says why). Times are ISO strings or None.
    """

    method: str
    train_path: str
    holdout_path: str
    train_rows: int
    holdout_rows: int
    holdout_fraction: float
    seed: int
    timestamp_column: str | None
    label_column: str | None
    label_note: str | None
    train_start: str | None = None
    train_end: str | None = None
    holdout_start: str | None = None
    holdout_end: str | None = None

    def description(self) -> dict[str, Any]:
        """The split without its file paths (what metrics.json records)."""
        return {k: v for k, v in self.to_dict().items() if not k.endswith("_path")}


@dataclass(frozen=True)
class ModelReference(Record):
    """A registered model version: what training produced.

    ``reused``: training reproduced a bundle already registered, whose version this is.
    ``metrics``: the fit's numbers (train_rows, fit_seconds, threshold, calibration, and with
    labels train_auroc / train_auprc / train_label_share).
    """

    version: str
    reused: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation(Record):
    """A challenger evaluated on its holdout: ``metrics`` is the metrics.json document
    (docs/metrics.schema.json); ``holdout_scores_path`` the per-row holdout results."""

    version: str
    metrics: dict[str, Any]
    holdout_scores_path: str | None = None

    @property
    def reconstruction_scales(self) -> dict[str, float]:
        """{numeric column: error unit}: the champion is measured in the same units."""
        return dict(self.metrics["reconstruction"]["scales"])

    @property
    def warnings(self) -> list[str]:
        return list(self.metrics["data_quality"]["warnings"])


@dataclass(frozen=True)
class ChampionEvaluation(Record):
    """The champion on the challenger's holdout rows, in the challenger's error units.

    ``error`` (and no metrics) when the champion cannot score those rows."""

    version: str
    reconstruction: dict[str, Any] | None = None
    scores: dict[str, Any] | None = None
    labels: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class GateDecision(Record):
    """The promotion gate's decision for a challenger, and what was done about it.

    ``decision``: "promote" or "refuse"; ``comparisons``: one dict per compared metric
    (metric, challenger, champion, margin, limit, passed); ``applied``: False for a dry run;
    ``promoted``: the challenger became the champion in this run.
    """

    decision: str
    reasons: list[str]
    comparisons: list[dict[str, Any]]
    champion_version: str | None
    reconstruction_margin: float
    auroc_margin: float
    applied: bool = False
    champion_before: str | None = None
    champion_after: str | None = None
    promoted: bool = False


# -------------------------------------------------------------------------------------- drift
@dataclass(frozen=True)
class DriftReport(Record):
    """One scored batch against the champion's training reference.

    ``status``: "ok", "warn" or "drift"; ``drifted`` with ``reasons`` when columns, the score
    distribution or the flag rate drifted. ``columns``, ``score``, ``flag_rate`` and
    ``thresholds`` hold the details; ``report`` is where the JSON was written.
    """

    batch_id: str
    dataset: str
    reference_version: str | None
    status: str
    drifted: bool
    reasons: list[str]
    rows: int
    rows_scored: int
    drifted_columns: list[str]
    warned_columns: list[str]
    columns: list[dict[str, Any]]
    score: dict[str, Any]
    flag_rate: dict[str, Any]
    thresholds: dict[str, Any]
    report: str
    measured_at: str | None = None

    def summary(self) -> dict[str, Any]:
        """The report in a few fields (what the nightly record keeps per batch)."""
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "drifted": self.drifted,
            "reasons": self.reasons,
            "drifted_columns": self.drifted_columns,
            "warned_columns": self.warned_columns,
            "score_psi": self.score["psi"],
            "flag_rate": self.flag_rate["batch"],
            "reference_flag_rate": self.flag_rate["reference"],
            "report": self.report,
        }


@dataclass(frozen=True)
class RetrainDecision(Record):
    """Whether a night's results call for retraining: the ``triggers`` that fired ("drift",
    "model_age", "feedback"), a reason for each, the champion's age in days (None: unknown) and the
    champion's flag precision from analysts' verdicts (a :class:`FlagPrecision` as a dict; None
    when not measured)."""

    retrain: bool
    triggers: list[str]
    reasons: list[str]
    model_age_days: float | None = None
    flag_precision: dict[str, Any] | None = None


# ----------------------------------------------------------------------------------- feedback
CONFIRMED = "confirmed"
FALSE_POSITIVE = "false_positive"
VERDICTS = (CONFIRMED, FALSE_POSITIVE)


@dataclass(frozen=True)
class VerdictSubmission(Record):
    """Analysts' verdict on scored rows, as submitted (``aeflow feedback add``, the feedback flow).

    ``rows``: ``[batch_id, row_id]`` pairs (row ids as text); ``submission_id``: None to derive it
    from the content, so a resubmission of the same verdicts is recognised and not recorded twice.
    """

    verdict: str
    rows: list[list[str]]
    note: str | None = None
    analyst: str | None = None
    submission_id: str | None = None


@dataclass(frozen=True)
class FeedbackSubmission(Record):
    """A verdict submission as stored under ``feedback/<dataset>/<submission_id>.parquet``.

    ``status``: "recorded" (written now) or "already_recorded" (the same submission was stored
    before, at ``submitted_at``; nothing written). ``superseded_rows``: rows of it that a later
    submission gave another verdict.
    """

    submission_id: str
    dataset: str
    status: str
    verdict: str
    rows: int
    batches: list[str]
    submitted_at: str
    path: str
    note: str | None = None
    analyst: str | None = None
    flagged_rows: int = 0
    superseded_rows: int = 0


@dataclass(frozen=True)
class FlagPrecision(Record):
    """The share of a model's reviewed flags that analysts confirmed, over batch dates
    ``first_date``..``last_date``: ``precision`` = confirmed / reviewed (None when nothing was
    reviewed). ``below_floor``: the feedback retraining trigger fires (a floor is set, at least
    ``min_verdicts`` flags were reviewed, and the precision is below ``floor``); ``reason`` says
    why it fired or not."""

    model_version: str | None
    first_date: str | None
    last_date: str | None
    reviewed: int
    confirmed: int
    false_positives: int
    precision: float | None
    floor: float | None
    min_verdicts: int
    below_floor: bool
    reason: str
