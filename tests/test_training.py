"""Training: runs on the CPU, lowers the loss, checkpoints, and resumes exactly."""

from __future__ import annotations

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

from vapsr_video.model.weights import read_state_dict


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
    import json

    losses = [record["loss"] for record in json.loads(history)]
    assert losses[-1] < 0.8 * losses[0], f"loss did not fall: {losses}"
    _, metadata = read_state_dict(out / "vapsr-s-x2.safetensors")
    assert metadata["variant"] == "vapsr-s" and metadata["scale"] == "2"
    assert metadata["iterations"] == "40" and "train-images" in metadata["training_data"]


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
