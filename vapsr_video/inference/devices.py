"""Choosing the device and the arithmetic precision to run on."""

from __future__ import annotations

import torch

from vapsr_video.choices import PRECISION_NAMES
from vapsr_video.errors import UsageError

PRECISIONS: dict[str, torch.dtype] = dict(
    zip(PRECISION_NAMES, (torch.float32, torch.float16, torch.bfloat16), strict=True))


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when present, else the CPU; ``cuda:N`` must exist."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = resolved.index or 0
        if index >= count:
            raise UsageError(f"device {device!r} is not available (this machine has {count} CUDA device(s))")
        return torch.device("cuda", index)
    if resolved.type != "cpu":
        raise UsageError(f"unsupported device {device!r}; use cpu, cuda or cuda:N")
    return resolved


def resolve_precision(precision: str | None, device: torch.device) -> torch.dtype:
    """fp16 by default on CUDA, fp32 on the CPU; bf16 on request anywhere."""
    if precision is None or precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("fp16 needs a CUDA device; on the CPU use fp32 (default) or bf16")
    return PRECISIONS[precision]


def parse_device_list(text: str | None, fallback_device: str | None = None) -> list[str]:
    """One entry per worker: ``cuda:0,cuda:1``, ``cuda`` (every visible GPU), ``cpu`` or
    ``cpu,cpu`` (two CPU workers). Empty: ``fallback_device`` alone when given, else
    every visible GPU, else one CPU worker. (``cuda:N`` is checked when its worker
    loads its model, by ``resolve_device``.) Errors name ``--devices``, where the list
    comes from."""
    if not text:
        if fallback_device:
            text = fallback_device
        elif torch.cuda.is_available():
            return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
        else:
            return ["cpu"]
    devices: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if count == 0:
                raise UsageError("--devices cuda: no CUDA device is visible on this machine")
            devices.extend(f"cuda:{index}" for index in range(count))
        elif item == "cpu" or item.startswith("cuda:"):
            devices.append(item)
        else:
            raise UsageError(f"unknown device {item!r} in --devices; use cpu, cuda or cuda:N")
    if not devices:
        raise UsageError("--devices names no device")
    return devices
