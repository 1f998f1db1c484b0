"""Which clips the filter takes, and what to tell the user about the others.

Float RGB is the native input, as with the other torch/ONNX filters: RGBS
(fp32) and RGBH (fp16). Everything else is refused when the script is built,
with the conversion line to add, because guessing a YUV matrix or range
silently gives wrong colours that nobody notices until the encode is done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vapsr_video.errors import VapsrError

FILTER_NAME = "vapsr.Upscale"

# VSColorFamily and VSSampleType from VapourSynth4.h (also vapoursynth.ColorFamily/SampleType).
UNDEFINED, GRAY, RGB, YUV = 0, 1, 2, 3
INTEGER, FLOAT = 0, 1

TO_RGBS_FROM_YUV = 'clip = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")'
TO_RGBS_PLAIN = "clip = core.resize.Point(clip, format=vs.RGBS)"  # integer RGB, and GRAY (three equal planes)


class ClipFormatError(VapsrError):
    """A clip the filter cannot take as it is."""


@dataclass(frozen=True)
class ClipDescription:
    """What the filter needs to know about its input clip."""

    width: int
    height: int
    color_family: int
    sample_type: int
    bits_per_sample: int
    format_name: str

    @classmethod
    def from_clip(cls, clip: object) -> ClipDescription:
        fmt = getattr(clip, "format", None)
        if fmt is None:
            return cls(clip.width, clip.height, UNDEFINED, INTEGER, 0, "")  # type: ignore[attr-defined]
        return cls(clip.width, clip.height, int(fmt.color_family), int(fmt.sample_type),  # type: ignore[attr-defined]
                   fmt.bits_per_sample, fmt.name)


def plane_dtype(clip: ClipDescription) -> np.dtype:
    """The sample type of the clip's planes, or a :class:`ClipFormatError` saying how to convert."""
    if clip.color_family == UNDEFINED:
        raise ClipFormatError(
            f"{FILTER_NAME}: the clip changes format from frame to frame; convert it to one format first, "
            f"e.g. {TO_RGBS_FROM_YUV}"
        )
    if clip.width == 0 or clip.height == 0:
        raise ClipFormatError(
            f"{FILTER_NAME}: the clip changes frame size from frame to frame; resize every frame to one size "
            "first, e.g. clip = core.resize.Bicubic(clip, width=1920, height=1080)"
        )
    if clip.color_family == RGB and clip.sample_type == FLOAT and clip.bits_per_sample in (16, 32):
        return np.dtype(np.float16 if clip.bits_per_sample == 16 else np.float32)
    name = clip.format_name.upper() or "this format"  # the C API spells it "Gray16", Python "GRAY16"
    accepted = "takes float RGB clips (vs.RGBS, or vs.RGBH for fp16)"
    if clip.color_family == YUV:
        how = (f"add {TO_RGBS_FROM_YUV} before it (use your source's matrix: 709 for HD, 170m for SD, "
               '2020ncl for UHD), and convert back after it, e.g. core.resize.Bicubic(clip, '
               'format=vs.YUV420P10, matrix_s="709")')
    else:
        how = f"add {TO_RGBS_PLAIN} before it"
    raise ClipFormatError(f"{FILTER_NAME} {accepted}, got {name}; {how}")
