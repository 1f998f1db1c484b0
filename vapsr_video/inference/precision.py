"""What each arithmetic precision costs in output accuracy, and the switches that keep fp32 exact.

The error figures are the largest differences from an fp32 reference, in code
values of the output bit depth, as reported in issue #12 (measured on a CUDA GPU;
docs/gpu.md has them next to this project's own CPU measurement).
"""

from __future__ import annotations

from pathlib import Path

import torch

# bit depth -> worst difference from fp32 in code values (see the module docstring)
BF16_MAX_ERROR = {8: 4, 10: 18, 12: 73}
FP16_MAX_ERROR = {8: 1, 10: 3, 12: 11}


def precision_warning(dtype: torch.dtype, bits: int) -> str | None:
    """A one-line warning for front ends when ``dtype`` is too coarse for ``bits``-bit output, else None.

    bf16 keeps 8 significant bits, so its rounding shows in anything deeper than 8-bit
    output; fp16 (11 bits) is within a few code values up to 10 bits.
    """
    if dtype == torch.bfloat16 and bits > 8:
        known = BF16_MAX_ERROR.get(bits)
        amount = f"up to {known} code values" if known is not None else "many code values"
        return (f"bf16 is coarse for {bits}-bit output ({amount} off the fp32 result); "
                "use --precision fp16 on CUDA or fp32 for deep colour")
    return None


def use_exact_fp32_convolutions() -> None:
    """Turn off TF32 for cuDNN convolutions (on by default since PyTorch 1.7 on Ampere and later).

    TF32 keeps 10 mantissa bits, so "fp32" on CUDA would not reproduce CPU fp32 results or the
    reference scores. The flag is process-wide; fp16 and bf16 are not affected by it. The legacy
    flag is used on purpose: PyTorch refuses to read it once the newer per-operator flags differ.
    """
    torch.backends.cudnn.allow_tf32 = False


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX): only there is bf16 faster than fp32.

    oneDNN also runs bf16 on plain AVX-512 by converting, which is slower than fp32, so the
    CPU's own flags decide where they can be read (Linux).
    """
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})
