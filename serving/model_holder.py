"""The served model and its hot swap.

A :class:`ServedModel` is immutable: a loaded, verified, warmed-up detector with its version and
input contract. :class:`ModelHolder` keeps the current one in a single attribute; a request reads
it once and uses that model for all of its rows, so a request never mixes versions, and replacing
the attribute is atomic, so no request waits or fails during a swap.

Unless a version is pinned, a background thread reads the registry's champion alias every
``poll_s`` seconds. When it names another version (a promotion or a rollback), the thread loads that
bundle through the registry (checksums verified), checks that it was trained on the config's
columns, warms it up with a row, and only then swaps. A bundle that fails any of these is not
served: the current model stays, the failure is logged and shown by ``GET /model``
(``pending``), and the load is tried again after ``retry_s`` seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from models.registry import ModelRegistry
from serving.rules import InputContract

log = logging.getLogger("aeflow.api")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version: ``detector``, ``version``, ``contract`` (the input rules), its
    registry ``entry`` and when it was loaded."""

    detector: Any
    version: str
    contract: InputContract
    entry: dict[str, Any] = field(default_factory=dict)
    loaded_at: str = field(default_factory=_now)

    def describe(self) -> dict[str, Any]:
        """What ``GET /model`` shows about this version."""
        detector = self.detector
        metadata = getattr(detector, "metadata_", {}) or {}
        return {
            "version": self.version,
            "trained_at": metadata.get("fitted_at"),
            "registered_at": self.entry.get("registered_at"),
            "loaded_at": self.loaded_at,
            "bundle_sha256": self.entry.get("bundle_sha256"),
            "threshold": float(detector.threshold_),
            "latent_dim": int(detector.latent_dim_),
            "columns": [rule.describe() for rule in self.contract.features],
            "passthrough": [rule.describe() for rule in self.contract.passthrough],
            "encoded": [rule.name for rule in self.contract.latent],
        }


def warm_up(served: ServedModel) -> None:
    """Score, encode and reconstruct one made-up row the way a request does (an Arrow record
    batch through :mod:`serving.operations`), so the first request does not pay for the lazily
    built preprocessing replay and Arrow's and torch's first calls."""
    from serving import operations

    row: dict[str, list[Any]] = {}
    for rule in served.contract.features:
        if rule.kind == "numeric":
            row[rule.name] = [0.0]
        else:
            row[rule.name] = [min(rule.levels) if rule.levels else None]
    batch = pa.RecordBatch.from_pydict(row)
    for operation in ("score", "reconstruct"):
        operations.HANDLERS[operation](served, batch, 1)


class ModelHolder:
    """The current :class:`ServedModel`, swapped atomically when the champion alias changes.

    Args:
        registry: the dataset's model registry.
        build: ``build(detector, version, entry) -> ServedModel``; raises ValueError (with the
            reason) for a model that must not be served, e.g. one trained on other columns.
        pinned: a version to serve for good (no watching), or None to follow the champion.
        poll_s: seconds between two reads of the champion alias.
        retry_s: seconds before a version that failed to load is tried again.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        build: Callable[[Any, str, dict[str, Any]], ServedModel],
        pinned: str | None = None,
        poll_s: float = 2.0,
        retry_s: float = 30.0,
    ):
        self.registry = registry
        self.build = build
        self.pinned = pinned
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.current: ServedModel | None = None
        self.pending: dict[str, Any] | None = None
        self.last_check: str | None = None
        self.swaps: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self, version: str | None = None) -> ServedModel:
        """Load, check and warm up ``version`` (the pinned one or the champion when None),
        then serve it; errors propagate (the CLI reports them before the server starts)."""
        resolved = self.registry.resolve(version or self.pinned)
        detector, resolved = self.registry.load(resolved)
        served = self.build(detector, resolved, self.registry.entry(resolved))
        warm_up(served)
        previous = self.current
        self.current = served  # one reference assignment: atomic for the request threads
        self.pending = None
        if previous is not None and previous.version != resolved:
            self.swaps.append({"from": previous.version, "to": resolved, "at": _now()})
            del self.swaps[:-20]
            log.info("now serving model %s (was %s)", resolved, previous.version)
        return served

    def check_once(self) -> bool:
        """Read the champion alias once; load and swap when it names another version (unless
        that version failed less than ``retry_s`` ago). Returns whether a swap happened."""
        self.last_check = _now()
        wanted = self.registry.champion()
        current = self.current.version if self.current else None
        if wanted is None or wanted == current:
            self.pending = None if wanted == current else self.pending
            return False
        failed = self.pending
        if (
            failed
            and failed["version"] == wanted
            and time.monotonic() - failed["_at"] < self.retry_s
        ):
            return False
        try:
            self.load(wanted)
        except Exception as error:  # any failure keeps the current model serving
            self.pending = {
                "version": wanted,
                "error": str(error),
                "at": _now(),
                "_at": time.monotonic(),
            }
            log.error(
                "champion %s not served: %s; still serving %s (retry in %.0f s)",
                wanted,
                error,
                current,
                self.retry_s,
            )
            return False
        return True

    def status(self) -> dict[str, Any]:
        """Where the holder stands: what it follows, its last check, a pending failure, swaps."""
        pending = None
        if self.pending:
            pending = {k: v for k, v in self.pending.items() if not k.startswith("_")}
        return {
            "follows": "pinned version" if self.pinned else "champion",
            "last_check": self.last_check,
            "pending": pending,
            "swaps": list(self.swaps),
        }

    # ------------------------------------------------------------------------------- watching
    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check_once()
            except Exception as error:  # the registry was unreadable: try again next poll
                log.warning("could not read the champion alias: %s", error)

    def start(self) -> None:
        """Follow the champion alias in a background thread (nothing to do when pinned)."""
        if self.pinned or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="aeflow-api-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def model_builder(
    numeric: list[str],
    categorical: list[str],
    passthrough: list[str],
    missing_tokens: list[str],
    not_null: dict[str, str],
) -> Callable[[Any, str, dict[str, Any]], ServedModel]:
    """The ``build`` of a :class:`ModelHolder` for a dataset whose config names these columns:
    a version trained on other feature columns is refused (as ``aeflow score`` refuses it);
    ``not_null`` from :func:`serving.rules.not_null_reasons`."""
    from tasks.contract import model_column_problems

    def build(detector: Any, version: str, entry: dict[str, Any]) -> ServedModel:
        schema = {
            "numeric_columns": list(detector.numeric_columns_),
            "categorical_columns": list(detector.categorical_columns_),
        }
        problems = model_column_problems(numeric, categorical, schema, version)
        if problems:
            raise ValueError(
                "; ".join(problems) + "; serve a model trained on the config's columns"
            )
        contract = InputContract.build(detector, passthrough, not_null, missing_tokens)
        return ServedModel(detector, version, contract, entry)

    return build
