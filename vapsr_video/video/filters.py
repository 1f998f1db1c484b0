"""FFmpeg filter graphs (through PyAV) for the few conversions the device path does not do.

* :func:`palette_filter`: truecolour frames -> 8-bit palette frames for GIF, with a palette
  computed for each frame (``palettegen=stats_mode=single`` + ``paletteuse=new=1``), so the
  graph never waits for the end of the video and memory stays flat. GIF stores a palette per
  frame, so nothing is lost compared with one palette for the whole file.

* :func:`deinterlace_filter`: ``bwdif`` (motion-adaptive, FFmpeg's best built-in deinterlacer), one
  frame per frame or one frame per field.
* :func:`separate_fields_filter` and :func:`weave_filter`: split woven frames into their fields and
  weave upscaled fields back together (``--deinterlace keep``).

Frames keep their timestamps through a graph: the buffer source is given the stream's time base.
"""

from __future__ import annotations

from fractions import Fraction

import av
import av.filter


class FrameFilter:
    """A configured filter graph with one input and one output: push frames in, take frames out."""

    def __init__(self, graph: av.filter.Graph, source: av.filter.FilterContext, sink: av.filter.FilterContext,
                 time_base: Fraction, *, one_to_one: bool = False, pts_divisor: int = 1,
                 output_time_base: Fraction | None = None) -> None:
        self.graph, self.source, self.sink, self.time_base = graph, source, sink, time_base
        # Filters that may emit frames between input frames (bwdif) count in a finer time base; frames
        # that come out one per input are put back on the input's clock by dividing.
        self.pts_divisor = pts_divisor
        self.output_time_base = output_time_base or time_base
        # A graph that maps each frame to one frame keeps each frame's duration: filters that sync two
        # inputs (paletteuse) guess the last frame's duration, and GIF stores durations as frame delays.
        self.durations: dict[int, int] | None = {} if one_to_one else None

    def push(self, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
        """Feed ``frame`` (None: end of stream) and return every frame the graph has ready."""
        if frame is not None:
            frame.time_base = self.time_base
            if self.durations is not None and frame.pts is not None:
                self.durations[frame.pts] = frame.duration
        self.source.push(frame)
        ready: list[av.VideoFrame] = []
        while True:
            try:
                out = self.sink.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return ready
            if self.pts_divisor != 1:
                out.pts = out.pts // self.pts_divisor if out.pts is not None else None
                out.duration = out.duration // self.pts_divisor
            out.time_base = self.output_time_base
            if self.durations is not None and out.pts in self.durations:
                out.duration = self.durations.pop(out.pts)
            ready.append(out)


def _buffer(graph: av.filter.Graph, width: int, height: int, pix_fmt: str,
            time_base: Fraction) -> av.filter.FilterContext:
    return graph.add_buffer(width=width, height=height, format=pix_fmt, time_base=time_base)


def palette_filter(width: int, height: int, pix_fmt: str, time_base: Fraction) -> FrameFilter:
    """``pix_fmt`` frames (any RGB or YUV format) -> ``pal8`` frames, each with its own best palette.

    Dithering: paletteuse's default (Bayer scale 2 would band less on gradients, sierra2_4a is FFmpeg's
    default and what users of ``ffmpeg -i x.mp4 x.gif`` with palettegen recipes know).
    """
    graph = av.filter.Graph()
    source = _buffer(graph, width, height, pix_fmt, time_base)
    to_rgb = graph.add("format", "pix_fmts=rgb24")
    split = graph.add("split")
    palette = graph.add("palettegen", "stats_mode=single:reserve_transparent=0")
    use = graph.add("paletteuse", "new=1")
    sink = graph.add("buffersink")
    source.link_to(to_rgb)
    to_rgb.link_to(split)
    split.link_to(use, 0, 0)
    split.link_to(palette, 1, 0)
    palette.link_to(use, 0, 1)
    use.link_to(sink)
    graph.configure()
    return FrameFilter(graph, source, sink, time_base, one_to_one=True)


def deinterlace_filter(width: int, height: int, pix_fmt: str, time_base: Fraction, *, per_field: bool,
                       all_frames: bool) -> FrameFilter:
    """``bwdif`` with the field order read from each frame (``parity=auto``).

    ``per_field``: one output frame per field (double rate, timestamps in ``time_base / 2``); else one per
    frame (timestamps in ``time_base``). ``all_frames``: deinterlace every frame (the stream says it is
    interlaced), else only the frames flagged interlaced.
    """
    graph = av.filter.Graph()
    source = _buffer(graph, width, height, pix_fmt, time_base)
    mode = "send_field" if per_field else "send_frame"
    bwdif = graph.add("bwdif", f"mode={mode}:parity=auto:deint={'all' if all_frames else 'interlaced'}")
    sink = graph.add("buffersink")
    source.link_to(bwdif)
    bwdif.link_to(sink)
    graph.configure()
    half = time_base / 2  # bwdif always counts in half the input's time base
    if per_field:
        return FrameFilter(graph, source, sink, time_base, output_time_base=half)
    return FrameFilter(graph, source, sink, time_base, pts_divisor=2)


def _single(name: str, arguments: str, width: int, height: int, pix_fmt: str, time_base: Fraction,
            output_time_base: Fraction) -> FrameFilter:
    graph = av.filter.Graph()
    source = _buffer(graph, width, height, pix_fmt, time_base)
    step = graph.add(name, arguments) if arguments else graph.add(name)
    sink = graph.add("buffersink")
    source.link_to(step)
    step.link_to(sink)
    graph.configure()
    return FrameFilter(graph, source, sink, time_base, output_time_base=output_time_base)


def separate_fields_filter(width: int, height: int, pix_fmt: str, time_base: Fraction) -> FrameFilter:
    """Woven frames -> one half-height frame per field, in display order (timestamps in ``time_base / 2``)."""
    return _single("separatefields", "", width, height, pix_fmt, time_base, time_base / 2)


def weave_filter(width: int, height: int, pix_fmt: str, time_base: Fraction, *, top_first: bool) -> FrameFilter:
    """Pairs of field frames (``time_base``) -> woven frames flagged interlaced (timestamps in ``time_base * 2``)."""
    return _single("weave", f"first_field={'top' if top_first else 'bottom'}", width, height, pix_fmt, time_base,
                   time_base * 2)
