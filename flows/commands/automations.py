"""`aeflow automations install | list | remove`: the Prefect automations that act on a dataset's
events (infra/automations.yaml, docs/events.md), on the Prefect API of PREFECT_API_URL.

`aeflow serve --automations` installs the same automations next to the deployments it serves;
this command is for deployments made otherwise (infra/prefect.yaml and a work pool).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, TypeVar

from flows.commands import add_config_argument

T = TypeVar("T")


def _checked_dataset(config: str) -> str:
    """The config's dataset, once the config loaded (a bad one fails before the API is asked)
    and the Prefect API answers."""
    from flows.config import load_config
    from flows.prefect_api import require_prefect_api

    dataset = load_config(config).dataset
    require_prefect_api()
    return dataset


def _on_the_api(config: str, action: Callable[[Any, str], T]) -> T:
    """``action(client, dataset)`` with a sync client of the Prefect API (see
    :func:`_checked_dataset`)."""
    from prefect.client.orchestration import get_client

    dataset = _checked_dataset(config)
    with get_client(sync_client=True) as client:
        return action(client, dataset)


def cmd_install(args: argparse.Namespace) -> int:
    from flows.automations import AutomationRequest, install_for_config

    request = AutomationRequest(
        file=args.file, notify=tuple(args.notify), retrain_deployment=args.retrain_deployment
    )
    _checked_dataset(args.config)  # install_for_config opens its own client
    lines = install_for_config(args.config, request)
    print("\n".join(lines))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from flows.automations import installed_automations

    found = _on_the_api(args.config, installed_automations)
    if not found:
        print("no aeflow automations for this dataset (install them: aeflow automations install)")
    for automation in found:
        events = ", ".join(sorted(getattr(automation.trigger, "expect", None) or [])) or "-"
        actions = ", ".join(action.type for action in automation.actions)
        state = "enabled" if automation.enabled else "paused"
        print(f"{automation.name}  [{state}]  on {events} -> {actions}  (id {automation.id})")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from flows.automations import remove_automations

    removed = _on_the_api(args.config, remove_automations)
    print("\n".join(f"removed automation {name!r}" for name in removed) or "nothing to remove")
    return 0


def add_notify_argument(parser: argparse.ArgumentParser) -> None:
    """``--notify BLOCK`` (repeatable): the notification blocks the automations notify."""
    parser.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="BLOCK",
        help="the notification block the automations notify, as BLOCK_TYPE/NAME (e.g. "
        "slack-webhook/ops-alerts, custom-webhook/alerts) or a block id; repeat for several",
    )


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "automations",
        help="install, list or remove the Prefect automations that act on aeflow's events",
        description="The Prefect automations of a dataset (infra/automations.yaml): notify on a "
        "quarantined batch and on a refused challenger, run the retrain deployment on drift a "
        "night did not retrain on. They live on the Prefect API of PREFECT_API_URL "
        "(docs/events.md).",
    )
    commands = group.add_subparsers(dest="automations_command", required=True, metavar="COMMAND")

    install = commands.add_parser(
        "install",
        help="create or update the automations of a dataset",
        description="Create the automations of FILE for the config's dataset, or update those of "
        "the same name (never duplicating them; one paused on the server stays paused), and "
        "remove this dataset's aeflow automations that FILE no longer defines. Automations "
        "that notify are installed only with --notify (without it, those an earlier install put "
        "there stay as they were).",
    )
    add_config_argument(install)
    install.add_argument(
        "--file", metavar="FILE", help="automation definitions (infra/automations.yaml)"
    )
    add_notify_argument(install)
    install.add_argument(
        "--retrain-deployment",
        metavar="FLOW/DEPLOYMENT",
        help="the deployment to run on drift (aeflow-retrain/<dataset>-retrain, as `aeflow serve` "
        "names it; aeflow-retrain/retrain for infra/prefect.yaml)",
    )
    install.set_defaults(handler=cmd_install)

    listing = commands.add_parser("list", help="the automations installed for a dataset")
    add_config_argument(listing)
    listing.set_defaults(handler=cmd_list)

    remove = commands.add_parser("remove", help="delete the automations installed for a dataset")
    add_config_argument(remove)
    remove.set_defaults(handler=cmd_remove)
