"""``scripts/gpu_check.py --cpu-smoke``: the GPU validation script's own logic, on the CPU, as CI runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

CUDA_ONLY = {"oom"}


@pytest.mark.slow
def test_cpu_smoke_prints_one_json_line_per_section_without_errors() -> None:
    # --deadline well above the minute the smoke run takes on an idle 2-core CPU, so that a busy
    # test machine does not make sections skip themselves for time.
    result = subprocess.run([sys.executable, "scripts/gpu_check.py", "--cpu-smoke", "--deadline", "240"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    names = [line["section"] for line in lines]
    assert names == ["env", "precision", "oom", "speed", "pipeline", "vapoursynth", "training", "done"]
    by_name = {line["section"]: line for line in lines}
    for name, line in by_name.items():
        assert "error" not in line, f"{name}: {line.get('error')}\n{line.get('trace')}"
        if name in CUDA_ONLY:
            assert "needs CUDA" in line["skipped"]
        else:
            assert "skipped" not in line, f"{name} was skipped: {line['skipped']}"
    assert by_name["precision"]["results"]["fp32"]["max_err_8bit"] == 0.0
    assert by_name["speed"]["engines_skipped"]["cuda-graphs"] == "needs CUDA"
    pipeline = by_name["pipeline"]
    assert pipeline["device_vs_cpu_lossless"]["8bit"]["max_code_diff"] == 0  # the "device" is the CPU here
    assert pipeline["device_vs_cpu_lossless"]["10bit"]["frames"] == [6, 6]
    assert by_name["vapoursynth"]["results"]["default"]["max_diff_vs_one_thread"] == 0.0
