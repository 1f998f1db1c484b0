"""Evaluation: metrics as the papers define them, and the reference numbers reproduced."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from vapsr_video.cli.main import main as cli_main
from vapsr_video.evaluation.benchmark_sets import benchmark_images
from vapsr_video.evaluation.evaluate import evaluate_bicubic, evaluate_upscaler
from vapsr_video.evaluation.metrics import gaussian_kernel, psnr_y, rgb_to_y, ssim_y
from vapsr_video.imaging.image_files import StillImage, write_image
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.weights import load_model, save_weights

REFERENCE_CHECKPOINTS = ("VapSR_X2.pth", "VapSR_X3.pth", "VapSR_X4.pth", "VapSR-S.pth")
FULL_EVAL = os.environ.get("VAPSR_EVAL_B100", "1") != "0"  # on by default: about 2.5 minutes on 2 AVX2 cores


@pytest.fixture(scope="module")
def reference_results(shared_dir: Path) -> dict:
    return json.loads((shared_dir / "data" / "reference-results.json").read_text())


def random_rgb(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


# --- metrics -----------------------------------------------------------------------------------------------------

def test_y_channel_is_bt601_studio_range_unrounded() -> None:
    image = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 20, 30]]], np.uint8)
    y = rgb_to_y(image)
    np.testing.assert_allclose(y[0, :3], [16.0, 235.0, 16 + 65.481])
    expected = 16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255
    assert y[0, 3] == pytest.approx(expected, abs=1e-12)
    assert y[0, 3] != round(y[0, 3])


def test_psnr_of_a_known_error() -> None:
    reference = np.full((20, 20, 3), 100, np.uint8)
    restored = reference + 1  # every channel +1 -> Y differs by 219/255 everywhere
    expected = 20 * math.log10(255 / (219 / 255))
    assert psnr_y(restored, reference) == pytest.approx(expected, abs=1e-9)
    assert psnr_y(reference, reference) == math.inf


def test_psnr_crops_the_border() -> None:
    reference = random_rgb((24, 24), 0)
    restored = reference.copy()
    restored[:2] = 0  # damage only the top two rows
    assert psnr_y(restored, reference, border=0) < 30
    assert psnr_y(restored, reference, border=2) == math.inf


def _ssim_direct(a: np.ndarray, b: np.ndarray) -> float:
    """A plain, slow 2-D transcription of Wang et al.'s definition, to check the separable one."""
    window = np.outer(gaussian_kernel(), gaussian_kernel())
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            ma, mb = (window * pa).sum(), (window * pb).sum()
            va, vb = (window * pa * pa).sum() - ma**2, (window * pb * pb).sum() - mb**2
            cov = (window * pa * pb).sum() - ma * mb
            values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_definition_with_valid_gaussian_filtering() -> None:
    reference = random_rgb((26, 30), 1)
    noise = np.random.default_rng(2).integers(-20, 21, reference.shape)
    restored = np.clip(reference.astype(int) + noise, 0, 255).astype(np.uint8)
    expected = _ssim_direct(rgb_to_y(restored)[2:-2, 2:-2], rgb_to_y(reference)[2:-2, 2:-2])
    assert ssim_y(restored, reference, border=2) == pytest.approx(expected, abs=1e-12)
    assert ssim_y(reference, reference, border=2) == pytest.approx(1.0, abs=1e-12)
    assert expected < 0.99


# --- the bicubic baseline and the data layout, without ../shared -------------------------------------------------

def _smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    phase = np.random.default_rng(seed).uniform(0, 6, 3)
    return ((np.stack([np.sin(5 * x + 3 * y + p) for p in phase], -1) * 0.4 + 0.5) * 255).astype(np.uint8)


