"""Training the same model twice registers it once: an identical bundle reuses its version."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models import AutoencoderDetector
from models.bundle_identity import content_digest
from tasks.gate import apply_gate, gate_decision
from tasks.io import Storage
from tasks.settings import EvaluationSettings
from tasks.training import fit_detector, register_detector

FRAME = pd.DataFrame(
    {
        "a": np.random.default_rng(0).normal(size=300),
        "b": np.random.default_rng(1).choice(["x", "y", "z"], 300),
    }
)
PARAMS = {"hidden_sizes": (8,), "latent_dim": 2, "epochs": 2, "device": "cpu"}


def saved(tmp_path, name: str, seed: int) -> str:
    detector = AutoencoderDetector(**PARAMS, random_state=seed).fit(FRAME)
    folder = tmp_path / name
    detector.save(folder)
    return str(folder)


def test_the_content_digest_ignores_run_records_and_skops_object_ids(tmp_path):
    first, again, other = saved(tmp_path, "a", 0), saved(tmp_path, "b", 0), saved(tmp_path, "c", 1)
    # the bytes differ (fit times, skops object ids), the model does not
    assert (tmp_path / "a" / "metrics.json").read_bytes() != (
        tmp_path / "b" / "metrics.json"
    ).read_bytes()
    assert content_digest(first) == content_digest(again)
    assert content_digest(first) != content_digest(other)


def test_a_reproduced_model_reuses_its_version_and_stays_champion(tmp_path):
    storage = Storage(str(tmp_path), "demo")

    def fit(seed: int):
        params = {**PARAMS, "random_state": seed}
        detector, metrics = fit_detector(FRAME, None, detector_params=params)
        return register_detector(
            detector,
            metrics,
            detector_params=params,
            training_batches=["2026-01-01"],
            storage=storage,
        )

    first = fit(0)
    assert first.reused is False
    registry = storage.registry()
    registry.promote(first.version, "first")
    again = fit(0)
    assert (again.version, again.reused) == (first.version, True)
    assert [e["version"] for e in registry.versions()] == [first.version]
    other = fit(5)
    assert other.reused is False and len(registry.versions()) == 2

    decision = gate_decision(
        {}, None, evaluation=EvaluationSettings(), identical_champion=first.version
    )
    assert decision.decision == "promote"
    assert f"identical to the champion {first.version}" in decision.reasons[0]
    history = len(registry.champion_state()["history"])
    record = apply_gate(version=first.version, decision=decision, storage=storage)
    assert record.champion_after == first.version and record.promoted is False
    assert len(registry.champion_state()["history"]) == history  # no promote event of itself
