"""``vapsr-video export``: an ONNX graph that ONNX Runtime runs at any size with PyTorch's numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vapsr_video.model.vapsr import VapSR
from vapsr_video.model.weights import load_model

ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install 'vapsr-video[onnx]')")
pytest.importorskip("onnxscript", reason="needs onnxscript (pip install 'vapsr-video[onnx]')")


def run_onnx(path: Path, frames: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": frames.numpy()})[0]


@pytest.mark.slow
def test_exported_bundled_model_matches_pytorch_at_two_sizes(tmp_path: Path, run_cli) -> None:
    target = tmp_path / "vapsr-x2.onnx"
    result = run_cli("export", target, "--scale", "2")
    assert result.returncode == 0, result.stderr
    assert "torchvision" not in result.stderr  # the exporter's noise is kept from users
    model = load_model(None, variant="vapsr", scale=2)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (graph_input,), (graph_output,) = session.get_inputs(), session.get_outputs()
    assert graph_input.name == "input" and graph_input.type == "tensor(float)"
    assert graph_input.shape[1] == 3 and all(isinstance(d, str) for d in (graph_input.shape[0], *graph_input.shape[2:]))
    assert graph_output.name == "output"
    generator = torch.Generator().manual_seed(0)
    for shape in ((1, 3, 24, 40), (2, 3, 37, 18)):  # two sizes and batches: the graph is not fixed to one
        frames = torch.rand(*shape, generator=generator)
        with torch.no_grad():
            expected = model(frames).numpy()
        ours = run_onnx(target, frames)
        assert ours.shape == (shape[0], 3, shape[2] * 2, shape[3] * 2)
        assert np.abs(ours - expected).max() <= 1e-4


def test_fp16_export_takes_and_gives_float16(tmp_path: Path, tiny_model: VapSR) -> None:
    from vapsr_video.model.onnx_export import export_onnx

    target = export_onnx(tiny_model, tmp_path / "tiny-fp16.onnx", fp16=True)
    frames = torch.rand(1, 3, 10, 14, generator=torch.Generator().manual_seed(1))
    ours = run_onnx(target, frames.half())
    assert ours.dtype == np.float16
    with torch.no_grad():
        expected = tiny_model(frames).numpy()
    assert np.abs(ours.astype(np.float32) - expected).max() < 2e-3  # fp16 rounding, not a wrong graph
    assert next(tiny_model.parameters()).dtype == torch.float32  # the caller's model is left as it was


def test_export_refuses_an_existing_file_and_leaves_it(tmp_path: Path, run_cli) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"keep me")
    result = run_cli("export", target)
    assert result.returncode == 4
    assert result.stderr.strip() == f"vapsr-video: error: {target}: already exists; pass --overwrite to replace it"
    assert target.read_bytes() == b"keep me"


def test_export_with_unusable_weights_is_a_weights_error(tmp_path: Path, run_cli) -> None:
    weights = tmp_path / "broken.pth"
    weights.write_bytes(b"not a checkpoint")
    result = run_cli("export", tmp_path / "model.onnx", "--weights", weights)
    assert result.returncode == 5
    assert str(weights) in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".vapsr-partial-*"))