def test_a_set_folder_without_hr_subfolder_is_found_and_scored(tmp_path: Path) -> None:
    folder = tmp_path / "Mine"
    folder.mkdir()
    for i in range(2):
        write_image(folder / f"img{i}.png", StillImage(rgb=_smooth_image(50, 62, i)))
    (folder / "notes.txt").write_text("not an image")
    assert [p.name for p in benchmark_images("Mine", tmp_path)] == ["img0.png", "img1.png"]
    (result,) = evaluate_bicubic(2, ["Mine"], data_dir=tmp_path)
    assert result.images == 2 and result.model == "bicubic" and result.scale == 2
    assert 30 < result.psnr < 60 and 0.9 < result.ssim <= 1.0  # smooth images survive bicubic well
    assert [s.image for s in result.per_image] == ["img0.png", "img1.png"]


# --- the reference numbers ---------------------------------------------------------------------------------------

def _check_against_reference(results, expected: dict, tolerance: dict) -> None:
    for result in results:
        wanted = expected[result.set_name]
        assert result.images == wanted["images"]
        assert abs(result.psnr - wanted["psnr"]) <= tolerance["psnr_db"], (result.set_name, result.psnr)
        assert abs(result.ssim - wanted["ssim"]) <= tolerance["ssim"], (result.set_name, result.ssim)


@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCE_CHECKPOINTS)
def test_reference_checkpoint_reproduces_the_reference_numbers_on_set5_and_set14(
    reference_weights_dir: Path, benchmarks_dir: Path, reference_results: dict, name: str
) -> None:
    upscaler = Upscaler(model=load_model(reference_weights_dir / name), device="cpu")
    results = evaluate_upscaler(upscaler, ["Set5", "Set14"], label=name, data_dir=benchmarks_dir)
    _check_against_reference(results, reference_results["measured"][name], reference_results["tolerance"])


@pytest.mark.slow
@pytest.mark.skipif(not FULL_EVAL, reason="B100 turned off with VAPSR_EVAL_B100=0 "
                                          "(the measured table is in docs/evaluation.md)")
@pytest.mark.parametrize("name", REFERENCE_CHECKPOINTS)
def test_reference_checkpoint_reproduces_the_reference_numbers_on_b100(
    reference_weights_dir: Path, benchmarks_dir: Path, reference_results: dict, name: str
) -> None:
    upscaler = Upscaler(model=load_model(reference_weights_dir / name), device="cpu")
    results = evaluate_upscaler(upscaler, ["B100"], label=name, data_dir=benchmarks_dir)
    _check_against_reference(results, reference_results["measured"][name], reference_results["tolerance"])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_baseline_matches_the_reference_table(benchmarks_dir: Path, reference_results: dict,
                                                      scale: int) -> None:
    sets = ["Set5", "Set14", "B100"] if FULL_EVAL else ["Set5", "Set14"]
    for result in evaluate_bicubic(scale, sets, data_dir=benchmarks_dir):
        psnr, ssim = reference_results["bicubic"][f"x{scale}"][result.set_name]
        # The table has two decimals for PSNR and four for SSIM.
        assert abs(result.psnr - psnr) <= 0.01, (result.set_name, result.psnr)
        assert abs(result.ssim - ssim) <= 0.0003, (result.set_name, result.ssim)


# --- the command line -------------------------------------------------------------------------------------------

