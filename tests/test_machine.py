"""What the machine has to give: memory checks before work, and a busy machine said out loud."""

from __future__ import annotations

import re

import pytest

from productgan import machine
from productgan.errors import UsageError
from productgan.train.device import warn_if_busy


def test_memory_the_machine_does_not_have_is_refused_before_the_work():
    machine.check_memory(1e6, "A small job", "ask for less", available=10**9)
    with pytest.raises(UsageError, match="A big job would need about 93.1 GiB of memory, and 1.0 GiB is free; ask"):
        machine.check_memory(1e11, "A big job", "ask for less", available=2**30)


def test_the_free_memory_is_read_from_the_system():
    free = machine.available_memory()
    assert free is not None and free > 0


def test_a_busy_machine_is_said_out_loud(capsys):
    assert warn_if_busy(load=0.4, cpus=2) is None
    message = warn_if_busy(load=16.0, cpus=2)
    assert "this machine is busy (load 16.0 on 2 CPUs)" in message and "--train.threads 1" in message
    assert message in capsys.readouterr().err


def test_result_files_are_named_for_the_machine():
    xeon = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile"
    assert machine.cpu_label("Intel(R) Xeon(R) Processor", 2, xeon) == "intel-xeon-2cpu-avx512bf16"
    assert machine.cpu_label("AMD EPYC", 2, "flags : fpu avx2") == "amd-epyc-2cpu-avx2"
    assert (
        machine.cpu_label("Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz", 8, "avx2 avx512f")
        == "intel-core-i7-8650u-8cpu-avx512"
    )
    assert machine.cpu_label("Apple M2", 8, "") == "apple-m2-8cpu"
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", machine.machine_label())
    assert machine.machine_label("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
