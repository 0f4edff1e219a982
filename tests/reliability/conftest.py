"""The fault-injection tier: real storage (local folders, moto's S3 server, a failing fsspec file
system), real `aeflow score` processes, the session's Prefect server."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_api_url(prefect_test_server):
    """The session's Prefect server, whose URL the `aeflow` subprocesses are given."""
    yield prefect_test_server
