"""What this machine has to give: free memory, usable CPUs, and how busy they are already."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

from productgan.errors import UsageError

# Share of the memory free now that one request may plan to take: the rest is left to the
# interpreter, the models and whatever else runs.
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping (Linux's MemAvailable), or None
    where the figure cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def describe_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def check_memory(needed: float, what: str, advice: str, available: int | None = None) -> None:
    """A UsageError, before any work, when ``what`` would need more memory than is free
    (``available``: bytes free on the device in question; the system's memory by default)."""
    free = available_memory() if available is None else available
    if free is not None and needed > MEMORY_SHARE * free:
        raise UsageError(
            f"{what} would need about {describe_bytes(needed)} of memory, and {describe_bytes(free)} is free; {advice}."
        )


def cpu_model() -> str:
    """The processor's model name as the system reports it (/proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_label(gpu: str | None = None) -> str:
    """A short, file-name-safe name of the machine a benchmark runs on, for its result files:
    the name of the GPU it ran on when given ('NVIDIA H200' -> 'nvidia-h200'), else the
    processor's model, its CPUs and the widest vector extension /proc/cpuinfo lists
    ('amd-epyc-2cpu-avx2'). It names; it decides nothing (speed is measured, not read from flags)."""
    if gpu:
        return slug(gpu)
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return cpu_label(cpu_model(), usable_cpus(), cpuinfo)


def cpu_label(model: str, cpus: int, cpuinfo: str) -> str:
    """'Intel(R) Xeon(R) Processor', 2 CPUs, flags with avx512_bf16 -> 'intel-xeon-2cpu-avx512bf16'."""
    extensions = (("avx512_bf16", "avx512bf16"), ("avx512f", "avx512"), ("avx2", "avx2"))
    found = next((label for flag, label in extensions if re.search(rf"\b{flag}\b", cpuinfo)), "")
    model = re.sub(r"\((r|tm)\)|\bprocessor\b|\bcpu @ .*", " ", model, flags=re.IGNORECASE)
    return slug(f"{model} {cpus}cpu {found}")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def busy_cpus() -> float | None:
    """The system's one-minute load average (CPUs kept busy, or waiting to be), or None."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def _busy_and_total_ticks() -> tuple[int, int]:
    """The system's CPU time so far, in clock ticks: (busy, all), from /proc/stat's first line."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _own_ticks() -> int:
    """CPU time this process (all its threads) has used, in clock ticks."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def busy_elsewhere(seconds: float = 0.1) -> float | None:
    """How many CPUs other processes keep busy right now: the system's busy time over ``seconds``
    less this process's own, in CPUs (a measurement, not the load average, which lags a
    minute behind); None where /proc cannot be read."""
    try:
        busy0, total0, own0 = *_busy_and_total_ticks(), _own_ticks()
        time.sleep(seconds)
        busy1, total1, own1 = *_busy_and_total_ticks(), _own_ticks()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    cpus = os.cpu_count() or 1
    return max(0.0, (busy1 - busy0 - (own1 - own0)) / (total1 - total0) * cpus)
