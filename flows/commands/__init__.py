"""Command groups of the `aeflow` CLI; each module defines `register(subparsers)`."""

from __future__ import annotations

import argparse


def add_config_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The required ``--config FILE`` option every pipeline command takes; returns ``parser``."""
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="pipeline config (.toml or .yaml)"
    )
    return parser


def config_and_storage(config_path: str):
    """``(config, storage)`` of a command's ``--config FILE`` (:func:`flows.config.storage_of`)."""
    from flows.config import load_config, storage_of

    cfg = load_config(config_path)
    return cfg, storage_of(cfg)
