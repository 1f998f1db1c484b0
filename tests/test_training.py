"""Training: runs on the CPU, lowers the loss, checkpoints, and resumes exactly."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vapsr_video.model.phase_split import PhaseSplitConv2d
from vapsr_video.model.vapsr import VapSR
from vapsr_video.model.weights import read_state_dict
from vapsr_video.training.data import PairedPatches
from vapsr_video.training.fast_depthwise import FastDepthwiseConv2d
from vapsr_video.training.trainer import TrainConfig, Trainer, precision_summary
from vapsr_video.training.validation import ValidationSet


def write_png(path: Path, image: np.ndarray) -> None:
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "rgb24"
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four smooth synthetic images: stripes and blobs a network can learn to sharpen."""
    folder = tmp_path_factory.mktemp("train-images")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96] / 96.0
    for i in range(4):
        fx, fy, phase = rng.uniform(2, 6, 3)
        channels = [np.sin(2 * np.pi * (fx * x + fy * y) + phase + c) for c in range(3)]
        image = ((np.stack(channels, axis=-1) * 0.4 + 0.5) * 255).astype(np.uint8)
        write_png(folder / f"image{i}.png", image)
    return folder


def train_command(data: Path, out: Path, iterations: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vapsr_video", "train", str(data), "--out", str(out), "--model", "vapsr-s",
            "--scale", "2", "--iterations", str(iterations), "--batch-size", "2", "--patch", "16",
            "--warmup", "2", "--threads", "1", "--checkpoint-every", "4", "--validate-every", "1000",
            "--log-every", "5", *extra]


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(out / "vapsr-s-x2.safetensors")[0]


