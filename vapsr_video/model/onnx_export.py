"""Export a VapSR network to ONNX, for runtimes outside PyTorch (TensorRT, ONNX Runtime, OpenVINO).

The graph has one input, ``input``: N x 3 x H x W, RGB in [0, 1], float32 (float16 with
``fp16``), with N, H and W dynamic; and one output, ``output``: N x 3 x sH x sW, not clamped.
That is the layout vs-mlrt's ``inference()`` takes for RGB clips (RGBS, or RGBH for an fp16
model), so a VapourSynth user can run it through TensorRT with the tools they already use.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from vapsr_video.errors import UsageError
from vapsr_video.model.vapsr import VapSR
from vapsr_video.safe_output import atomic_output

OPSET = 18  # LayerNormalization needs 17; 18 is what current exporters and runtimes share
INPUT_NAME, OUTPUT_NAME = "input", "output"


def _exporter_available() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise UsageError("ONNX export needs the onnx and onnxscript packages: "
                         "pip install 'vapsr-video[onnx]'") from None


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_onnx(model: VapSR, path: str | Path, *, fp16: bool = False) -> Path:
    """Write ``model`` to ``path`` as ONNX (see the module docstring for the graph's interface).

    The file appears only when complete (written beside ``path``, then renamed into place).
    """
    _exporter_available()
    dtype = torch.float16 if fp16 else torch.float32
    network = VapSR(model.config).to(dtype)  # a copy: the caller's model keeps its dtype and device
    network.load_state_dict(model.state_dict())
    network.eval().requires_grad_(False)
    example = torch.rand(2, 3, 24, 32, dtype=dtype)  # batch 2: tracing would fix a size of 0 or 1
    batch, height, width = (torch.export.Dim(name, min=1) for name in ("batch", "height", "width"))
    # The exporter prints progress lines and warns about torchvision operators VapSR does not use.
    with atomic_output(path) as temporary, contextlib.redirect_stdout(io.StringIO()), _quiet("torch.onnx"):
        torch.onnx.export(network, (example,), str(temporary), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_shapes={"x": {0: batch, 2: height, 3: width}},
                          dynamo=True, opset_version=OPSET, external_data=False)
    return Path(path)
