"""Command groups of the `aeflow` CLI; each module defines `register(subparsers)`."""

from __future__ import annotations

import argparse


def add_config_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The required ``--config FILE`` option every pipeline command takes; returns ``parser``."""
    parser.add_argument(
        "--config", required=True, metavar="FILE", help="pipeline config (.toml or .yaml)"
    )
    return parser