def test_training_lowers_the_loss_and_exports_safetensors(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    subprocess.run(train_command(image_folder, out, 40), check=True, capture_output=True)
    history = torch.load(out / "checkpoint.pt", weights_only=True)["history"]

    losses = [record["loss"] for record in json.loads(history)]
    assert losses[-1] < 0.8 * losses[0], f"loss did not fall: {losses}"
    _, metadata = read_state_dict(out / "vapsr-s-x2.safetensors")
    assert metadata["variant"] == "vapsr-s" and metadata["scale"] == "2"
    assert metadata["iterations"] == "40" and "train-images" in metadata["training_data"]
    assert metadata["precision"] == precision_summary(torch.device("cpu"), bf16=True)


def test_killed_training_resumes_to_the_same_weights(image_folder: Path, tmp_path: Path) -> None:
    iterations = 16
    uninterrupted = tmp_path / "straight"
    subprocess.run(train_command(image_folder, uninterrupted, iterations), check=True, capture_output=True)

    resumed = tmp_path / "resumed"
    process = subprocess.Popen(train_command(image_folder, resumed, iterations),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (resumed / "checkpoint.pt").exists():
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (resumed / "vapsr-s-x2.safetensors").exists(), "killed before the end, yet exported"
    interrupted_at = torch.load(resumed / "checkpoint.pt", weights_only=True)["iteration"]
    assert 0 < interrupted_at < iterations

    result = subprocess.run(train_command(image_folder, resumed, iterations), check=True,
                            capture_output=True, text=True)
    assert f"resumed from {resumed / 'checkpoint.pt'} at iteration {interrupted_at}" in result.stderr
    expected, got = final_weights(uninterrupted), final_weights(resumed)
    for key, tensor in expected.items():
        torch.testing.assert_close(got[key], tensor, rtol=0, atol=0, msg=f"{key} differs after resume")


@pytest.mark.parametrize(("stop", "code", "message"), [(signal.SIGTERM, 143, "terminated"),
                                                      (signal.SIGINT, 130, "interrupted")])
def test_a_stop_signal_checkpoints_the_iteration_reached_and_the_same_command_resumes_there(
        image_folder: Path, tmp_path: Path, stop: signal.Signals, code: int, message: str) -> None:
    out = tmp_path / "run"
    # Periodic checkpoints far apart: whatever the checkpoint holds, the stop itself wrote it.
    command = [*train_command(image_folder, out, 60), "--checkpoint-every", "1000"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while "iteration 5:" not in ((out / "train.log").read_text() if (out / "train.log").exists() else ""):
        assert process.poll() is None, "training ended before it was signalled"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == code, stderr
    assert stderr.splitlines()[-1] == f"vapsr-video: error: {message}" and "Traceback" not in stderr
    assert not (out / "vapsr-s-x2.safetensors").exists(), "stopped before the end, yet exported"
    stopped_at = torch.load(out / "checkpoint.pt", weights_only=True)["iteration"]
    assert 5 <= stopped_at < 60
    assert f"stopped at iteration {stopped_at} of 60; checkpoint saved" in stderr
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at iteration {stopped_at} of 60" in resumed.stderr


def test_a_16_bit_training_image_is_refused_not_quietly_reduced(image_folder: Path, tmp_path: Path) -> None:
    from vapsr_video.imaging.image_files import StillImage, write_image

    data = tmp_path / "data"
    data.mkdir()
    for image in image_folder.iterdir():
        (data / image.name).write_bytes(image.read_bytes())
    deep = np.random.default_rng(1).integers(0, 65536, (96, 96, 3), dtype=np.uint16)
    write_image(data / "deep.png", StillImage(rgb=deep))
    result = subprocess.run(train_command(data, tmp_path / "run", 4), capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert f"{data / 'deep.png'}: a 16-bit image" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


REPO_ROOT = Path(__file__).resolve().parents[1]


def run_process_group(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``command`` in its own session; on timeout kill the whole group, not only the leader.

    The GPU script starts one training process per model: killing only the script would leave
    those running (and holding the CPU) long after the test has failed.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{command[1]} ran past {timeout} s; its process group was killed\n{stdout}{stderr}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.slow
def test_gpu_script_fine_tunes_all_four_models_within_its_budget_on_the_cpu(image_folder: Path,
                                                                           tmp_path: Path) -> None:
    benchmarks = tmp_path / "benchmarks"
    (benchmarks / "Set5" / "HR").mkdir(parents=True)
    for index, image in enumerate(sorted(image_folder.glob("*.png"))[:2]):
        (benchmarks / "Set5" / "HR" / f"b{index}.png").write_bytes(image.read_bytes())
    out = tmp_path / "gpu-run"
    budget = 20  # seconds, as the issue asks
    command = [sys.executable, str(REPO_ROOT / "scripts" / "train_gpu.py"), str(image_folder), "--out", str(out),
               "--minutes", str(budget / 60), "--device", "cpu", "--batch-size", "2", "--patch", "16",
               "--warmup", "50", "--benchmarks", str(benchmarks), "--sets", "Set5", "--no-colour-check"]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # this checkout's package, not an installed one
    start = time.monotonic()
    result = run_process_group(command, env=environment, timeout=300)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "quality.json").read_text())
    # Four processes importing torch at once on a loaded 2-core CPU can take longer than the whole
    # budget; whenever a run gets going, it stops at the common deadline (the budget less the
    # table's share), after the iteration in progress, and exports. Without the deadline each run
    # would do its 50 warm-up iterations and more.
    for name in ("vapsr-x2", "vapsr-x3", "vapsr-x4", "vapsr-s-x4"):
        exported = (out / name / f"{name}.safetensors").stat().st_mtime
        late_start = "the deadline passed while loading the data" in (out / name / "train.log").read_text()
        iterations = int(read_state_dict(out / name / f"{name}.safetensors")[1]["iterations"])
        if late_start:
            assert iterations == 1, f"{name} started after the deadline, yet did {iterations} iterations"
        else:
            assert exported < summary["deadline"] + 10, f"{name} exported {exported - summary['deadline']:.0f} s late"
    assert summary["deadline"] - summary["started"] == pytest.approx(budget - 4, abs=0.5)  # 20 % for the table
    assert elapsed < 240
    table = (out / "quality.md").read_text()
    rows = summary["models"]
    assert [row["model"] for row in rows] == ["vapsr-x2", "vapsr-x3", "vapsr-x4", "vapsr-s-x4"]
    for row in rows:
        name = row["model"]
        assert int(row["iterations"]) >= 1 and row["Set5 before"] and row["Set5 after"], row
        assert f"| {name} |" in table
        new, metadata = read_state_dict(out / name / f"{name}.safetensors")
        old, _ = read_state_dict(REPO_ROOT / "vapsr_video" / "bundled_weights" / f"{name}.safetensors")
        assert metadata["warm_start"].endswith(f"{name}.safetensors ({len(old)} tensors)")
        assert any(not torch.equal(new[key], old[key]) for key in old), f"{name} did not change"
        assert "warm start" in (out / name / "train.log").read_text()


@pytest.mark.slow
def test_gpu_script_passes_a_stop_signal_on_to_every_run_and_each_checkpoints(image_folder: Path,
                                                                              tmp_path: Path) -> None:
    out = tmp_path / "gpu-run"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "train_gpu.py"), str(image_folder), "--out", str(out),
               "--minutes", "4", "--device", "cpu", "--batch-size", "2", "--patch", "16", "--no-colour-check"]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
                               start_new_session=True)
    logs = [out / name / "train.log" for name in ("vapsr-x2", "vapsr-x3", "vapsr-x4", "vapsr-s-x4")]
    try:
        deadline = time.monotonic() + 200
        while not all(log.exists() and "warm start" in log.read_text() for log in logs):  # all four are training
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the four runs did not all start training in 200 s"
            time.sleep(0.2)
        time.sleep(1)
        os.kill(process.pid, signal.SIGTERM)  # the script alone, as a service manager or `kill` would
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 143, stderr
        assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
        for log in logs:
            assert "checkpoint saved" in log.read_text(), f"{log.parent.name} did not stop at a checkpoint"
            assert (log.parent / "checkpoint.pt").exists()
        with pytest.raises(ProcessLookupError):  # no run left behind, training on its own
            os.killpg(process.pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def tiny_config(image_folder: Path, out: Path, **overrides: object) -> TrainConfig:
    settings = {"variant": "vapsr-s", "scale": 2, "data": [str(image_folder)], "out_dir": str(out),
                "iterations": 2, "batch_size": 2, "lr_patch": 16, "warmup": 1, "checkpoint_every": 1,
                "validate_every": 1000, "log_every": 1, **overrides}
    return TrainConfig(**settings)  # type: ignore[arg-type]


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="needs a CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
def test_resumed_adam_state_sits_where_adam_expects_it(image_folder: Path, tmp_path: Path, device: str) -> None:
    config = tiny_config(image_folder, tmp_path / "run", device=device)
    Trainer(config).train()
    resumed = Trainer(tiny_config(image_folder, tmp_path / "run", device=device))
    assert resumed.try_resume() and resumed.iteration == 2
    states = list(resumed.optimizer.state.values())
    assert len(states) == len(list(resumed.model.parameters()))
    # Fused Adam (the CPU's) keeps its step counters beside the parameters; foreach Adam (CUDA's)
    # wants them on the CPU: on the GPU they would cost a synchronisation per tensor and iteration.
    step_device = device if resumed.optimizer.defaults["fused"] else "cpu"
    for state in states:
        assert state["step"].device.type == step_device
        assert state["exp_avg"].device.type == state["exp_avg_sq"].device.type == device


def test_calibration_times_the_real_step_on_copies(image_folder: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(image_folder, tmp_path / "run", iterations=0, time_budget=2.0))
    step, probe, _ = trainer.calibration_step()
    assert type(step) is type(trainer.step) and type(step.optimizer) is type(trainer.optimizer)
    assert step.optimizer.defaults == {**trainer.optimizer.defaults, "lr": 0.0}
    assert [type(m) for m in probe.modules()] == [type(m) for m in trainer.model.modules()]
    assert any(isinstance(m, FastDepthwiseConv2d) for m in probe.modules())  # the CPU's training kernels
    for copied, real in zip(probe.parameters(), trainer.model.parameters(), strict=True):
        assert copied.stride() == real.stride() and copied.data_ptr() != real.data_ptr()

    before = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    trainer._fit_iterations(PairedPatches([str(image_folder)], 2, 16))
    assert trainer.config.iterations > trainer.config.warmup
    assert not trainer.optimizer.state, "calibration stepped the run's own optimiser"
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), f"calibration changed {key}"


