"""Where a study lives: ``<root>/reports/<dataset>/tuning/<study>/``.

A local root keeps the study in SQLite (``study.db``); an object-storage root (s3://, gs://, ...)
keeps Optuna's journal (``journal.log``, one JSON operation per line) through fsspec, rewritten
with a single atomic PUT per append. Either way a killed or timed-out search reopens the same study
and carries on (see :mod:`tasks.tuning.search`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import BaseJournalBackend

from models.storage import filesystem, is_local, join, write_bytes_atomic
from tasks.io import StorageOptions

SQLITE_FILE, JOURNAL_FILE = "study.db", "journal.log"
optuna.logging.set_verbosity(optuna.logging.WARNING)


class FsspecJournalBackend(BaseJournalBackend):
    """Optuna journal on any fsspec URL (object storage has no append: each append rewrites the
    object with one PUT, which is atomic). One search process writes a study at a time; the logs
    it read or wrote are kept in memory, so reads cost nothing after the first."""

    def __init__(self, url: str, options: StorageOptions = None):
        self.url = url
        self.options = options
        self._lock = threading.Lock()
        self._logs: list[dict[str, Any]] | None = None

    def _load(self) -> list[dict[str, Any]]:
        if self._logs is None:
            fs, path = filesystem(self.url, self.options)
            try:
                with fs.open(path, "rb") as handle:
                    text = handle.read().decode("utf-8")
            except FileNotFoundError:
                text = ""
            # A line cut short by a kill during a write cannot exist (the PUT is atomic), but a
            # hand-edited file might end without a newline: skip blank lines only.
            self._logs = [json.loads(line) for line in text.splitlines() if line.strip()]
        return self._logs

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._load()[log_number_from:])

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with self._lock:
            merged = [*self._load(), *logs]
            text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in merged)
            write_bytes_atomic(text.encode("utf-8"), self.url, self.options)
            self._logs = merged


def study_storage(study_dir: str, options: StorageOptions = None) -> Any:
    """The Optuna storage of the study folder: SQLite locally, a journal on object storage."""
    if is_local(study_dir):
        folder = Path(study_dir.removeprefix("file://"))
        folder.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(
            f"sqlite:///{folder / SQLITE_FILE}",
            engine_kwargs={"connect_args": {"timeout": 60}},
        )
    return optuna.storages.JournalStorage(
        FsspecJournalBackend(join(study_dir, JOURNAL_FILE), options)
    )


def open_study(
    study_dir: str, name: str, objective: str, direction: str, options: StorageOptions = None
) -> optuna.Study:
    """Create the study, or reopen it to resume; refuses a study created for another objective."""
    study = optuna.create_study(
        study_name=name,
        storage=study_storage(study_dir, options),
        direction=direction,
        load_if_exists=True,
    )
    recorded = study.user_attrs.get("objective")
    if recorded is None:
        study.set_user_attr("objective", objective)
    elif recorded != objective:
        raise ValueError(
            f"study {name!r} was run with the objective {recorded!r}, not {objective!r}; resume it "
            f"with --objective {recorded}, or start another study with --study NAME"
        )
    return study
