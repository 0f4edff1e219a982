"""The typed records that pass between the pipeline's stages.

One batch from incoming/ to scored/ (flows/score.py) passes:

    BatchRef (tasks.incoming)  -> validation -> ValidationOutcome (tasks.validation)
        accepted: -> scoring -> ScoreMarker           (scored/<dataset>/_success/<batch_id>.json)
        rejected: -> quarantine -> QuarantineRecord   (quarantine/<dataset>/<batch_id>/report.json)
    ScoreMarker -> drift -> DriftReport               (reports/<dataset>/drift/<batch_id>.json)

Training (flows/train.py) passes:

    [BatchRef] -> split -> TrainingSplit -> fit -> ModelReference -> evaluate -> Evaluation
        (+ the champion on the same rows: ChampionEvaluation) -> gate -> GateDecision
        -> all of them: TrainingRun (the train flow's result)

A night (flows/nightly.py) and a retraining (flows/retrain.py) end with their run records:

    [DriftReport] -> triggers -> RetrainDecision -> (retrain: RetrainWindow + TrainingRun
        -> RetrainRecord, reports/<dataset>/<run>/retrain.json) -> NightlyRecord
        (reports/<dataset>/nightly/<night>.json)

Records are frozen: a stage builds a new record rather than changing the one it received. Each
has ``to_dict`` (JSON, for storage, Prefect artifacts and the command line: JSON appears only at
those boundaries); the records read back from storage have ``from_dict`` (which ignores keys it
does not know, so a record written by a newer version still reads).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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
QUARANTINED = "quarantined"
# Another run moved the batch first (or it left incoming/ otherwise): nothing was done here.
QUARANTINED_ELSEWHERE = "quarantined_elsewhere"
# A quarantine folder without its report.json: a move interrupted before its report was written.
QUARANTINE_INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class QuarantineRecord(Record):
    """One batch in quarantine: made when a rejected batch is moved there
    (tasks.validation: ``quarantine_task``), stored in the batch's
    ``quarantine/<dataset>/<batch_id>/report.json`` beside the validation report it was rejected
    with, and read back from there (``read_quarantine``, ``list_quarantined``: `aeflow quarantine
    list`).

    ``status``: "quarantined"; "quarantined_elsewhere" when another run moved it first (nothing
    was done by this one); "interrupted" for a folder whose move stopped before its report.
    ``rows`` None when unknown (an unreadable file); ``critical`` and ``warnings`` count the
    report's failures (None when there is no report).
    """

    batch_id: str
    status: str
    rows: int | None
    quarantine_dir: str | None
    reason: str
    quarantined_at: str | None = None  # ISO time, UTC
    critical: int | None = None
    warnings: int | None = None

    @classmethod
    def from_report(cls, report: dict[str, Any], quarantine_dir: str) -> QuarantineRecord:
        """The record of a quarantine folder's report.json (``quarantine_dir``: the folder)."""
        return cls(
            batch_id=report["batch_id"],
            status=QUARANTINED,
            rows=report.get("rows"),
            quarantine_dir=quarantine_dir,
            reason=report.get("reason", ""),
            quarantined_at=report.get("quarantined_at"),
            critical=len(report.get("critical") or []),
            warnings=len(report.get("warnings") or []),
        )

    def summary(self) -> dict[str, Any]:
        """What a run summary keeps of a quarantined batch (tasks.report.run_summary)."""
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "rows": self.rows,
            "quarantine_dir": self.quarantine_dir,
            "reason": self.reason,
        }


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


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a registry entry and a Prefect artifact carry: holdout rows, reconstruction
    MSE/RMSE/MAE, flag rate and, with labels, AUROC, AUPRC, precision, recall and F1."""
    reconstruction = metrics.get("reconstruction") or {}
    scores = metrics.get("scores") or {}
    labels = metrics.get("labels") or {}
    return {
        "holdout_rows": scores.get("rows"),
        "reconstruction_mse": reconstruction.get("mse"),
        "reconstruction_rmse": reconstruction.get("rmse"),
        "reconstruction_mae": reconstruction.get("mae"),
        "flag_rate": scores.get("flag_rate"),
        "auroc": labels.get("auroc"),
        "auprc": labels.get("auprc"),
        "precision": labels.get("precision"),
        "recall": labels.get("recall"),
        "f1": labels.get("f1"),
    }


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

    @property
    def headline(self) -> dict[str, Any]:
        """The few numbers a registry entry and a run's result carry (:func:`headline`)."""
        return headline(self.metrics)


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