@pytest.mark.parametrize(("loss", "measure"), [("l1", torch.nn.functional.l1_loss),
                                               ("mse", torch.nn.functional.mse_loss)])
def test_the_chosen_pixel_loss_is_what_a_step_minimises_and_what_the_weights_record(
        image_folder: Path, tmp_path: Path, loss: str, measure) -> None:
    trainer = Trainer(tiny_config(image_folder, tmp_path / "run", loss=loss, bf16=False))
    lr_batch, hr_batch = PairedPatches([str(image_folder)], 2, 16).sample(np.random.default_rng(0), 2)
    with torch.no_grad():
        expected = measure(trainer.model(lr_batch.contiguous(memory_format=torch.channels_last)), hr_batch)
    assert float(trainer.step(lr_batch, hr_batch)) == pytest.approx(float(expected), rel=1e-5)
    _, metadata = read_state_dict(trainer.export())
    assert metadata["recipe"].startswith(f"{loss.upper()}, Adam")


def test_resuming_with_another_loss_says_so_and_fine_tunes_with_it(image_folder: Path, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    Trainer(tiny_config(image_folder, tmp_path / "run")).train()
    resumed = Trainer(tiny_config(image_folder, tmp_path / "run", loss="mse", iterations=3))
    with caplog.at_level("INFO", logger="vapsr_video.train"):
        assert resumed.try_resume()
    assert "changing the loss from l1 to mse at iteration 2" in caplog.text
    assert resumed.step.loss is torch.nn.functional.mse_loss


def test_cpu_validation_runs_the_ema_by_phase_split_with_the_stock_models_score(image_folder: Path,
                                                                                 tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(image_folder, tmp_path / "run"))
    assert sum(isinstance(m, PhaseSplitConv2d) for m in trainer.ema.modules()) == trainer.ema.config.num_blocks
    stock = VapSR(trainer.ema.config)
    stock.load_state_dict(trainer.ema.state_dict())
    validation = ValidationSet(image_folder, 2)
    assert validation.psnr(trainer.ema, trainer.device) == pytest.approx(validation.psnr(stock, trainer.device),
                                                                         abs=1e-6)


def test_time_limit_stops_training_and_exports(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    started = time.monotonic()
    result = subprocess.run(train_command(image_folder, out, 100000, "--time-limit", "0.1"), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "time limit reached at iteration" in result.stderr
    _, metadata = read_state_dict(out / "vapsr-s-x2.safetensors")
    done = int(metadata["iterations"])
    assert 0 < done < 100000
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == done
    assert time.monotonic() - started < 6 + 30  # the limit plus start-up and export on a loaded CPU


def test_export_only_records_how_the_checkpoint_was_trained(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    subprocess.run(train_command(image_folder, out, 4, "--lr", "3e-4", "--fp32"), check=True, capture_output=True)
    (out / "vapsr-s-x2.safetensors").unlink()
    other = tmp_path / "elsewhere"
    other.mkdir()
    export = [sys.executable, "-m", "vapsr_video", "train", str(other), "--out", str(out), "--model", "vapsr-s",
              "--scale", "2", "--export-only"]
    subprocess.run(export, check=True, capture_output=True)
    metadata = read_state_dict(out / "vapsr-s-x2.safetensors")[1]
    assert metadata["training_data"] == image_folder.name  # the run's data, not the export command's
    assert "Adam lr 0.0003" in metadata["recipe"] and metadata["batch_size"] == "2"
    assert metadata["precision"] == "float32"  # --fp32 of the run, not the export command's default
