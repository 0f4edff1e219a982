"""The model registry's reads and writes that flows make, as Prefect tasks (so Prefect shows and
retries them): the champion, a version resolved, how long the champion has gone unchallenged, and
where a version's evaluation report is.

The registry itself is :class:`models.registry.ModelRegistry` (no Prefect there); training
registers, the gate promotes or refuses (tasks/training.py, tasks/gate.py).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from models.registry import ModelRegistry
from models.storage_errors import storage_errors
from tasks.drift import champion_challenged_at
from tasks.io import Storage, storage_retry_options


def registry_of(storage: Storage) -> ModelRegistry:
    """The dataset's model registry under ``<root>/models/<dataset>/``."""
    return ModelRegistry(storage.models, storage.options)


@task(name="champion", cache_policy=NO_CACHE, **storage_retry_options())
def champion_task(storage: Storage) -> str | None:
    """The champion's version (None before the first promotion)."""
    with storage_errors(storage.models, "reading the champion"):
        return registry_of(storage).champion()


@task(name="resolve-model-version", cache_policy=NO_CACHE, **storage_retry_options())
def resolve_version_task(storage: Storage, version: str | None) -> str:
    """``version`` checked against the registry, or the champion's when None (RegistryError when
    there is none)."""
    with storage_errors(storage.models, "reading the model registry"):
        return registry_of(storage).resolve(version)


@task(name="champion-challenged-at", cache_policy=NO_CACHE, **storage_retry_options())
def champion_challenged_at_task(storage: Storage, version: str) -> str | None:
    """When the champion ``version`` was last confirmed (ISO time; see
    :func:`tasks.drift.champion_challenged_at`)."""
    with storage_errors(storage.models, "reading the model registry"):
        registry = registry_of(storage)
        return champion_challenged_at(registry.champion_state(), registry.entry(version))


def record_report(*, version: str, run: str, report: dict[str, str], storage: Storage) -> None:
    """Record where training run ``run``'s report of model ``version`` is, in the version's
    registry entry (``report``: the run, the HTML and the metrics.json URLs) so `aeflow models
    show` finds it. ``report`` is what :func:`tasks.report.create_report` returned."""
    with storage_errors(storage.models, f"recording the report of {version}"):
        registry_of(storage).update_entry(
            version, report={"run": run, "html": report["html"], "metrics": report["metrics"]}
        )


record_report_task = task(
    record_report, name="record-report", cache_policy=NO_CACHE, **storage_retry_options()
)
