"""The `aeflow` command as a user runs it (a subprocess of the installed console script)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

AEFLOW = shutil.which("aeflow", path=os.path.dirname(sys.executable)) or shutil.which("aeflow")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert AEFLOW, "the aeflow console script is not installed in this environment"
    return subprocess.run([AEFLOW, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_lists_the_commands():
    result = run("--help")
    assert result.returncode == 0
    for command in ("train", "score", "demo-data", "demo"):
        assert command in result.stdout
    for command in ("train", "score", "demo"):
        sub = run(command, "--help")
        assert sub.returncode == 0 and "--config" in sub.stdout


def test_demo_data_is_byte_identical_for_the_same_seed(tmp_path):
    digests = []
    for name in ("a", "b"):
        result = run(
            "demo-data",
            "--out",
            str(tmp_path / name),
            "--days",
            "3",
            "--rows-per-day",
            "500",
            "--seed",
            "3",
        )
        assert result.returncode == 0, result.stderr
        files = sorted((tmp_path / name).glob("*.parquet"))
        assert len(files) == 3
        digests.append([hashlib.sha256(f.read_bytes()).hexdigest() for f in files])
    assert digests[0] == digests[1]


@pytest.mark.parametrize("command", ["train", "score"])
def test_a_bad_config_is_one_clear_error_without_a_traceback(tmp_path, command):
    config = tmp_path / "bad.toml"
    config.write_text('dataset = "x"\ncolums = {}\n')
    result = run(command, "--config", str(config))
    assert result.returncode == 2
    assert "unknown key 'colums'" in result.stderr and str(config) in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_data_makes_any_number_of_days(tmp_path):
    """`--days 1` once failed on the default drifted day, an option the CLI did not have."""
    one = run("demo-data", "--out", str(tmp_path / "one"), "--days", "1", "--rows-per-day", "500")
    assert one.returncode == 0, one.stderr
    manifest = json.loads(one.stdout)
    assert (manifest["days"], manifest["drift_day"], manifest["malformed_day"]) == (1, None, None)
    chosen = run(
        "demo-data", "--out", str(tmp_path / "two"), "--days", "2", "--rows-per-day", "500",
        "--drift-day", "1", "--malformed-day", "none",
    )  # fmt: skip
    assert chosen.returncode == 0, chosen.stderr
    assert (json.loads(chosen.stdout)["drift_day"], json.loads(chosen.stdout)["malformed_day"]) == (
        1,
        None,
    )
    bad = run("demo-data", "--out", str(tmp_path / "bad"), "--days", "2", "--drift-day", "5")
    assert bad.returncode == 2 and "drift_day must be in [-2, 1] for days=2, got 5" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_help_documents_the_exit_codes():
    listing = run("--help").stdout
    assert "exit codes:" in listing and "3    --fail-on-quarantine" in listing
    for command in ("score", "nightly", "backfill"):
        assert "--fail-on-quarantine" in run(command, "--help").stdout


def test_each_exit_code_means_one_thing_in_help_and_docs():
    from flows import errors

    codes = {
        name: value
        for name, value in vars(errors).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    }
    assert len(set(codes.values())) == len(codes), codes  # e.g. storage vs Prefect API lost
    assert (errors.EXIT_STORAGE, errors.EXIT_PREFECT_API_LOST) == (4, 5)
    listing = run("--help").stdout
    assert "4    storage unreachable" in listing and "5    the Prefect API" in listing
    operations = (Path(__file__).parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    table = operations.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("|")]
    for code in codes.values():
        assert documented.count(str(code)) == 1, f"exit code {code}: one row in docs/operations.md"
    assert "| 4 | the storage was unreachable" in table and "| 5 | the Prefect API" in table
