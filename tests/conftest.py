"""Shared test set-up: quiet, offline, isolated Prefect and GX, and the datasets folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Set before prefect is imported anywhere: a private PREFECT_HOME and no telemetry. A pytest-xdist
# worker inherits its controller's environment: it replaces the controller's home with its own.
if os.environ.get("PREFECT_HOME") in (None, os.environ.get("AEFLOW_TEST_PREFECT_HOME")):
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="aeflow-test-prefect-")
    os.environ["AEFLOW_TEST_PREFECT_HOME"] = os.environ["PREFECT_HOME"]
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Before any test module imports torch: OpenMP's passive wait policy, as aeflow's packages set it.
from models.cpu import configure_openmp  # noqa: E402

configure_openmp()

REPO_ROOT = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path | None:
    """../shared/datasets (or $AEFLOW_DATASETS) when present; tests that need it skip otherwise."""
    candidate = Path(os.environ.get("AEFLOW_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    found = datasets_dir()
    if found is None:
        pytest.skip("../shared/datasets is not present (set AEFLOW_DATASETS to its location)")
    return found


@pytest.fixture(autouse=True)
def _skip_gpu_tests_without_cuda(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device")


@pytest.fixture(scope="session")
def prefect_test_server():
    """One temporary Prefect server (the test harness) for the whole session; the integration and
    reliability tiers start it on first use. Yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()
