"""Prefect artifacts and run logs from task code that also runs outside Prefect.

Validation, quarantine, reports and run summaries publish Markdown artifacts and log lines when
they run as Prefect tasks, and stay silent (the files they write are the record) when they are
called as plain functions, from the CLI or a notebook.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger("tasks")

_NOT_IN_KEY = re.compile(r"[^a-z0-9-]+")


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only) naming ``parts``, e.g.
    ``artifact_key("demo", "score-summary")`` or ``artifact_key("validation", batch_id)``: each
    part lowercased, each run of other characters a dash, leading and trailing dashes dropped,
    the parts joined by dashes (a part with nothing left is left out)."""
    cleaned = (_NOT_IN_KEY.sub("-", part.lower()).strip("-") for part in parts)
    return "-".join(part for part in cleaned if part)


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a flow or task run, else this package's logger."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logger


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A Markdown artifact under ``key``, when called inside a flow or task run; else nothing."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return  # called outside Prefect (plain function use): the report files are the record
    create_markdown_artifact(markdown=markdown, key=key, description=description)
