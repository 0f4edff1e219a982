"""One `prefect server start` on loopback for every end-to-end test that runs flows.

A user's `aeflow` commands talk to their Prefect server through PREFECT_API_URL; the tests do the
same with one server for the whole session (each start costs 10-30 s on a busy 2-core machine).
Each test keeps its own storage root, so runs on the shared server do not see each other's data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from subprocess_support import prefect_server


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> Iterator[str]:
    """The server's API URL (http://127.0.0.1:PORT/api), its SQLite database in a temp folder."""
    with prefect_server(tmp_path_factory.mktemp("prefect-server"), timeout_s=180) as api:
        yield api
