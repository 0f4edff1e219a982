"""The Prefect tasks: a warning batch and a quarantined batch each leave a markdown artifact.

Needs a Prefect API (the session's temporary local server, tests/conftest.py), hence `slow`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from model_support import demo_columns, demo_validation
from prefect import flow

from tasks.demo_data import generate_demo_data
from tasks.io import Storage, list_batches
from tasks.markdown import md_text
from tasks.validation import quarantine_task, validate_batch_task

pytestmark = pytest.mark.slow


@flow
def validate_and_quarantine(incoming: str, layout_root: str) -> list[dict]:
    """What the score flow does with each batch, minus the scoring."""
    layout = Storage(layout_root, "demo")
    results = []
    for batch in list_batches(incoming):
        outcome = validate_batch_task(
            batch, columns=demo_columns(), validation=demo_validation()
        ).to_dict()
        if not outcome["accepted"]:
            outcome["moved"] = quarantine_task(batch, outcome, storage=layout).to_dict()
        results.append(outcome)
    return results


def test_artifacts_summarise_warnings_and_name_the_quarantine_folder(prefect_test_server, tmp_path):
    from prefect.artifacts import Artifact

    layout = Storage(str(tmp_path / "root"), "demo")
    manifest = generate_demo_data(
        layout.incoming, days=2, rows_per_day=1200, seed=9, drift_day=None, malformed_day=None
    )
    warn_day, broken_day = manifest.paths
    table = pq.read_table(warn_day)
    pq.write_table(table.slice(0, 500), warn_day)  # too few rows: a warning
    pq.write_table(table.drop_columns(["amount"]), broken_day)  # a missing column: quarantined

    # The harness is shared by the session: other tests may have left artifacts under these keys.
    started = dt.datetime.now(dt.UTC)
    first, second = validate_and_quarantine(layout.incoming, layout.root)
    assert (first["status"], second["status"]) == ("warning", "quarantined")
    folder = second["moved"]["quarantine_dir"]
    assert json.loads((Path(folder) / "report.json").read_text())["batch_id"] == "2026-01-02"

    warned = Artifact.get("validation-2026-01-01")
    assert warned is not None and "expect_table_row_count_to_be_between" in warned.data
    assert warned.created >= started  # this test's artifact, not an earlier one
    quarantined = Artifact.get("quarantine-2026-01-02")
    assert quarantined is not None and f"Quarantined in `{folder}`" in quarantined.data
    assert md_text("missing column(s) ['amount']") in quarantined.data  # escaped, as every value
