"""The side-by-side CPU benchmarks run end to end at a tiny size and report both sides and a ratio."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT


def _run(*command: str) -> str:
    result = subprocess.run([sys.executable, *command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_training_benchmark_times_both_recipes_in_their_own_processes() -> None:
    out = _run("scripts/benchmark_training.py", "--model", "vapsr-s", "--batch-size", "2", "--patch", "16",
               "--threads", "1", "--iterations", "2", "--warmup", "1")
    assert "1 thread(s)" in out and "2 timed iterations each" in out
    assert re.search(r"baseline: median +\d+ ms/iteration", out) and re.search(r"optimised: median +\d+", out)
    assert re.search(r"speed-up: \d+\.\d\dx", out)


@pytest.mark.slow
def test_host_memory_benchmark_shows_the_retaining_side_stops_page_faulting() -> None:
    out = _run("scripts/benchmark_host_memory.py", "--threads", "1", "--passes", "3", "--height", "24",
               "--width", "32")
    faults = {name: int(count) for name, count in
              re.findall(r"^\s*(glibc defaults|retain_freed_memory): .*page faults per pass: median (\d+)$", out,
                         re.MULTILINE)}
    assert set(faults) == {"glibc defaults", "retain_freed_memory"}, out
    assert faults["retain_freed_memory"] < faults["glibc defaults"], out
    assert re.search(r"speed-up: \d+\.\d\dx", out)
