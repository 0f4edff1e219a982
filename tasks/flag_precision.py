"""The precision of flags, from analysts' verdicts (:mod:`tasks.feedback`).

A reviewed flag is a row that was flagged when it was scored (``is_anomaly`` in its scored output)
and has a verdict; its latest verdict counts. Precision = confirmed / reviewed flags. Verdicts on
rows that were *not* flagged are anomalies the model missed (``missed``), not part of precision.
Dates are the batches' dates (the data's days, as everywhere in aeflow), not the days of review.

The feedback retraining trigger (:func:`precision_check`) looks at the current champion's flags
only, over the last ``feedback.precision_days`` batch dates that have verdicts: a new champion
starts with a clean slate rather than inheriting its predecessor's mistakes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.feedback import latest_verdicts
from tasks.io import Storage
from tasks.markdown import md_text
from tasks.records import CONFIRMED, FALSE_POSITIVE, FlagPrecision
from tasks.settings import FeedbackSettings

# Dates shown in the report and the nightly summary (the newest; all are in feedback list).
SHOWN_DATES = 30


def _counts(rows: pd.DataFrame) -> dict[str, Any]:
    flagged = rows["is_anomaly"].fillna(False).astype(bool)
    confirmed = rows["verdict"] == CONFIRMED
    reviewed = int(flagged.sum())
    true_flags = int((flagged & confirmed).sum())
    return {
        "reviewed": reviewed,
        "confirmed": true_flags,
        "false_positives": int((flagged & (rows["verdict"] == FALSE_POSITIVE)).sum()),
        "precision": round(true_flags / reviewed, 6) if reviewed else None,
        "missed": int((~flagged & confirmed).sum()),
    }


def precision_over_time(latest: pd.DataFrame, last: int | None = SHOWN_DATES) -> list[dict]:
    """One entry per batch date (oldest first; the ``last`` newest): ``date``, ``reviewed``
    flags, ``confirmed``, ``false_positives``, ``precision`` (None: no flag reviewed), ``missed``
    (confirmed rows that were not flagged) and the ``models`` that scored them."""
    if latest.empty:
        return []
    dated = latest.assign(batch_date=latest["batch_date"].fillna("undated"))
    entries = []
    for date, rows in dated.groupby("batch_date", sort=True):
        models = sorted(str(m) for m in rows["model_version"].dropna().unique())
        entries.append({"date": date, **_counts(rows), "models": models})
    return entries[-last:] if last else entries


def precision_check(
    latest: pd.DataFrame,
    *,
    feedback: FeedbackSettings,
    model_version: str | None,
    until: str | None = None,
) -> FlagPrecision:
    """The flag precision of ``model_version`` over the last ``feedback.precision_days`` batch
    dates up to ``until`` (YYYY-MM-DD; default: the newest date with a verdict on its flags), and
    whether it falls below ``feedback.precision_floor`` (the feedback trigger)."""
    rows = latest[latest["model_version"] == model_version] if model_version else latest[:0]
    rows = rows[rows["batch_date"].notna()]
    dates = sorted(rows["batch_date"].unique())
    last = until[:10] if until else (dates[-1] if dates else None)
    first = None
    if last is not None:
        first = dt.date.fromisoformat(last) - dt.timedelta(days=feedback.precision_days - 1)
        first = first.isoformat()
        rows = rows[(rows["batch_date"] >= first) & (rows["batch_date"] <= last)]
    counts = _counts(rows)
    floor, needed = feedback.precision_floor, feedback.min_verdicts
    precision = counts["precision"]
    span = f"batches dated {first}..{last}" if last else "no dated verdicts"
    below = False
    if model_version is None:
        reason = "no champion yet: no flags to measure"
    elif floor is None:
        reason = (
            f"flag precision of {model_version}: "
            + ("n/a" if precision is None else f"{precision:.1%}")
            + f" ({counts['confirmed']} of {counts['reviewed']} reviewed flags confirmed, {span}); "
            "no floor set (feedback.precision_floor)"
        )
    elif counts["reviewed"] < needed:
        reason = (
            f"{counts['reviewed']} reviewed flags of {model_version} ({span}); at least "
            f"{needed} are needed (feedback.min_verdicts)"
        )
    else:
        below = precision < floor
        reason = (
            f"flag precision of {model_version} is {precision:.1%} ({counts['confirmed']} of "
            f"{counts['reviewed']} reviewed flags confirmed, {span}), "
            + (f"below the floor of {floor:.0%}" if below else f"at or above the floor {floor:.0%}")
        )
    return FlagPrecision(
        model_version=model_version,
        first_date=first,
        last_date=last,
        reviewed=counts["reviewed"],
        confirmed=counts["confirmed"],
        false_positives=counts["false_positives"],
        precision=precision,
        floor=floor,
        min_verdicts=needed,
        below_floor=below,
        reason=reason,
    )


def feedback_summary(
    storage: Storage,
    *,
    feedback: FeedbackSettings | None,
    model_version: str | None = None,
    until: str | None = None,
) -> dict[str, Any] | None:
    """What the verdicts say, for the evaluation report, the nightly summary and `aeflow feedback
    summary`; None when there is no verdict yet.

    ``rows_reviewed`` (rows with a verdict), ``verdicts`` ({verdict: rows}), ``overall`` (counts
    and precision over every reviewed flag), ``over_time`` (:func:`precision_over_time`) and
    ``champion`` (:func:`precision_check` of ``model_version``, as a dict; None without
    ``feedback`` settings)."""
    latest = latest_verdicts(storage)
    if latest.empty:
        return None
    return {
        "rows_reviewed": len(latest),
        "verdicts": {v: int((latest["verdict"] == v).sum()) for v in (CONFIRMED, FALSE_POSITIVE)},
        "overall": _counts(latest),
        "over_time": precision_over_time(latest),
        "champion": None
        if feedback is None
        else precision_check(
            latest, feedback=feedback, model_version=model_version, until=until
        ).to_dict(),
    }


def champion_precision(summary: dict[str, Any] | None) -> FlagPrecision | None:
    """The champion's flag precision in a :func:`feedback_summary` (the feedback retraining
    trigger's input); None without verdicts or without feedback settings."""
    champion = summary.get("champion") if summary else None
    return FlagPrecision.from_dict(champion) if champion else None


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def feedback_lines(feedback: dict[str, Any] | None) -> list[str]:
    """A Markdown section on analysts' verdicts (the nightly and evaluation artifacts): the
    champion's flag precision against its floor, when measured, and the precision of flags per
    batch date (:func:`feedback_summary`)."""
    lines = ["", "## Flag precision from analysts' feedback", ""]
    if not feedback:
        return [*lines, "No verdicts yet (`aeflow feedback add`)."]
    if feedback.get("champion"):
        lines += [f"Champion: {md_text(feedback['champion']['reason'])}.", ""]
    lines += ["| batch date | reviewed flags | confirmed | false positives | precision | missed |"]
    lines += ["|---|---|---|---|---|---|"]
    lines += [
        f"| {md_text(e['date'])} | {e['reviewed']} | {e['confirmed']} | {e['false_positives']} "
        f"| {_share(e['precision'])} | {e['missed']} |"
        for e in feedback["over_time"]
    ]
    return lines


flag_precision_task = task(feedback_summary, name="flag-precision", cache_policy=NO_CACHE)
