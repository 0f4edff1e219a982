"""The CPU budget torch's threads are sized from: affinity, cgroup quota, busy neighbours, the
explicit setting, and what the trainer does with it (issue 12, defect 9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import models.cpu as cpu
from models import AutoencoderDetector
from models.cpu import CpuBudget, cgroup_cpu_limit, idle_cpus

CPUS = len(os.sched_getaffinity(0))
# Settings that fix thread counts (a Dask nanny puts the last three into its parent's environment).
THREAD_SETTINGS = (
    "AEFLOW_TORCH_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)
needs_two_cpus = pytest.mark.skipif(CPUS < 2, reason="needs a process allowed on 2 CPUs or more")


def fake_proc(tmp_path: Path, cgroup: str, mounts: list[str]) -> Path:
    """A /proc/self stand-in: ``cgroup`` and ``mountinfo`` files written under ``tmp_path``."""
    proc = tmp_path / "proc-self"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text("\n".join(mounts) + "\n")
    return proc


def write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text + "\n")


def v2_mount(mount_point: Path, root: str = "/") -> str:
    return f"30 23 0:26 {root} {mount_point} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"


def v1_cpu_mount(mount_point: Path, root: str = "/") -> str:
    return f"32 31 0:29 {root} {mount_point} rw,relatime - cgroup cgroup rw,cpu,cpuacct"


# -------------------------------------------------------------------------------- cgroup files
def test_cgroup_v2_quota_of_the_process_cgroup_or_a_parent_whichever_is_smaller(tmp_path):
    mount = tmp_path / "sys" / "fs" / "cgroup"
    write(mount / "kubepods", cpu_max="400000 100000")
    write(mount / "kubepods" / "pod1", cpu_max="150000 100000")  # 1.5 CPUs, the tightest
    write(mount / "kubepods" / "pod1" / "app", cpu_max="max 100000")
    proc = fake_proc(tmp_path, "0::/kubepods/pod1/app\n", [v2_mount(mount)])
    assert cgroup_cpu_limit(proc) == pytest.approx(1.5)
    assert CpuBudget(affinity=8, quota=1.5, omp_num_threads=None).cpus == 2  # rounded up

    write(mount / "kubepods" / "pod1" / "app", cpu_max="50000 100000")
    assert cgroup_cpu_limit(proc) == pytest.approx(0.5)
    assert CpuBudget(affinity=8, quota=0.5, omp_num_threads=None).cpus == 1


def test_cgroup_v1_quota_and_period_and_no_quota(tmp_path):
    mount = tmp_path / "cgroup" / "cpu,cpuacct"
    write(mount / "docker" / "abc", cpu_cfs_quota_us="200000", cpu_cfs_period_us="100000")
    write(mount / "docker", cpu_cfs_quota_us="-1", cpu_cfs_period_us="100000")
    cgroup = "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n"
    proc = fake_proc(tmp_path, cgroup, [v1_cpu_mount(mount)])
    assert cgroup_cpu_limit(proc) == pytest.approx(2.0)

    write(mount / "docker" / "abc", cpu_cfs_quota_us="-1", cpu_cfs_period_us="100000")
    assert cgroup_cpu_limit(proc) is None


def test_a_container_sees_its_own_cgroup_mounted_as_the_root(tmp_path):
    # Inside a container the mount's root is the container's cgroup; /proc/self/cgroup may show
    # the host's path for it (no cgroup namespace): the quota is read at the mount point.
    mount = tmp_path / "sys fs cgroup"  # a space, escaped as \040 in mountinfo
    write(mount, cpu_max="100000 100000")
    escaped = str(mount).replace(" ", "\\040")
    proc = fake_proc(
        tmp_path, "0::/system.slice/docker-1.scope\n", [v2_mount(escaped, "/docker-1.scope")]
    )
    assert cgroup_cpu_limit(proc) == pytest.approx(1.0)


def test_hybrid_hierarchy_takes_the_v1_cpu_quota_and_missing_files_mean_no_quota(tmp_path):
    v1, v2 = tmp_path / "cgroup" / "cpu", tmp_path / "cgroup" / "unified"
    write(v1, cpu_cfs_quota_us="300000", cpu_cfs_period_us="100000")
    v2.mkdir(parents=True)  # the v2 hierarchy holds no cpu controller: no cpu.max file
    proc = fake_proc(tmp_path, "1:cpu:/\n0::/\n", [v1_cpu_mount(v1), v2_mount(v2)])
    assert cgroup_cpu_limit(proc) == pytest.approx(3.0)
    assert cgroup_cpu_limit(tmp_path / "no-such-proc") is None


def test_omp_num_threads_the_process_started_with_caps_the_budget(monkeypatch):
    monkeypatch.setattr(cpu, "OMP_NUM_THREADS_AT_START", "1,1")
    assert cpu.cpu_budget().cpus == 1
    monkeypatch.setattr(cpu, "OMP_NUM_THREADS_AT_START", "not a number")  # OpenMP ignores it too
    assert cpu.cpu_budget().omp_num_threads is None
    # Set later (a Dask nanny does, for its workers): not this process's own setting.
    monkeypatch.setattr(cpu, "OMP_NUM_THREADS_AT_START", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu.cpu_budget().omp_num_threads is None


# ------------------------------------------------------------------------------------ affinity
@pytest.mark.slow
@needs_two_cpus
def test_the_real_affinity_mask_limits_the_budget_and_the_training_threads(tmp_path):
    # torch's pool is sized for 2 CPUs before the mask shrinks to one, as in a worker that an
    # operator pins with `taskset -p` while it runs.
    script = textwrap.dedent(
        """
        import json, os, numpy as np, torch
        from models import AutoencoderDetector
        from models.cpu import cpu_budget
        torch.set_num_threads(2)
        before = torch.get_num_threads()
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        seen = []
        X = np.random.default_rng(0).normal(size=(1200, 20)).astype(np.float32)
        AutoencoderDetector(hidden_sizes=(256, 64), latent_dim=4, epochs=2, batch_size=512,
                            device="cpu").fit(X, progress=lambda *a: seen.append(torch.get_num_threads()))
        print(json.dumps({"before": before, "budget": cpu_budget().cpus, "seen": seen}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in THREAD_SETTINGS}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["before"] == 2
    assert result["budget"] == 1
    assert result["seen"] and set(result["seen"]) == {1}


# --------------------------------------------------------------------------------------- load
@pytest.mark.parametrize(
    ("affinity", "quota", "neighbours", "online", "expected"),
    [
        (2, None, 0, 2, 2),  # quiet: every CPU
        (2, None, 1, 2, 1),  # one busy neighbour on 2 CPUs leaves one
        (2, None, 2, 2, 1),  # as many busy neighbours as CPUs: one thread, never zero
        (2, None, 9, 2, 1),
        (64, 2.0, 60, 64, 2),  # a quota of 2 on a big host with 4 CPUs idle: the quota
        (64, None, 60, 64, 4),  # no quota: the idle CPUs
        (2, None, 64, 64, 1),  # pinned to 2 of 64 busy CPUs: their share of the load
        (2, None, 8, 64, 2),
    ],
)
def test_busy_neighbours_leave_fewer_usable_cpus(affinity, quota, neighbours, online, expected):
    budget = CpuBudget(affinity=affinity, quota=quota, omp_num_threads=None)
    assert idle_cpus(budget, neighbours, online) == expected


def test_neighbours_are_other_processes_runnable_tasks(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "_load_cache", None)
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("3.10 2.50 1.20 5/300 12345\n")
    proc = tmp_path / "self"
    for tid, state in ((1, "R"), (2, "S"), (3, "D")):
        write(proc / "task" / str(tid), stat=f"{tid} (a (t) R) {state} 1 2 3")
    # 5 runnable on the machine, 1 of them ours (the ')' in the name is not the state's)
    assert cpu.busy_neighbours(proc, loadavg) == 4
    loadavg.write_text("1.00 1.00 1.00 1/300 12345\n")
    assert cpu.busy_neighbours(proc, loadavg) == 4  # reused for a second
    monkeypatch.setattr(cpu, "_load_cache", None)
    assert cpu.busy_neighbours(proc, loadavg) == 0


def burners(count: int) -> list[subprocess.Popen]:
    """``count`` processes that keep a CPU busy each until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


@needs_two_cpus
@pytest.mark.skipif((os.cpu_count() or 1) > 8, reason="burns every CPU of the machine")
def test_training_runs_one_thread_beside_as_many_busy_neighbours_as_cpus(monkeypatch):
    monkeypatch.setattr(cpu, "_load_cache", None)
    monkeypatch.delenv("AEFLOW_TORCH_THREADS", raising=False)
    busy = burners(os.cpu_count() or 1)
    try:
        time.sleep(0.5)  # let them start
        seen, _ = fit_threads()
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert seen and set(seen) == {1}


# ---------------------------------------------------------------------------------- the trainer
def fit_threads(seed: int = 0) -> tuple[list[int], np.ndarray]:
    """Fit a detector whose training steps are big enough for several threads; torch's thread
    count seen by the trainer's progress callback after each epoch, and the fitted scores."""
    seen: list[int] = []
    X = np.random.default_rng(seed).normal(size=(1200, 20)).astype(np.float32)
    detector = AutoencoderDetector(
        hidden_sizes=(256, 64), latent_dim=4, epochs=2, batch_size=512, device="cpu"
    ).fit(X, progress=lambda *_: seen.append(torch.get_num_threads()))
    return seen, detector.decision_function(X)


@needs_two_cpus
def test_training_follows_the_cgroup_quota_and_restores_the_callers_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("AEFLOW_TORCH_THREADS", raising=False)
    monkeypatch.setattr(cpu, "OMP_NUM_THREADS_AT_START", None)
    monkeypatch.setattr(cpu, "busy_neighbours", lambda: 0.0)
    mount = tmp_path / "cgroup"
    write(mount, cpu_max="100000 100000")  # one CPU
    monkeypatch.setattr(cpu, "CGROUP_PROC", fake_proc(tmp_path, "0::/\n", [v2_mount(mount)]))
    before = torch.get_num_threads()
    assert set(fit_threads()[0]) == {1}
    assert torch.get_num_threads() == before

    write(mount, cpu_max="max 100000")  # no quota: every CPU of the affinity mask
    assert set(fit_threads()[0]) == {CPUS}


def test_an_explicit_thread_count_wins_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.setattr(cpu, "busy_neighbours", lambda: 99.0)
    monkeypatch.setenv("AEFLOW_TORCH_THREADS", "3")
    assert set(fit_threads()[0]) == {3}
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv("AEFLOW_TORCH_THREADS", bad)
        with pytest.raises(ValueError, match=rf"AEFLOW_TORCH_THREADS .* got '{bad}'"):
            fit_threads()


def test_the_thread_count_does_not_change_the_model(monkeypatch):
    # Threads follow the machine's load, so the same data and seed must give the same model
    # whatever the count.
    scores = []
    for threads in ("1", "2"):
        monkeypatch.setenv("AEFLOW_TORCH_THREADS", threads)
        seen, fitted = fit_threads(seed=1)
        assert set(seen) == {int(threads)}
        scores.append(fitted)
    np.testing.assert_array_equal(scores[0], scores[1])


# ------------------------------------------------------------------------------------ OpenMP
@pytest.mark.slow
def test_openmp_is_told_to_spin_briefly_then_sleep_before_torch_loads_it():
    env = {k: v for k, v in os.environ.items() if k not in cpu.OPENMP_DEFAULTS}
    # The policy OpenMP sees is the environment when torch is first imported: record it then.
    # `import tasks.evaluate` imports torch before any `models` module of its own.
    script = textwrap.dedent(
        """
        import os, sys
        class RecordPolicyAtTorchImport:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" and not hasattr(sys, "policy_at_torch_import"):
                    sys.policy_at_torch_import = (
                        os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT")
                    )
        sys.meta_path.insert(0, RecordPolicyAtTorchImport())
        import tasks.evaluate
        print(*sys.policy_at_torch_import)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "PASSIVE 10000"


def test_a_wait_policy_set_by_the_user_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cpu.configure_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
