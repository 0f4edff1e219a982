"""`aeflow feedback` as a user runs it: verdicts from stdin recorded, bad ids one clear error
(exit 2, nothing written)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from window_support import write_batch, write_scored

from tasks.io import Storage

AEFLOW = shutil.which("aeflow", path=os.path.dirname(sys.executable)) or shutil.which("aeflow")
DAY = "2026-01-01"


def aeflow(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    assert AEFLOW, "the aeflow console script is not installed in this environment"
    return subprocess.run([AEFLOW, *args], input=stdin, capture_output=True, text=True, timeout=300)


def test_verdicts_from_stdin_are_recorded_and_bad_ids_are_refused(tmp_path: Path):
    storage = Storage(str(tmp_path / "data"), "demo")
    write_scored(storage, DAY, write_batch(storage, DAY), [False, True, False, True, False, False])
    config = tmp_path / "demo.toml"
    config.write_text(
        'dataset = "demo"\n[storage]\nroot = "data"\n[columns]\nid = "id"\nnumeric = ["amount"]\n'
        '[validation]\nsuite = "suite.json"\n',
        encoding="utf-8",
    )
    add = ("feedback", "add", "--config", str(config), "--ids", "-", "--verdict", "confirmed")
    ids = f"batch_id,id\n{DAY},{DAY}-1\n{DAY},{DAY}-3\n"

    first = aeflow(*add, "--note", "ring", stdin=ids)
    assert first.returncode == 0, first.stderr
    assert "recorded 2 confirmed verdict(s) on 1 batch(es) (2 of the rows were flagged)" in (
        first.stdout
    )
    # (resubmission, listing and summary: tests/unit/test_feedback.py runs them in-process)
    bad = aeflow(*add, stdin=f"batch_id,id\n{DAY},nope\n")
    assert bad.returncode == 2
    assert bad.stderr.startswith("aeflow: error: 1 id(s) are not rows of batch '2026-01-01'")
    assert "Traceback" not in bad.stderr
    assert len(list(Path(storage.feedback).glob("*.parquet"))) == 1
