"""The processes the project owns keep freed host memory for the next batch instead of page-faulting it in again."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A few training steps of a small VapSR in a fresh process (the setting is process-wide), printing
# the page faults of each; its activations (about 1 MB) are above glibc's default mmap threshold.
STEPS = textwrap.dedent("""
    import resource, sys, torch
    from torch.nn import functional as F
    from vapsr_video.model.vapsr import VapSR, published_config
    from vapsr_video.host_memory import retain_freed_memory
    torch.set_num_threads(1)
    if sys.argv[1] == "retain":
        assert retain_freed_memory()
    torch.manual_seed(0)
    model = VapSR(published_config("vapsr-s", 2))
    lr, hr = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 64, 64)
    for _ in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        F.l1_loss(model(lr), hr).backward()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults_per_step(mode: str) -> list[int]:
    result = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True,
                            timeout=300)
    return [int(line) for line in result.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_steady_training_steps_stop_page_faulting_once_freed_memory_is_kept() -> None:
    retained = _faults_per_step("retain")
    # The first step grows the heap; after that the same blocks are reused.
    assert sum(retained[-3:]) <= retained[0] // 10, retained
    default = _faults_per_step("default")
    # Without the setting the steady steps keep faulting (which is what makes this test able to fail).
    assert sum(default[-3:]) > default[0] // 10, default