def test_eval_command_prints_a_table_with_reference_deltas_and_writes_json(
    reference_weights_dir: Path, benchmarks_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "eval.json"
    code = cli_main(["eval", "--weights", str(reference_weights_dir / "VapSR-S.pth"), "--sets", "Set5",
                     "--data", str(benchmarks_dir), "--reference", "--json", str(report), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["model", "scale", "set", "images", "PSNR", "SSIM"]
    model_row = next(line for line in lines if line.startswith("VapSR-S.pth"))
    assert model_row.split()[1:6] == ["x4", "Set5", "5", "32.1662", "0.89468"]
    assert model_row.split()[7] in ("+0.0000", "-0.0000")  # dPSNR against reference-results.json
    assert any(line.startswith("bicubic") and " x4 " in line for line in lines)
    data = json.loads(report.read_text())
    rows = {(r["model"], r["set_name"]): r for r in data["results"]}
    assert rows[("VapSR-S.pth", "Set5")]["psnr"] == pytest.approx(32.1662, abs=0.01)
    assert len(rows[("VapSR-S.pth", "Set5")]["per_image"]) == 5
    assert ("bicubic", "Set5") in rows and data["device"] == "cpu" and data["precision"] == "fp32"


def test_eval_command_with_own_weights_and_data(tmp_path: Path, tiny_model_factory,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "tiny-x3.safetensors"
    save_weights(tiny_model_factory(scale=3), weights)
    data = tmp_path / "data"
    (data / "Tiny" / "HR").mkdir(parents=True)
    write_image(data / "Tiny" / "HR" / "a.png", StillImage(rgb=_smooth_image(48, 60, 0)))
    code = cli_main(["eval", "--weights", str(weights), "--sets", "Tiny", "--data", str(data), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert [line.split()[:4] for line in out.splitlines()[2:]] == [["tiny-x3.safetensors", "x3", "Tiny", "1"],
                                                                   ["bicubic", "x3", "Tiny", "1"]]


def test_eval_command_errors_are_one_line(tmp_path: Path, tiny_model_factory,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "tiny.safetensors"
    save_weights(tiny_model_factory(scale=2), weights)
    assert cli_main(["eval", "--weights", str(weights), "--data", str(tmp_path / "nowhere")]) == 3
    assert "no benchmark data folder" in capsys.readouterr().err
    assert cli_main(["eval", "--weights", str(weights), "--data", str(tmp_path), "--sets", "Set9"]) == 3
    err = capsys.readouterr().err
    assert "Set9: no such benchmark set" in err and err.count("\n") == 1
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    (tmp_path / "Set5").mkdir()
    write_image(tmp_path / "Set5" / "a.png", StillImage(rgb=_smooth_image(24, 24, 0)))
    assert cli_main(["eval", "--weights", str(junk), "--data", str(tmp_path), "--sets", "Set5"]) == 5
    assert "junk.pth" in capsys.readouterr().err


def test_eval_without_weights_says_that_weights_are_needed(capsys: pytest.CaptureFixture[str]) -> None:
    from vapsr_video.cli.evaluate import bundled_weight_files

    if bundled_weight_files():
        pytest.skip("this installation has bundled weights")
    assert cli_main(["eval", "--sets", "Set5"]) == 5
    err = capsys.readouterr().err
    assert "no bundled weights" in err and "--weights" in err


def test_eval_without_a_data_folder_says_how_to_give_one(tmp_path: Path, tiny_model_factory,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # The installed package knows of no data folder: --data or VAPSR_VIDEO_DATA must name one.
    weights = tmp_path / "tiny.safetensors"
    save_weights(tiny_model_factory(scale=2), weights)
    monkeypatch.delenv("VAPSR_VIDEO_DATA", raising=False)
    assert cli_main(["eval", "--weights", str(weights), "--sets", "Tiny"]) == 2
    err = capsys.readouterr().err
    assert "pass --data DIR" in err and "VAPSR_VIDEO_DATA" in err and err.count("\n") == 1
    assert cli_main(["eval", "--weights", str(weights), "--data", str(tmp_path), "--reference"]) == 2
    assert "pass --reference FILE" in capsys.readouterr().err

    data = tmp_path / "data"
    (data / "benchmarks" / "Tiny" / "HR").mkdir(parents=True)
    write_image(data / "benchmarks" / "Tiny" / "HR" / "a.png", StillImage(rgb=_smooth_image(24, 24, 0)))
    (data / "reference-results.json").write_text(json.dumps({"bicubic": {}, "measured": {}}))
    monkeypatch.setenv("VAPSR_VIDEO_DATA", str(data))
    assert cli_main(["eval", "--weights", str(weights), "--sets", "Tiny", "--reference", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "dPSNR" in lines[0]  # the reference file in $VAPSR_VIDEO_DATA was read
    assert any(line.startswith("tiny.safetensors") and " Tiny " in line for line in lines)
