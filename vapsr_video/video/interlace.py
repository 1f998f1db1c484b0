"""Interlaced video: found from the stream's field order and from each frame's flag, deinterlaced with
``bwdif`` before the model sees it, and said at run time.

A woven frame holds two fields 1/50 s (or 1/60 s) apart; upscaled as a picture, its
combing becomes part of the image and no player can undo it. So by default the
fields are interpolated into whole frames (``bwdif``, motion adaptive), one per frame
(``frame``: same frame rate and timestamps) or one per field (``field``: double
rate, smooth motion, timestamps in half the stream's time base), and the output is
progressive. For deliveries that must stay interlaced, ``keep`` splits each frame
into its two fields, upscales each field as a picture of its own, and weaves the
upscaled fields back together (``output_file.py``); the output is flagged interlaced
with the input's field order.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av

from vapsr_video.errors import UsageError
from vapsr_video.video.filters import FrameFilter, deinterlace_filter, separate_fields_filter

log = logging.getLogger(__name__)

DEINTERLACE_MODES = ("frame", "field", "keep")
# AVFieldOrder: 0 unknown, 1 progressive, then the interlaced orders (display order first).
FIELD_ORDERS = {2: "top field first", 3: "bottom field first", 4: "top field first", 5: "bottom field first"}


def field_order(stream: av.video.stream.VideoStream) -> str | None:
    """``"top field first"`` / ``"bottom field first"`` when the stream says it is interlaced, else None."""
    return FIELD_ORDERS.get(stream.codec_context.field_order or 0)


class Fields:
    """The deinterlacing step of one job: a pass-through for progressive video."""

    def __init__(self, source: Path, stream: av.video.stream.VideoStream, mode: str, time_base: Fraction,
                 frame_rate: Fraction | None) -> None:
        if mode not in DEINTERLACE_MODES:
            raise UsageError(f"--deinterlace {mode!r}: choose {' or '.join(DEINTERLACE_MODES)}")
        self.source = source
        self.order = field_order(stream)
        self.keep = self.order is not None and mode == "keep"
        # Both give one picture per field: the job's clock runs at field rate, in half the time base.
        self.per_field = self.order is not None and mode in ("field", "keep")
        self.time_base = time_base / 2 if self.per_field else time_base
        self.frame_rate = frame_rate * 2 if self.per_field and frame_rate else frame_rate
        self.filter: FrameFilter | None = None
        self.input_time_base = time_base
        self.format: tuple[int, int, str] | None = None
        if mode != "frame" and self.order is None:
            log.debug("%s: --deinterlace %s: the stream does not say it is interlaced", source, mode)

    def picture_height(self, height: int) -> int:
        """The height of the pictures the model sees: a field's when fields are kept."""
        if not self.keep:
            return height
        if height % 4:
            raise UsageError(f"{self.source}: --deinterlace keep needs a frame height divisible by 4 "
                             f"(two fields of whole chroma lines), not {height}")
        return height // 2

    @property
    def weave_top_first(self) -> bool | None:
        """For ``keep``: whether the top field comes first when the output is woven; else None."""
        return None if not self.keep else self.order == "top field first"

    def _start(self, frame: av.VideoFrame) -> None:
        self.format = (frame.width, frame.height, frame.format.name)
        if self.keep:
            self.filter = separate_fields_filter(frame.width, frame.height, frame.format.name, self.input_time_base)
            log.warning("%s: interlaced video (%s): each field is upscaled on its own and the fields are woven "
                        "back; written interlaced (%s)", self.source, self.order, self.order)
            return
        self.filter = deinterlace_filter(frame.width, frame.height, frame.format.name, self.input_time_base,
                                         per_field=self.per_field, all_frames=self.order is not None)
        if self.order is not None:
            rate = f"one frame per field ({float(self.frame_rate):g} fps)" if self.per_field and self.frame_rate \
                else "one frame per field" if self.per_field else "at the frame rate"
            log.warning("%s: interlaced video (%s): deinterlaced with bwdif %s and written progressive",
                        self.source, self.order, rate)
        else:
            log.warning("%s: frames flagged interlaced in a stream that does not say so: those frames are "
                        "deinterlaced with bwdif at the frame rate and written progressive", self.source)

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        if self.filter is None:
            if self.order is None and not frame.interlaced_frame:
                return [frame]
            self._start(frame)
        assert self.filter is not None and self.format is not None
        if (frame.width, frame.height, frame.format.name) != self.format:
            frame = frame.reformat(width=self.format[0], height=self.format[1], format=self.format[2])
        return self.filter.push(frame)

    def flush(self) -> list[av.VideoFrame]:
        return self.filter.push(None) if self.filter is not None else []
