"""The Prefect automations of one dataset (infra/automations.yaml), filled in and installed.

infra/automations.yaml holds Prefect automation definitions with a few placeholders
(``${dataset}``, ``${config}``, ``${retrain_deployment_id}``, ``${notification_block_id}``).
:func:`render_automations` fills them in for a config and validates each automation with
Prefect's own model; :func:`install_automations` puts them on the Prefect API by name: an
automation of the same name is updated (never duplicated), and this dataset's aeflow automations
that the file no longer defines are removed. `aeflow serve --automations` and
`aeflow automations install` call them (docs/events.md).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_]+)\}")
NOTIFICATION_BLOCK = "notification_block_id"
RETRAIN_DEPLOYMENT = "retrain_deployment_id"
AUTOMATIONS_TAG = "aeflow"


def dataset_tag(dataset: str) -> str:
    """The tag that marks the automations installed for ``dataset``."""
    return f"aeflow.dataset.{dataset}"


def default_automations_file() -> Path:
    """infra/automations.yaml: under $AEFLOW_HOME when set (the Docker image), else in the
    checkout this package runs from."""
    home = os.environ.get("AEFLOW_HOME")
    root = Path(home) if home else Path(__file__).resolve().parents[1]
    return root / "infra" / "automations.yaml"


@dataclass(frozen=True)
class AutomationTargets:
    """What the placeholders of the automation definitions stand for: the ``dataset``, the
    ``config`` file's absolute path, the retrain deployment's id (None: automations that run it
    are left out) and the notification blocks' ids (none: automations that notify are left out)."""

    dataset: str
    config: str
    retrain_deployment_id: UUID | None = None
    notification_block_ids: tuple[UUID, ...] = ()


@dataclass(frozen=True)
class RenderedAutomations:
    """The automations ready to install, and the names of those left out, each with the reason."""

    automations: list[Any]  # prefect.events.schemas.automations.AutomationCore
    left_out: list[tuple[str, str]]


def load_definitions(path: str | Path) -> list[dict[str, Any]]:
    """The automation definitions of a YAML file: a list, or a mapping with ``automations``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no automation definitions at {path}; pass --automations FILE (the repository ships "
            "infra/automations.yaml) or set AEFLOW_HOME to the folder that holds infra/"
        )
    data = yaml.safe_load(path.read_text())
    found = data.get("automations") if isinstance(data, dict) else data
    if not isinstance(found, list) or not all(isinstance(a, dict) for a in found):
        raise ValueError(
            f"{path} must hold a list of automations (or a mapping with an `automations` list), "
            "as `prefect automation create --from-file` reads it"
        )
    return found


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(_placeholders(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_placeholders(v) for v in value))
    return set()


def _fill(value: Any, values: dict[str, str]) -> Any:
    """``value`` with the placeholders named in ``values`` filled in (others left as they are)."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def _with_blocks(actions: list[dict[str, Any]], blocks: tuple[UUID, ...]) -> list[dict[str, Any]]:
    """Each action that names ``${notification_block_id}`` once per block (none: left out)."""
    expanded = []
    for action in actions:
        if NOTIFICATION_BLOCK not in _placeholders(action):
            expanded.append(action)
            continue
        for block in blocks:
            expanded.append(_fill(action, {NOTIFICATION_BLOCK: str(block)}))
    return expanded


def render_automations(
    definitions: list[dict[str, Any]], targets: AutomationTargets, source: str = "the definitions"
) -> RenderedAutomations:
    """Fill in the placeholders of ``definitions`` for ``targets`` and validate each automation
    (Prefect's AutomationCore). An automation whose actions need a notification block or the
    retrain deployment that ``targets`` lack is left out, with the reason. Every automation gets
    the tags ``aeflow`` and :func:`dataset_tag`.

    Raises:
        ValueError: an unknown placeholder, or a definition Prefect does not accept (naming the
            automation and ``source``).
    """
    from prefect.events.schemas.automations import AutomationCore

    values = {
        "dataset": targets.dataset,
        "config": targets.config,
        RETRAIN_DEPLOYMENT: str(targets.retrain_deployment_id or ""),
    }
    rendered, left_out = [], []
    for index, definition in enumerate(definitions):
        name = str(_fill(definition.get("name", f"automation {index + 1}"), values))
        unknown = _placeholders(definition) - set(values) - {NOTIFICATION_BLOCK}
        if unknown:
            raise ValueError(
                f"{source}: automation {name!r} uses the unknown placeholder(s) "
                f"{', '.join(sorted('${' + u + '}' for u in unknown))}; known: "
                "${dataset}, ${config}, ${retrain_deployment_id}, ${notification_block_id}"
            )
        definition = copy.deepcopy(definition)
        actions = definition.get("actions") or []
        if RETRAIN_DEPLOYMENT in _placeholders(actions) and targets.retrain_deployment_id is None:
            left_out.append((name, "no retrain deployment to run"))
            continue
        definition["actions"] = _with_blocks(actions, targets.notification_block_ids)
        if actions and not definition["actions"]:
            left_out.append((name, "needs a notification block (--notify BLOCK)"))
            continue
        tags = [*definition.get("tags", []), AUTOMATIONS_TAG, dataset_tag(targets.dataset)]
        definition["tags"] = list(dict.fromkeys(tags))
        try:
            rendered.append(AutomationCore.model_validate(_fill(definition, values)))
        except ValueError as exc:
            raise ValueError(f"{source}: automation {name!r} is not valid: {exc}") from None
    return RenderedAutomations(rendered, left_out)


