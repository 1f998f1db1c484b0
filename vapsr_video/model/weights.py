"""Reading and writing VapSR weights without ever executing what a file contains.

Accepted: the authors' BasicSR checkpoints (``{'params_ema': ..., 'params': ...}``,
``params_ema`` preferred), a bare state dict saved with ``torch.save``, and
safetensors files (the project's own format, with metadata). The network's
configuration is read from the tensor shapes, so a file is all a user passes.

Every file is validated before any tensor is allocated (``validation``); where a
file is accepted, a known model name is too (``catalog``), and with no weights
at all ``$VAPSR_VIDEO_WEIGHTS`` names the default (:func:`default_weights_path`).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import struct
from pathlib import Path
from typing import Any

import torch

from vapsr_video.errors import WeightsError
from vapsr_video.model.catalog import BUNDLED_DIR, find_model, resolve_weights
from vapsr_video.model.validation import (
    EXPECTED,
    check_declared_shapes,
    check_file_size,
    check_loaded_tensors,
    check_torch_archive,
    config_from_shapes,
    read_safetensors_header,
)
from vapsr_video.model.vapsr import ModelConfig, VapSR, published_config
from vapsr_video.safe_output import atomic_output

WEIGHTS_ENV = "VAPSR_VIDEO_WEIGHTS"  # a known name or a file: the default model when none is given

log = logging.getLogger(__name__)
SAFETENSORS_SUFFIX = ".safetensors"


def _looks_like_safetensors(head: bytes, file_size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 0 < header_len <= file_size - 8 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                tensors[key] = handle.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    return tensors


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_torch_file(path: Path) -> Any:
    check_torch_archive(path)
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
                f"expected {EXPECTED}; nothing in it was executed"
            ) from None
        raise WeightsError(f"{path}: not a PyTorch checkpoint ({message}); expected {EXPECTED}") from None
    except (RuntimeError, EOFError, ValueError, OSError, struct.error, UnicodeDecodeError) as exc:
        raise WeightsError(
            f"{path}: not a readable PyTorch checkpoint, or truncated ({_first_line(exc)}); expected {EXPECTED}"
        ) from None
    except Exception as exc:
        # Garbage fed to the (restricted) unpickler fails in arbitrary ways (IndexError,
        # KeyError, MemoryError for absurd declared sizes, ...); with weights_only nothing
        # was executed, so any failure means "not a checkpoint".
        raise WeightsError(
            f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)}); expected {EXPECTED}"
        ) from None


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("params_ema", "params", "state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner:
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected {EXPECTED}, found a {type(obj).__name__} that is not a dict of tensors")
    return _without_module_prefix(obj)


def _without_module_prefix(mapping: dict[str, Any]) -> dict[str, Any]:
    # Checkpoints saved from nn.DataParallel prefix every key.
    if mapping and all(k.startswith("module.") for k in mapping):
        return {k.removeprefix("module."): v for k, v in mapping.items()}
    return mapping


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a weights file and its metadata (empty for ``.pth`` files).

    The file is validated before any tensor is allocated and the tensors after
    reading (see :mod:`vapsr_video.model.validation`): what comes back is always a
    complete VapSR of sane size with finite floating-point weights.
    """
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
        raise WeightsError(f"{path}: empty file; expected {EXPECTED}")
    check_file_size(path, size)
    if path.suffix == SAFETENSORS_SUFFIX or _looks_like_safetensors(head, size):
        header = read_safetensors_header(path, size)
        check_declared_shapes(_without_module_prefix(header.shapes), str(path))
        tensors = _without_module_prefix(_read_safetensors(path))
        metadata = header.metadata
    else:
        tensors, metadata = _unwrap_state_dict(_read_torch_file(path), path), {}
    check_loaded_tensors(tensors, str(path))
    return tensors, metadata


def infer_config(state_dict: dict[str, torch.Tensor], source: str = "weights") -> ModelConfig:
    """Read the network's configuration from tensor shapes alone."""
    return config_from_shapes({key: tuple(tensor.shape) for key, tensor in state_dict.items()}, source)


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


def default_weights_path(variant: str | None = None, scale: int | None = None) -> Path:
    """The weights used when none are given: ``$VAPSR_VIDEO_WEIGHTS`` if it fits, else the bundled model.

    The environment's model fits unless ``scale`` asks for another scale, or
    ``variant`` asks for ``vapsr-s`` and it is not a VapSR-S (``"vapsr"``, the
    default variant, asks for nothing). When it does not fit, the bundled model
    for ``variant`` x``scale`` is used and a warning says so.
    """
    spec = os.environ.get(WEIGHTS_ENV, "").strip()
    if spec:
        label = f"{WEIGHTS_ENV}={spec}"
        path = resolve_weights(spec, label)
        if not path.is_file():
            raise WeightsError(f"{label}: no such weights file, nor a known model name "
                               "(see 'vapsr-video weights list')")
        known = None if Path(spec).is_file() else find_model(spec)  # a file of that name wins, as everywhere
        config = (published_config(known.variant, known.scale) if known
                  else infer_config(read_state_dict(path)[0], label))
        scale_fits = scale is None or scale == config.scale
        variant_fits = variant in (None, "vapsr") or variant == config.variant
        if scale_fits and variant_fits:
            return path
        asked = f"{variant or 'vapsr'} x{scale or config.scale}"
        log.warning("%s is a %s x%d model but %s was asked for; using the bundled %s", label, config.variant,
                    config.scale, asked, asked)
    return bundled_weights_path(variant or "vapsr", scale or 2)


def load_model(weights: str | Path | None = None, *, variant: str = "vapsr", scale: int | None = None) -> VapSR:
    """Load a VapSR from ``weights`` (a file or a known model name, see
    :mod:`vapsr_video.model.catalog`), or else from :func:`default_weights_path`.

    With explicit weights the configuration comes from the file; a ``scale`` that
    contradicts it is an error rather than a silent surprise.
    """
    path = resolve_weights(weights) if weights is not None else default_weights_path(variant, scale)
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
