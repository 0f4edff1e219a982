"""Command groups of the `aeflow` CLI; each module defines `register(subparsers)`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def add_config_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The required ``--config FILE`` option every pipeline command takes; returns ``parser``."""
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="pipeline config (.toml or .yaml)"
    )
    return parser


def config_and_storage(config_path: str, writes: Sequence[str] = ()):
    """``(config, storage)`` of a command's ``--config FILE`` (:func:`flows.config.storage_of`),
    the storage checked first (:func:`flows.storage_preflight.check_storage`: the credentials, the
    bucket, and the folders the command writes under, named as the storage layout names them:
    "incoming", "scored", "quarantine", "models", "reports", "feedback")."""
    from flows.config import load_config, storage_of
    from flows.storage_preflight import check_storage

    cfg = load_config(config_path)
    layout = storage_of(cfg)
    check_storage(cfg, layout, writes)
    return cfg, layout
