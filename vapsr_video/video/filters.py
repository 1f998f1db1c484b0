"""FFmpeg filter graphs (through PyAV) for the few conversions the device path does not do.

* :func:`palette_filter`: truecolour frames -> 8-bit palette frames for GIF, with a palette
  computed for each frame (``palettegen=stats_mode=single`` + ``paletteuse=new=1``), so the
  graph never waits for the end of the video and memory stays flat. GIF stores a palette per
  frame, so nothing is lost compared with one palette for the whole file.

Frames keep their timestamps through a graph: the buffer source is given the stream's time base.
"""

from __future__ import annotations

from fractions import Fraction

import av
import av.filter


class FrameFilter:
    """A configured filter graph with one input and one output: push frames in, take frames out."""

    def __init__(self, graph: av.filter.Graph, source: av.filter.FilterContext, sink: av.filter.FilterContext,
                 time_base: Fraction, *, one_to_one: bool = False) -> None:
        self.graph, self.source, self.sink, self.time_base = graph, source, sink, time_base
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
            out.time_base = self.time_base
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
