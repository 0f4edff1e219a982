"""What a run reports as "scored with warnings": only batches this run scored. A batch whose
validation warned and which a concurrent run scored first (skipped here), or whose scoring failed,
was listed as scored with warnings by the run that did not score it."""

from __future__ import annotations

from flows.score import BatchResults
from tasks.records import SCORED, SKIPPED, ScoreMarker
from tasks.validation.outcome import ValidationOutcome


def _warned(batch_id: str) -> ValidationOutcome:
    return ValidationOutcome(batch_id, "warning", True, 100, warnings=[{"type": "range"}])


def test_only_batches_this_run_scored_are_scored_with_warnings():
    results = BatchResults(warnings=[_warned("c"), _warned("b"), _warned("a")])
    results.scored.append(ScoreMarker("c", SCORED, 100, 100, 1, "v1"))
    results.skipped.append(ScoreMarker("b", SKIPPED, 100, 100, 1, "v1"))  # a concurrent run's
    results.failed("a", RuntimeError("scoring failed"))
    results.scored.append(ScoreMarker("a0", SCORED, 100, 100, 0, "v1"))
    assert results.settle() is results
    assert [outcome.batch_id for outcome in results.warnings] == ["c"]
    assert [marker.batch_id for marker in results.scored] == ["a0", "c"]  # batch id order
    assert results.committed == 2 and results.failures == ["a: RuntimeError: scoring failed"]