@dataclass(frozen=True)
class TrainingRun:
    """A challenger split, fitted, evaluated and gated in one run (flows/train.py:
    ``train_evaluate_gate``), made of the records its stages passed.

    ``training_batches``: the ids of the batches it was trained on; ``bundle``: the registered
    version's folder; ``report``: the report's URLs (``html``, ``metrics``) when one was written;
    ``rows_before_filter`` / ``rows_left_out``: training rows before a retraining left rows out
    (tasks.row_filter), and how many it did: ``flagged_left_out`` the champion flagged,
    ``confirmed_left_out`` analysts confirmed as anomalies; ``false_positives_kept`` flagged rows
    kept because analysts marked them false positives.
    """

    dataset: str
    run: str
    model: ModelReference
    evaluation: Evaluation
    gate: GateDecision
    training_batches: list[str]
    models_root: str
    bundle: str
    report: dict[str, str] | None = None
    rows_before_filter: int = 0
    rows_left_out: int = 0
    flagged_left_out: int = 0
    confirmed_left_out: int = 0
    false_positives_kept: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON: the train flow's result (without its ``left_out`` batches)."""
        return {
            "dataset": self.dataset,
            "version": self.model.version,
            "reused": self.model.reused,
            "promoted": self.gate.promoted,
            "metrics": self.model.metrics,
            "training_batches": list(self.training_batches),
            "models_root": self.models_root,
            "bundle": self.bundle,
            "run": self.run,
            "report": self.report["html"] if self.report else None,
            "gate": self.gate.to_dict(),
            "evaluation": self.evaluation.headline,
            "warnings": self.evaluation.warnings,
            "rows_before_filter": self.rows_before_filter,
            "rows_left_out": self.rows_left_out,
            "flagged_left_out": self.flagged_left_out,
            "confirmed_left_out": self.confirmed_left_out,
            "false_positives_kept": self.false_positives_kept,
        }


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


