"""Reading and writing VapSR weights without ever executing what a file contains.

Accepted: the authors' BasicSR checkpoints (``{'params_ema': ..., 'params': ...}``,
``params_ema`` preferred), a bare state dict saved with ``torch.save``, and
safetensors files (the project's own format, with metadata). The network's
configuration is read from the tensor shapes, so a file is all a user passes.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import struct
from pathlib import Path
from typing import Any

import torch

from vapsr_video.errors import WeightsError
from vapsr_video.model.vapsr import ModelConfig, VapSR, published_config
from vapsr_video.safe_output import atomic_output

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "bundled_weights"
SAFETENSORS_SUFFIX = ".safetensors"
_BODY_KEY = re.compile(r"^body\.(\d+)\.")
_EXPECTED = "a VapSR checkpoint (keys conv_first.*, body.N.*, conv_body.*, upsampler.*)"


def _looks_like_safetensors(head: bytes, file_size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 0 < header_len <= file_size - 8 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            for key in handle.keys():  # noqa: SIM118 (safe_open is not iterable)  # noqa: SIM118 - safe_open handles are not iterable
                tensors[key] = handle.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    return tensors, metadata


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_torch_file(path: Path) -> Any:
    try:
        # weights_only: the unpickler accepts tensors and plain containers only, so
        # a checkpoint that carries code is refused instead of run.
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = _first_line(exc)
        if "Weights only load failed" in message or "Unsupported global" in str(exc):
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
            what = f" ({found.group(1)})" if found else ""
            raise WeightsError(
                f"{path}: refused: the file holds Python objects other than tensors{what}; "
                f"expected {_EXPECTED}; nothing in it was executed"
            ) from None
        raise WeightsError(f"{path}: not a PyTorch checkpoint ({message}); expected {_EXPECTED}") from None
    except (RuntimeError, EOFError, ValueError, OSError, struct.error, UnicodeDecodeError) as exc:
        raise WeightsError(
            f"{path}: not a readable PyTorch checkpoint, or truncated ({_first_line(exc)}); expected {_EXPECTED}"
        ) from None
    except Exception as exc:
        # Garbage fed to the (restricted) unpickler fails in arbitrary ways (IndexError,
        # KeyError, ...); with weights_only nothing was executed, so any failure means
        # "not a checkpoint".
        raise WeightsError(
            f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)}); expected {_EXPECTED}"
        ) from None


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("params_ema", "params", "state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner:
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected {_EXPECTED}, found a {type(obj).__name__} that is not a dict of tensors")
    # Checkpoints saved from nn.DataParallel prefix every key.
    if all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a weights file and its metadata (empty for ``.pth`` files)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror})") from None
    if size == 0:
        raise WeightsError(f"{path}: empty file; expected {_EXPECTED}")
    if path.suffix == SAFETENSORS_SUFFIX or _looks_like_safetensors(head, size):
        tensors, metadata = _read_safetensors(path)
        return _unwrap_state_dict(tensors, path), metadata
    return _unwrap_state_dict(_read_torch_file(path), path), {}


def infer_config(state_dict: dict[str, torch.Tensor], source: str = "weights") -> ModelConfig:
    """Read the network's configuration from tensor shapes alone."""

    def shape(key: str) -> tuple[int, ...]:
        tensor = state_dict.get(key)
        if tensor is None:
            sample = ", ".join(sorted(state_dict)[:4])
            raise WeightsError(
                f"{source}: expected {_EXPECTED}, found another architecture "
                f"({len(state_dict)} tensors, e.g. {sample}; no {key})"
            )
        return tuple(tensor.shape)

    first = shape("conv_first.weight")
    if len(first) != 4 or first[1] != 3:
        raise WeightsError(f"{source}: conv_first.weight has shape {first}, expected (C, 3, 3, 3)")
    num_feat = first[0]
    block_ids = sorted({int(m.group(1)) for k in state_dict if (m := _BODY_KEY.match(k))})
    if not block_ids or block_ids != list(range(len(block_ids))):
        raise WeightsError(f"{source}: expected VapSR blocks body.0 ... body.N, found {block_ids[:5] or 'none'}")
    d_atten = shape("body.0.proj_1.weight")[0]
    conv_groups = num_feat // shape("conv_body.weight")[1]
    if "upsampler.3.weight" in state_dict:
        scale = 4
    else:
        out_channels = shape("upsampler.2.weight")[0]
        scale = math.isqrt(out_channels // 3)
        if scale not in (2, 3) or 3 * scale * scale != out_channels:
            raise WeightsError(f"{source}: upsampler.2 has {out_channels} outputs, expected 12 (x2) or 27 (x3)")
    return ModelConfig(scale=scale, num_feat=num_feat, num_blocks=len(block_ids),
                       d_atten=d_atten, conv_groups=conv_groups)


def build_model(state_dict: dict[str, torch.Tensor], source: str = "weights") -> VapSR:
    """A VapSR in eval mode holding exactly ``state_dict`` (strict: no key missing or extra)."""
    config = infer_config(state_dict, source)
    model = VapSR(config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise WeightsError(f"{source}: does not match a VapSR network of its own shapes ({detail})") from None
    return model.eval()


def bundled_weights_path(variant: str = "vapsr", scale: int = 2) -> Path:
    """Where the weights the project trained itself for ``variant`` x``scale`` live."""
    published_config(variant, scale)  # validates the pair
    path = BUNDLED_DIR / f"{variant}-x{scale}{SAFETENSORS_SUFFIX}"
    if not path.is_file():
        raise WeightsError(
            f"{path.name}: no bundled weights for {variant} x{scale} in this installation; "
            "pass --weights FILE (e.g. one of the authors' checkpoints, see the README)"
        )
    return path


def load_model(weights: str | Path | None = None, *, variant: str = "vapsr", scale: int | None = None) -> VapSR:
    """Load a VapSR from ``weights``, or the bundled model for ``variant``/``scale``.

    With an explicit file the configuration comes from the file; a ``scale`` that
    contradicts it is an error rather than a silent surprise.
    """
    path = Path(weights) if weights is not None else bundled_weights_path(variant, scale or 2)
    state_dict, _ = read_state_dict(path)
    model = build_model(state_dict, str(path))
    if scale is not None and model.scale != scale:
        raise WeightsError(f"{path}: these weights upscale x{model.scale}, but x{scale} was asked for")
    return model


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata stored in a safetensors weights file."""
    return read_state_dict(path)[1]


def save_weights(model: VapSR, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write ``model`` as safetensors; the configuration always goes into the metadata."""
    from safetensors.torch import save_file

    config = model.config
    info: dict[str, str] = {
        "format": "vapsr-video",
        "variant": config.variant,
        "config": json.dumps(config.to_dict()),
        "scale": str(config.scale),
    }
    for key, value in (metadata or {}).items():
        info[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as temporary:
        save_file(tensors, str(temporary), metadata=info)
