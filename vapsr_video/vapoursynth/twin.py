"""``upscale(clip, ...)``: the filter in pure Python, for hosts where the native plugin cannot load.

Same arguments and the same frames as ``core.vapsr.Upscale`` (both run
:class:`~vapsr_video.vapoursynth.processor.FrameProcessor`), but built on
``std.ModifyFrame``, which computes one frame at a time: on a GPU the native
plugin keeps ``num_streams`` frames in flight and is faster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import vapoursynth as vs

from vapsr_video.errors import VapsrError
from vapsr_video.vapoursynth.formats import ClipDescription
from vapsr_video.vapoursynth.processor import FilterOptions, FrameProcessor, describe_failure


def upscale(
    clip: vs.VideoNode,
    scale: int | None = None,
    model: str | None = None,
    weights: str | Path | None = None,
    device: str | None = None,
    num_streams: int | None = None,
    tilesize: int | None = None,
    overlap: int | None = None,
    fp16: bool | None = None,
    engine: str | None = None,
) -> vs.VideoNode:
    """Upscale a float RGB clip (RGBS or RGBH) with VapSR; raises ``vapoursynth.Error`` on bad input."""
    options = FilterOptions(scale=scale, model=model, weights=weights, device=device, num_streams=num_streams,
                            tilesize=tilesize, overlap=overlap, fp16=fp16, engine=engine)
    try:
        processor = FrameProcessor(ClipDescription.from_clip(clip), options)
    except VapsrError as exc:
        raise vs.Error(describe_failure(exc)) from None
    core = vs.core
    canvas = core.std.BlankClip(clip, width=clip.width * processor.scale, height=clip.height * processor.scale,
                                keep=True)

    def upscale_frame(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        blank, source = f
        result = blank.copy()
        result.props.clear()
        result.props.update(source.props)  # every property passes through, as in the native plugin
        try:
            processor.process([np.asarray(source[p]) for p in range(3)],
                              [np.asarray(result[p]) for p in range(3)])
        except Exception as exc:
            raise vs.Error(describe_failure(exc, n)) from None
        return result

    return core.std.ModifyFrame(canvas, clips=[canvas, clip], selector=upscale_frame)
