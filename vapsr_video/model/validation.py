"""Refusing hostile or broken weights files before anything large is allocated.

A weights file declares shapes; trusting them blindly lets a 1 MB file ask for
gigabytes (a network built with a million features, a tensor of 2**40 zero-size
rows) or crash on a zero dimension. So, in this order:

1. the file's size is bounded (:data:`MAX_FILE_BYTES`);
2. for safetensors, the JSON header is parsed here (bounded length, bounded
   tensor count) and every tensor's dtype, shape and byte range are checked
   against the file size; for ``.pth`` zip archives, the sizes of the stored
   records are summed from the zip directory, so a compressed record cannot
   inflate past the bound;
3. the network's configuration is read from the declared shapes, within sane
   bounds (:data:`LIMITS`), and every declared shape must be exactly the shape
   that configuration's network has (built on PyTorch's ``meta`` device, which
   allocates nothing);
4. only then are the tensors read, and finally checked to be finite.

Only floating-point tensors (float32, float16, bfloat16) are accepted; float64 is
refused rather than silently narrowed, because no VapSR checkpoint is stored that
way and a file that is usually signals a mistake in whatever wrote it.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vapsr_video.errors import WeightsError
from vapsr_video.model.vapsr import ModelConfig, VapSR

EXPECTED = "a VapSR checkpoint (keys conv_first.*, body.N.*, conv_body.*, upsampler.*)"

# The largest network accepted: four times the published width, three times the depth.
# Its fp32 tensors take about 57 MB; the authors' checkpoints are under 3 MB.
LIMITS = {"num_feat": 256, "num_blocks": 64, "d_atten": 256}
# Two full sets of the largest network (BasicSR stores params and params_ema) plus slack.
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_HEADER_BYTES = 4 * 1024 * 1024  # safetensors JSON header; the bundled ones are under 25 KB
MAX_TENSORS = 4096  # the largest accepted network has under 800

SAFETENSORS_DTYPES = {"F32": 4, "F16": 2, "BF16": 2}
TORCH_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_BODY_KEY = re.compile(r"^body\.(\d+)\.")


@dataclass(frozen=True)
class SafetensorsHeader:
    """What a safetensors file declares, checked against its own size."""

    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str]


def check_file_size(path: Path, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise WeightsError(f"{path}: refused: {size} bytes, more than the {MAX_FILE_BYTES // 2**20} MiB "
                           f"any VapSR checkpoint needs; expected {EXPECTED}")


def _refuse(path: Path, why: str) -> WeightsError:
    return WeightsError(f"{path}: refused: {why}; expected {EXPECTED}")


def _dtype_refusal(path: Path, key: str, dtype: str) -> WeightsError:
    hint = " (store it as float32)" if dtype.lower() in ("f64", "float64") else ""
    return _refuse(path, f"tensor {key} has dtype {dtype}{hint}; weights must be float32, float16 or bfloat16")


def read_safetensors_header(path: Path, file_size: int) -> SafetensorsHeader:
    """Parse and check a safetensors header without letting any library allocate tensors."""
    try:
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise WeightsError(f"{path}: not a readable safetensors file (shorter than its 8-byte header length)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES:
                raise _refuse(path, f"safetensors header of {header_len} bytes (at most {MAX_HEADER_BYTES})")
            if 8 + header_len > file_size:
                raise WeightsError(f"{path}: not a readable safetensors file (truncated: the header alone "
                                   f"declares {header_len} bytes, the file has {file_size})")
            raw = handle.read(header_len)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file (header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a readable safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise WeightsError(f"{path}: not a readable safetensors file (__metadata__ is not a map of strings)")
    if len(header) > MAX_TENSORS:
        raise _refuse(path, f"{len(header)} tensors (a VapSR network has under {MAX_TENSORS})")
    data_size = file_size - 8 - header_len
    shapes: dict[str, tuple[int, ...]] = {}
    for key, entry in header.items():
        shapes[key] = _check_safetensors_entry(path, key, entry, data_size)
    return SafetensorsHeader(shapes=shapes, metadata=dict(metadata))


def _check_safetensors_entry(path: Path, key: str, entry: Any, data_size: int) -> tuple[int, ...]:
    if not isinstance(entry, dict):
        raise WeightsError(f"{path}: not a readable safetensors file (entry {key} is not an object)")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise WeightsError(f"{path}: not a readable safetensors file (tensor {key} has no dtype)")
    if dtype not in SAFETENSORS_DTYPES:
        raise _dtype_refusal(path, key, dtype)
    if (not isinstance(shape, list) or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise WeightsError(f"{path}: not a readable safetensors file (tensor {key} has shape {str(shape)[:60]})")
    if 0 in shape:
        raise _refuse(path, f"tensor {key} has a zero-size dimension {tuple(shape)}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise WeightsError(f"{path}: not a readable safetensors file (tensor {key} has no data offsets)")
    begin, end = offsets
    # math.prod on Python ints cannot overflow, so a shape of 2**60 x 2**60 is just a big number.
    declared = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
    if not 0 <= begin <= end or end - begin != declared:
        raise _refuse(path, f"tensor {key} declares shape {tuple(shape)} ({declared} bytes) "
                            f"but data offsets {begin}..{end}")
    if end > data_size:
        raise WeightsError(f"{path}: not a readable safetensors file (truncated: tensor {key} ends at byte "
                           f"{end} of a {data_size}-byte data section)")
    return tuple(shape)


def check_torch_archive(path: Path) -> None:
    """Bound what ``torch.load`` will unpack from a zip-format ``.pth`` (a no-op for other files)."""
    if not zipfile.is_zipfile(path):
        return  # legacy pickle format: torch.load refuses or reads it; the file size bound applies
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint, or truncated ({exc}); "
                           f"expected {EXPECTED}") from None
    if unpacked > MAX_FILE_BYTES:
        raise _refuse(path, f"the archive unpacks to {unpacked} bytes (at most {MAX_FILE_BYTES // 2**20} MiB)")


def config_from_shapes(shapes: Mapping[str, tuple[int, ...]], source: str = "weights") -> ModelConfig:
    """The network's configuration read from declared shapes, refused outside :data:`LIMITS`."""

    def shape(key: str) -> tuple[int, ...]:
        found = shapes.get(key)
        if found is None:
            sample = ", ".join(sorted(shapes)[:4])
            raise WeightsError(
                f"{source}: expected {EXPECTED}, found another architecture "
                f"({len(shapes)} tensors, e.g. {sample}; no {key})"
            )
        if 0 in found:
            raise WeightsError(f"{source}: refused: {key} has a zero-size dimension {found}; expected {EXPECTED}")
        return found

    first = shape("conv_first.weight")
    if len(first) != 4 or first[1:] != (3, 3, 3):
        raise WeightsError(f"{source}: conv_first.weight has shape {first}, expected (C, 3, 3, 3)")
    num_feat = first[0]
    block_ids = sorted({int(m.group(1)) for k in shapes if (m := _BODY_KEY.match(k))})
    if not block_ids or block_ids != list(range(len(block_ids))):
        raise WeightsError(f"{source}: expected VapSR blocks body.0 ... body.N, found {block_ids[:5] or 'none'}")
    d_atten = shape("body.0.proj_1.weight")[0]
    body_inputs = shape("conv_body.weight")
    sizes = {"num_feat": num_feat, "num_blocks": len(block_ids), "d_atten": d_atten}
    for name, value in sizes.items():
        if value > LIMITS[name]:
            raise WeightsError(f"{source}: refused: {name} {value} is more than any VapSR uses "
                               f"(at most {LIMITS[name]}); expected {EXPECTED}")
    if len(body_inputs) != 4 or num_feat % body_inputs[1]:
        raise WeightsError(f"{source}: conv_body.weight has shape {body_inputs}, "
                           f"expected ({num_feat}, {num_feat}/groups, 3, 3)")
    conv_groups = num_feat // body_inputs[1]
    if "upsampler.3.weight" in shapes:
        scale = 4
    else:
        out_channels = shape("upsampler.2.weight")[0]
        scale = math.isqrt(out_channels // 3)
        if scale not in (2, 3) or 3 * scale * scale != out_channels:
            raise WeightsError(f"{source}: upsampler.2 has {out_channels} outputs, expected 12 (x2) or 27 (x3)")
    return ModelConfig(scale=scale, num_feat=num_feat, num_blocks=len(block_ids),
                       d_atten=d_atten, conv_groups=conv_groups)


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a network of ``config`` has, with its shape (nothing is allocated)."""
    with torch.device("meta"):
        model = VapSR(config)
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


def check_declared_shapes(shapes: Mapping[str, tuple[int, ...]], source: str = "weights") -> ModelConfig:
    """The configuration, once every declared tensor has exactly the shape that network needs."""
    config = config_from_shapes(shapes, source)
    expected = expected_shapes(config)
    missing = sorted(expected.keys() - shapes.keys())
    extra = sorted(shapes.keys() - expected.keys())
    if missing or extra:
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "") if missing else "",
            f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else "") if extra else "",
        ) if part)
        raise WeightsError(f"{source}: does not match a VapSR network of its own shapes ({detail})")
    for key, shape in expected.items():
        if tuple(shapes[key]) != shape:
            raise WeightsError(f"{source}: refused: {key} has shape {tuple(shapes[key])}, but a VapSR of "
                               f"this configuration needs {shape}; expected {EXPECTED}")
    return config


def check_loaded_tensors(state_dict: Mapping[str, torch.Tensor], source: str = "weights") -> ModelConfig:
    """Dtypes, shapes, then finiteness of tensors already read (the order keeps the last check cheap)."""
    for key, tensor in state_dict.items():
        if tensor.dtype not in TORCH_DTYPES:
            raise _dtype_refusal(Path(source), key, str(tensor.dtype).removeprefix("torch."))
    config = check_declared_shapes({key: tuple(t.shape) for key, t in state_dict.items()}, source)
    for key, tensor in state_dict.items():
        if not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{source}: refused: tensor {key} holds NaN or infinite values; expected {EXPECTED}")
    return config