# ------------------------------------------------------------------------ the Prefect API
def resolve_block(client: Any, reference: str) -> UUID:
    """The id of the notification block ``reference`` names: ``<block-type-slug>/<name>`` (as
    `prefect block ls` shows it, e.g. ``slack-webhook/ops-alerts``) or a block document id."""
    from prefect.exceptions import ObjectNotFound

    try:
        return UUID(reference)
    except ValueError:
        pass
    slug, _, name = reference.partition("/")
    if not slug or not name:
        raise ValueError(
            f"--notify takes a block as BLOCK_TYPE/NAME (e.g. slack-webhook/ops-alerts, "
            f"custom-webhook/alerts) or a block id, got {reference!r}"
        )
    try:
        document = client.read_block_document_by_name(
            name=name, block_type_slug=slug, include_secrets=False
        )
    except ObjectNotFound:
        raise ValueError(
            f"no block {reference!r} on the Prefect API; create it first (docs/events.md: "
            "notification blocks) and list them with `prefect block ls`"
        ) from None
    capabilities = document.block_schema.capabilities if document.block_schema else []
    if "notify" not in capabilities:
        raise ValueError(
            f"block {reference!r} cannot send notifications (its capabilities: "
            f"{', '.join(capabilities) or 'none'}); use a notification block such as "
            "slack-webhook, custom-webhook, ms-teams-webhook or sendgrid-email"
        )
    return document.id


def resolve_deployment(client: Any, name: str) -> UUID:
    """The id of deployment ``flow/deployment`` (e.g. ``aeflow-retrain/demo-retrain``)."""
    from prefect.exceptions import ObjectNotFound

    if name.count("/") != 1 or name.startswith("/") or name.endswith("/"):
        raise ValueError(
            f"--retrain-deployment takes FLOW/DEPLOYMENT (e.g. aeflow-retrain/demo-retrain), got "
            f"{name!r}"
        )
    try:
        return client.read_deployment_by_name(name).id
    except ObjectNotFound:
        raise ValueError(
            f"no deployment {name!r} on the Prefect API; `aeflow serve --config FILE` creates "
            "aeflow-retrain/<dataset>-retrain, infra/prefect.yaml creates aeflow-retrain/retrain "
            "(pass it with --retrain-deployment)"
        ) from None


def install_automations(
    client: Any, dataset: str, automations: list[Any], keep: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """Create or update ``automations`` by name with the sync Prefect ``client`` and remove the
    automations tagged for ``dataset`` that are neither among them nor named in ``keep`` (those
    left out of this install, e.g. for want of a notification block, stay as an earlier install
    put them), and duplicates of a name; returns (name, "created" | "updated" | "removed") for
    each change. An update keeps whether the automation is enabled (one paused on the server
    stays paused)."""
    done = []
    wanted = {a.name for a in automations} | set(keep)
    for automation in automations:
        same_name = client.read_automations_by_name(automation.name)
        if same_name:
            # A pause set on the server (maintenance, a noisy week) survives a re-install.
            kept = automation.model_copy(update={"enabled": same_name[0].enabled})
            client.update_automation(same_name[0].id, kept)
            done.append((automation.name, "updated"))
            for duplicate in same_name[1:]:
                client.delete_automation(duplicate.id)
                done.append((automation.name, "removed"))
        else:
            client.create_automation(automation)
            done.append((automation.name, "created"))
    for stale in installed_automations(client, dataset):
        if stale.name not in wanted:
            client.delete_automation(stale.id)
            done.append((stale.name, "removed"))
    return done


@dataclass(frozen=True)
class AutomationRequest:
    """What `aeflow serve --automations` / `aeflow automations install` were asked to install:
    the definitions ``file``, the ``notify`` block references, and the retrain deployment (its
    id when known, else its ``flow/deployment`` name)."""

    file: str | None = None
    notify: tuple[str, ...] = ()
    retrain_deployment: str | UUID | None = None


def install_for_config(config: str, request: AutomationRequest) -> list[str]:
    """Install the automations of ``request`` for the pipeline ``config`` on the Prefect API
    (PREFECT_API_URL); returns one line per change or left-out automation, for people."""
    from prefect.client.orchestration import get_client

    from flows.config import load_config

    path = str(Path(config).resolve())
    dataset = load_config(path).dataset
    source = request.file or default_automations_file()
    definitions = load_definitions(source)
    retrain = request.retrain_deployment or f"aeflow-retrain/{dataset}-retrain"
    with get_client(sync_client=True) as client:
        blocks = tuple(resolve_block(client, ref) for ref in request.notify)
        retrain_id = retrain if isinstance(retrain, UUID) else resolve_deployment(client, retrain)
        targets = AutomationTargets(dataset, path, retrain_id, blocks)
        rendered = render_automations(definitions, targets, str(source))
        left_out = [name for name, _ in rendered.left_out]
        changes = install_automations(client, dataset, rendered.automations, keep=left_out)
    lines = [f"automation {name!r}: {change}" for name, change in changes]
    lines += [
        f"automation {name!r}: not installed (an earlier install, if any, is left as it was), {why}"
        for name, why in rendered.left_out
    ]
    return lines


def installed_automations(client: Any, dataset: str) -> list[Any]:
    """The automations installed for ``dataset`` (tagged :func:`dataset_tag`), by name."""
    from prefect.events.filters import AutomationFilter, AutomationFilterTags

    found = client.read_automations(
        automations=AutomationFilter(tags=AutomationFilterTags(all_=[dataset_tag(dataset)]))
    )
    return sorted(found, key=lambda a: a.name)


def remove_automations(client: Any, dataset: str) -> list[str]:
    """Delete the automations installed for ``dataset``; returns their names."""
    removed = []
    for automation in installed_automations(client, dataset):
        client.delete_automation(automation.id)
        removed.append(automation.name)
    return removed
