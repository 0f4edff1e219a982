"""How many CPU threads torch may use in this process, on a machine it may share.

torch sizes its intra-op pool from the CPUs it sees (or OMP_NUM_THREADS), ignores a container's CPU
quota and the machine's current load, and its OpenMP workers spin while they wait for work. On a
worker shared with busy neighbours that turns a 2-thread fit into a 4-10x slowdown, where a fair
share would be about 2x (docs/benchmarks/contention.md). This module:

- asks OpenMP to sleep rather than spin for long between parallel regions (:func:`configure_openmp`,
  run when the ``models``, ``tasks`` or ``flows`` package is imported, before torch loads OpenMP);
- measures the CPUs this process may use: its scheduler affinity and its cgroup's CPU quota
  (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), capped by
  OMP_NUM_THREADS when the process started with it (:func:`cpu_budget`);
- leaves out the CPUs that other processes' runnable tasks keep busy right now
  (:func:`busy_neighbours`, :func:`usable_cpus`), so a shared worker runs fewer threads instead of
  more threads that wait for one another;
- lets a person fix the count: ``AEFLOW_TORCH_THREADS`` (:func:`explicit_torch_threads`).

No torch import at module level: the packages import this before torch is loaded.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

THREADS_ENV = "AEFLOW_TORCH_THREADS"
# OpenMP reads these once, when its library is loaded (at `import torch`). PASSIVE makes idle
# workers sleep instead of spinning for ~3 ms (GNU libgomp, which torch's CPU wheels use), but
# sleeping after every parallel region made a quiet 2-thread fit 1.5x slower (17.5 -> 26.5 s,
# docs/benchmarks/contention.md): GOMP_SPINCOUNT keeps a short spin (~0.1 ms) before sleeping, which
# measured as fast as spinning when alone and still yields the CPU to busy neighbours.
# KMP_BLOCKTIME does the same for Intel's libiomp5 (torch builds linked against MKL), in ms.
SPIN_BEFORE_SLEEP = 10_000  # libgomp spin iterations, about 0.1 ms
OPENMP_DEFAULTS = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "GOMP_SPINCOUNT": str(SPIN_BEFORE_SLEEP),
    "KMP_BLOCKTIME": "0",
}

# Where this process's cgroup membership and mounts are read (tests point it at written files).
CGROUP_PROC = Path("/proc/self")
PROC_SELF = Path("/proc/self")
LOADAVG = Path("/proc/loadavg")
# Runnable-task samples taken by :func:`busy_neighbours`, and how long a measurement is reused
# (concurrent batches starting together share one).
LOAD_SAMPLES = 5
LOAD_SAMPLE_GAP_S = 0.002
LOAD_CACHE_S = 1.0


def configure_openmp() -> None:
    """Set OpenMP's wait settings (:data:`OPENMP_DEFAULTS`) for this process, each one unless the
    environment already sets it.

    Must run before torch is first imported: OpenMP reads its environment only when it is loaded.
    Runs when ``models``, ``tasks`` or ``flows`` is imported; code that imports torch first keeps
    OpenMP's spinning default (set OMP_WAIT_POLICY=PASSIVE in its environment instead).
    """
    for name, value in OPENMP_DEFAULTS.items():
        os.environ.setdefault(name, value)


# ------------------------------------------------------------------------------------- budget
def affinity_cpus() -> int:
    """CPUs this process may be scheduled on (its affinity mask; all CPUs where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _unescape(field: str) -> str:
    """A mountinfo path field: spaces, tabs, newlines and backslashes are written as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


@dataclass(frozen=True)
class _CgroupMount:
    version: int  # 1 or 2
    root: str  # the part of the hierarchy mounted here
    mount_point: Path


def _cpu_mounts(mountinfo: str) -> list[_CgroupMount]:
    """The cgroup v1 hierarchies holding the cpu controller and the cgroup v2 hierarchy."""
    mounts = []
    for line in mountinfo.splitlines():
        before, separator, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not separator or len(fields) < 5 or len(tail) < 3:
            continue
        fstype, super_options = tail[0], tail[2].split(",")
        root, mount_point = _unescape(fields[3]), Path(_unescape(fields[4]))
        if fstype == "cgroup2":
            mounts.append(_CgroupMount(2, root, mount_point))
        elif fstype == "cgroup" and "cpu" in super_options:
            mounts.append(_CgroupMount(1, root, mount_point))
    return mounts


def _process_cgroups(cgroup: str) -> dict[int, str]:
    """``{1: path in the v1 cpu hierarchy, 2: path in the v2 hierarchy}`` from /proc/<pid>/cgroup."""
    paths = {}
    for line in cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            paths[2] = path
        elif "cpu" in controllers.split(","):
            paths[1] = path
    return paths


def _read_limit(folder: Path, version: int) -> float | None:
    """CPUs the quota in one cgroup folder allows; None without a quota or a readable file."""
    try:
        if version == 2:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            if quota == "max":
                return None
        else:
            quota = (folder / "cpu.cfs_quota_us").read_text().strip()
            period = (folder / "cpu.cfs_period_us").read_text().strip()
        quota_us, period_us = int(quota), int(period)
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def cgroup_cpu_limit(proc_self: Path | str | None = None) -> float | None:
    """CPUs (fractional) that this process's cgroup CPU quota allows; None when there is none.

    Reads ``<proc_self>/cgroup`` and ``<proc_self>/mountinfo`` (``proc_self``: :data:`CGROUP_PROC`
    by default) to find the process's cgroup folder in
    the v1 cpu hierarchy and in the v2 hierarchy, then the quota of that folder and of each parent
    up to the mount (a parent's quota limits its children): the smallest one wins.
    """
    proc_self = Path(CGROUP_PROC if proc_self is None else proc_self)
    try:
        cgroups = _process_cgroups((proc_self / "cgroup").read_text())
        mounts = _cpu_mounts((proc_self / "mountinfo").read_text())
    except OSError:  # not Linux, or no /proc
        return None
    limits = []
    for mount in mounts:
        path = cgroups.get(mount.version)
        if path is None:
            continue
        root = mount.root.rstrip("/")
        # The process's cgroup below the mounted part of the hierarchy; the mount point itself
        # when it is outside it (a container sees its own cgroup mounted as the root).
        inside = path == root or path.startswith(root + "/") or root == ""
        relative = path[len(root) :].strip("/") if inside else ""
        folder = mount.mount_point / relative if relative else mount.mount_point
        while True:
            limit = _read_limit(folder, mount.version)
            if limit is not None:
                limits.append(limit)
            if folder == mount.mount_point or mount.mount_point not in folder.parents:
                break
            folder = folder.parent
    return min(limits) if limits else None


# OMP_NUM_THREADS as this process was started with it: what a person asked for. Libraries change it
# later for their own children (a Dask nanny sets it to 1 in its parent's environment before it
# spawns a worker), and that must not shrink this process's own threads.
OMP_NUM_THREADS_AT_START = os.environ.get("OMP_NUM_THREADS")


def _omp_num_threads() -> int | None:
    """OMP_NUM_THREADS's first level (as the process started) when it is a positive whole
    number, OpenMP's own rule; None otherwise."""
    value = (OMP_NUM_THREADS_AT_START or "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


@dataclass(frozen=True)
class CpuBudget:
    """The CPUs this process may use, and where the limit comes from.

    Attributes:
        affinity: CPUs in the process's affinity mask.
        quota: CPUs the cgroup quota allows (fractional), None without a quota.
        omp_num_threads: OMP_NUM_THREADS when set, None otherwise.
        cpus: whole CPUs: the smallest of the three (a fractional quota rounded up), at least 1.
    """

    affinity: int
    quota: float | None
    omp_num_threads: int | None

    @property
    def cpus(self) -> int:
        limits = [self.affinity]
        if self.quota is not None:
            limits.append(math.ceil(self.quota - 1e-9))
        if self.omp_num_threads is not None:
            limits.append(self.omp_num_threads)
        return max(1, min(limits))


def cpu_budget() -> CpuBudget:
    """The CPUs this process may use now: affinity, cgroup quota and OMP_NUM_THREADS."""
    return CpuBudget(affinity_cpus(), cgroup_cpu_limit(), _omp_num_threads())


# --------------------------------------------------------------------------------------- load
def _runnable_machine_wide(loadavg: Path) -> int:
    """Runnable (running or queued) tasks on the machine now: /proc/loadavg's ``R/T`` field."""
    return int(loadavg.read_text().split()[3].split("/")[0])


def _runnable_here(proc_self: Path) -> int:
    """This process's threads that are running or queued now."""
    running = 0
    for stat in (proc_self / "task").glob("*/stat"):
        with contextlib.suppress(OSError):
            # "tid (comm) S ...": the state follows the last ')' (comm may hold spaces or ')').
            running += stat.read_text().rpartition(")")[2].split()[0] == "R"
    return running


_load_lock = threading.Lock()
_load_cache: tuple[float, float] | None = None  # (monotonic time, neighbours)


def busy_neighbours(proc_self: Path | str = PROC_SELF, loadavg: Path | str = LOADAVG) -> float:
    """Runnable tasks of other processes on this machine now: the median of a few samples over
    about 10 ms, reused for a second. 0 where /proc is not available."""
    global _load_cache
    with _load_lock:
        now = time.monotonic()
        if _load_cache is not None and now - _load_cache[0] < LOAD_CACHE_S:
            return _load_cache[1]
        samples = []
        try:
            for sample in range(LOAD_SAMPLES):
                if sample:
                    time.sleep(LOAD_SAMPLE_GAP_S)
                total = _runnable_machine_wide(Path(loadavg))
                samples.append(max(0, total - _runnable_here(Path(proc_self))))
        except (OSError, ValueError, IndexError):
            samples = samples or [0]
        neighbours = float(sorted(samples)[len(samples) // 2])
        _load_cache = (now, neighbours)
        return neighbours


def idle_cpus(budget: CpuBudget, neighbours: float, online_cpus: int) -> int:
    """CPUs of ``budget`` that ``neighbours`` runnable tasks leave idle, at least 1.

    The neighbours are counted over the whole machine (``online_cpus``); the share expected on this
    process's CPUs is ``neighbours * affinity / online_cpus``. A neighbour that keeps a CPU busy
    costs this process that CPU: more threads than idle CPUs only wait for one another.
    """
    on_ours = neighbours * budget.affinity / max(online_cpus, budget.affinity)
    return max(1, min(budget.cpus, math.floor(budget.affinity - on_ours + 0.5)))


def usable_cpus() -> int:
    """CPUs this process can use well right now: its :func:`cpu_budget` less what busy
    neighbours occupy (:func:`idle_cpus`), at least 1."""
    budget = cpu_budget()
    return idle_cpus(budget, busy_neighbours(), os.cpu_count() or budget.affinity)


# ------------------------------------------------------------------------------------ threads
def explicit_torch_threads() -> int | None:
    """``AEFLOW_TORCH_THREADS`` as a thread count, None when unset or empty.

    Raises:
        ValueError: the value is not a positive whole number.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"{THREADS_ENV} must be a positive whole number of torch threads, got {value!r}; "
            f"set e.g. {THREADS_ENV}=2, or unset it to size threads from the CPUs this process "
            "may use and the machine's load"
        )
    return int(value)


def choose_torch_threads(reserve: int = 0, share: int = 1, most: int | None = None) -> int:
    """Intra-op threads for one torch computation in this process.

    ``AEFLOW_TORCH_THREADS`` when set (exactly, whatever the other arguments). Otherwise the
    :func:`usable_cpus` less ``reserve`` CPUs kept for other work of the same job (e.g. reading and
    writing), divided among ``share`` computations running at once, at most ``most``, at least 1.
    """
    explicit = explicit_torch_threads()
    if explicit is not None:
        return explicit
    if most is not None and most <= 1:
        return 1  # no need to measure the machine
    threads = (usable_cpus() - reserve) // max(1, share)
    if most is not None:
        threads = min(threads, most)
    return max(1, threads)


_interop_lock = threading.Lock()
_interop_sized = False


def _size_interop_threads() -> None:
    """Size torch's inter-op pool once per process: the explicit setting, else the budget.

    torch allows this only before its inter-op pool has started; when something (a user, an
    earlier library) has started it, its size stays.
    """
    global _interop_sized
    with _interop_lock:
        if _interop_sized:
            return
        _interop_sized = True
        import torch

        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(explicit_torch_threads() or cpu_budget().cpus)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Run the block with ``threads`` intra-op threads on the calling thread (torch's setting is
    per thread), restoring the previous count after; yields ``threads``."""
    import torch

    _size_interop_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)
