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


@pytest.mark.slow
def test_phase_split_benchmark_reports_all_three_and_identical_pixels() -> None:
    out = _run("scripts/benchmark_phase_split.py", "--threads", "1", "--passes", "2", "--warmup", "1",
               "--batch-size", "2", "--patch", "16", "--width", "40", "--height", "24")
    for what in ("5x5 dilated by 3 on 2x64x16x16", "model only, vapsr-s x4, 1 x 40x24", "training iteration"):
        assert re.search(re.escape(what) + r".*: oneDNN [\d.]+ ms, phase split [\d.]+ ms, speed-up [\d.]+x", out), out
    assert float(re.search(r"largest difference (\S+)", out).group(1)) < 1e-4, out
    assert re.search(r"identical pixels: (yes|no)", out), out


@pytest.mark.slow
def test_depthwise_gradient_benchmark_times_pytorch_and_both_vector_widths_and_checks_them() -> None:
    out = _run("scripts/benchmark_depthwise_grad.py", "--threads", "1", "--passes", "2", "--warmup", "1",
               "--batch-size", "2", "--patch", "16")
    for dilation in (1, 3):
        assert f"weight gradient, 5x5 dilated by {dilation}, 2x64x16x16 channels-last" in out, out
    for side, lanes in (("C, 16 lanes", 16), ("C, 8 lanes", 8)):
        differences = re.findall(re.escape(side) + rf": [\d.]+ ms, [\d.]+x, {lanes} lanes, largest difference "
                                 r"from PyTorch (\S+) of the largest gradient", out)
        assert len(differences) == 2 and all(float(d) < 1e-5 for d in differences), out
    assert re.search(r"trainer's build: [\d.]+ ms, [\d.]+x, (8|16) lanes", out), out
    assert re.search(r"training iteration, vapsr-s x4.*\n  C, 16 lanes: [\d.]+ ms, 1\.00x\n"
                     r"  C, 8 lanes: [\d.]+ ms, [\d.]+x", out), out


def test_weight_scale_tells_a_fresh_model_from_one_whose_weights_have_grown(tmp_path) -> None:
    import torch

    from vapsr_video.model.vapsr import ModelConfig, VapSR
    from vapsr_video.model.weights import save_weights

    torch.manual_seed(0)  # the script's own fresh reference uses seed 0 too
    fresh = VapSR(ModelConfig(scale=2, num_feat=8, num_blocks=2, d_atten=8))
    save_weights(fresh, tmp_path / "fresh.safetensors")
    with torch.no_grad():
        fresh.conv_body.weight.mul_(3)
    save_weights(fresh, tmp_path / "grown.safetensors")
    out = _run("scripts/weight_scale.py", str(tmp_path / "fresh.safetensors"), str(tmp_path / "grown.safetensors"))
    fresh_part, grown_part = out.split("grown.safetensors")
    ratios = lambda text: dict(re.findall(r"^\s+(\S+)\s+[\d.]+\s+[\d.]+\s+([\d.]+)$", text, re.MULTILINE))  # noqa: E731
    assert set(ratios(fresh_part).values()) == {"1.00"}, out
    assert ratios(grown_part)["conv_body.weight"] == "3.00" and ratios(grown_part)["body.*.proj_2.weight"] == "1.00"


@pytest.mark.parametrize("script", ["scripts/weight_scale.py", "scripts/flat_colour_error.py"])
def test_weights_scripts_refuse_a_bad_file_in_one_line(script: str, tmp_path) -> None:
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"junk")
    result = subprocess.run([sys.executable, script, str(bad)], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr and str(bad) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_vapoursynth_benchmark_takes_a_weights_path_relative_to_where_it_is_run() -> None:
    # vspipe evaluates its script from the script's (temporary) folder: the path must reach it whole.
    out = _run("scripts/benchmark_vapoursynth.py", "--weights", "vapsr_video/bundled_weights/vapsr-x2.safetensors",
               "--width", "32", "--height", "24", "--frames", "4", "--repeats", "1", "--threads", "1")
    assert "weights vapsr-x2.safetensors" in out
    assert re.search(r"vspipe.*[\d.]+ frames/s", out), out
