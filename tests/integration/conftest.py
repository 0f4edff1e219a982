"""One Prefect test harness (a temporary local server) for the whole integration session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_server(prefect_test_server):
    yield prefect_test_server