# ------------------------------------------------------------------------------------ nightly
@dataclass(frozen=True)
class NightlyRecord:
    """One night of the nightly flow (flows/nightly.py), made of the records its stages passed.

    ``score``: the night's score-run summary (tasks.report.run_summary); ``scored_before``: ids of
    the night's batches an earlier run scored; ``drift``: the drift report of each batch measured;
    ``feedback``: what analysts' verdicts say (tasks.flag_precision.feedback_summary; None without
    verdicts); ``retrain``: the retraining record (retrain.json's content) when the retrain flow ran, else
    None; ``champion_after``: the champion once the night is done; ``failures``: one message per
    batch that could not be processed; ``report``: where the record is stored, once it is.

    Stored as ``reports/<dataset>/nightly/<night>.json`` (:meth:`to_dict`, with each drift report
    as its summary: the full reports are files of their own); not read back.
    """

    dataset: str
    night: str
    date: str | None
    model_version: str | None
    score: dict[str, Any]
    scored_before: list[str]
    drift: list[DriftReport]
    retrain_decision: RetrainDecision
    feedback: dict[str, Any] | None
    retrain: dict[str, Any] | None
    champion_after: str | None
    failures: list[str]
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored (JSON) form."""
        stored = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        stored["drift"] = [report.summary() for report in self.drift]
        stored["retrain_decision"] = self.retrain_decision.to_dict()
        return stored

    def replace(self, **changes: Any) -> NightlyRecord:
        """A copy with ``changes`` (records are frozen)."""
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------------ retrain
@dataclass(frozen=True)
class RetrainWindow(Record):
    """The accepted batches a retraining trains on: ``days`` up to ``until`` (None: the newest
    accepted batch), their dates and ids; ``exclude_flagged``: the champion's flagged rows are
    left out of the training rows, ``exclude_confirmed``: so are rows analysts confirmed as
    anomalies, ``keep_false_positives``: flagged rows analysts marked false positives are kept
    (tasks.row_filter)."""

    days: int
    until: str | None
    first_date: str | None
    last_date: str | None
    batches: list[str]
    exclude_flagged: bool
    exclude_confirmed: bool = True
    keep_false_positives: bool = True

    @classmethod
    def of(
        cls,
        window: Sequence[ScoreMarker],
        *,
        days: int,
        until: str | None,
        exclude_flagged: bool,
        exclude_confirmed: bool = True,
        keep_false_positives: bool = True,
    ) -> RetrainWindow:
        """The window of the scored batches ``window`` (their markers)."""
        dates = [m.date for m in window]
        return cls(
            days=days,
            until=until,
            first_date=min(dates) if window else None,
            last_date=max(dates) if window else None,
            batches=[m.batch_id for m in window],
            exclude_flagged=exclude_flagged,
            exclude_confirmed=exclude_confirmed,
            keep_false_positives=keep_false_positives,
        )


@dataclass(frozen=True)
class RetrainRecord:
    """One run of the retrain flow (flows/retrain.py): why it ran (``trigger``, ``trigger_reasons``),
    on what (``window``), the champion before and after, and the challenger's training run
    (``trained``; None when there was nothing to train on, ``skipped_reason`` says why).

    Stored as ``reports/<dataset>/<run>/retrain.json`` (:meth:`to_dict`); not read back.
    """

    dataset: str
    run: str
    trigger: str
    trigger_reasons: list[str]
    champion_before: str | None
    window: RetrainWindow
    trained: TrainingRun | None = None
    skipped_reason: str | None = None

    @property
    def champion_after(self) -> str | None:
        """The champion once the run is done: the one the gate left, or the champion before when
        nothing was trained."""
        return self.trained.gate.champion_after if self.trained else self.champion_before

    def to_dict(self) -> dict[str, Any]:
        """The stored (JSON) form: the challenger's version, the gate's decision and reasons, its
        fit metrics, headline evaluation and report; ``decision`` "skipped" without a challenger."""
        trained = self.trained
        record: dict[str, Any] = {
            "dataset": self.dataset,
            "run": self.run,
            "trigger": self.trigger,
            "trigger_reasons": list(self.trigger_reasons),
            "champion_before": self.champion_before,
            "window": {
                **self.window.to_dict(),
                "rows_before_filter": trained.rows_before_filter if trained else 0,
                "rows_left_out": trained.rows_left_out if trained else 0,
                "flagged_left_out": trained.flagged_left_out if trained else 0,
                "confirmed_left_out": trained.confirmed_left_out if trained else 0,
                "false_positives_kept": trained.false_positives_kept if trained else 0,
            },
        }
        if trained is None:
            return record | {
                "version": None, "promoted": False, "decision": "skipped",
                "reason": self.skipped_reason, "gate": None, "champion_after": self.champion_after,
                "train_rows": 0, "metrics": None, "evaluation": None, "report": None,
            }  # fmt: skip
        result = trained.to_dict()
        return record | {
            "version": result["version"],
            "reused": result["reused"],
            "promoted": result["gate"]["promoted"],
            "decision": result["gate"]["decision"],
            "reason": "; ".join(result["gate"]["reasons"]),
            "gate": result["gate"],
            "champion_after": self.champion_after,
            "train_rows": result["metrics"]["train_rows"],
            "metrics": result["metrics"],
            "evaluation": result["evaluation"],
            "report": result["report"],
            "warnings": result["warnings"],
        }

    def replace(self, **changes: Any) -> RetrainRecord:
        """A copy with ``changes`` (records are frozen)."""
        return dataclasses.replace(self, **changes)


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
