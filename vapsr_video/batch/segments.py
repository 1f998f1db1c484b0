"""Long files in segments: where to cut, and how to put the pieces back together.

A segment is the frames whose timestamps lie in ``[start, end)``, encoded on its
own (video only, original timestamps) into a file that is kept once complete.
The source's video is its main video stream as the pipeline chooses it (cover
pictures are not video); a segment file holds that one stream alone.
Cuts sit at keyframes of the source, so no segment needs frames of another to
decode. The final file takes its video packets from the segments, in order,
and every other stream (audio, subtitles, data, attachments), the chapters and
the metadata from the source, packet for packet, so it carries exactly what a
single pass would.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

from vapsr_video.errors import InputError, OutputError

SegmentRange = tuple[float | None, float | None]  # None: open end (before the first / after the last frame)


def video_packet_times(path: str | Path) -> tuple[list[Fraction], list[Fraction]]:
    """Presentation times (seconds) of all video packets and of the keyframes, sorted;
    read from the demuxer only, nothing is decoded."""
    import av

    from vapsr_video.video.probe import main_video_stream

    try:
        with av.open(str(path)) as container:
            stream = main_video_stream(container, path)
            time_base = stream.time_base
            every: list[Fraction] = []
            keyframes: list[Fraction] = []
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                when = packet.pts * time_base
                every.append(when)
                if packet.is_keyframe:
                    keyframes.append(when)
    except av.FFmpegError as exc:
        raise InputError(f"{path}: cannot read the video packets ({exc})") from None
    every.sort()
    keyframes.sort()
    return every, keyframes


def plan_segments(path: str | Path, segment_seconds: float) -> list[SegmentRange]:
    """Cut ``path`` at keyframes about every ``segment_seconds``.

    A cut is the keyframe's own time, computed as the pipeline computes frame
    times (the exact fraction rounded once to a float), so the keyframe opens
    the next segment and every frame falls on exactly one side.
    """
    every, keyframes = video_packet_times(path)
    if not every:
        raise InputError(f"{path}: the video stream has no frames")
    cuts: list[float] = []
    last_cut = every[0]
    for keyframe in keyframes:
        if keyframe - last_cut < segment_seconds:
            continue
        if every[-1] - keyframe < segment_seconds / 4:
            break  # a sliver at the end is not worth its own segment
        cuts.append(float(keyframe))
        last_cut = keyframe
    bounds: list[float | None] = [None, *cuts, None]
    return list(itertools.pairwise(bounds))


def decode_timestamps(segment_paths: Sequence[Path]) -> tuple[list[int], Fraction]:
    """New decode timestamps for the joined video packets, in decode order.

    Each segment's encoder starts its own decode clock, and some containers (MKV)
    store no decode times at all, so they are made afresh: the k-th decode time is
    the k-th smallest presentation time, shifted back by the largest reordering
    delay. That is strictly increasing across the joins and never after a packet's
    presentation time, which is what a muxer requires.
    """
    import av

    shown: list[int] = []
    time_base: Fraction | None = None
    for segment_path in segment_paths:
        with av.open(str(segment_path)) as segment:
            stream = segment.streams.video[0]
            if time_base is None:
                time_base = stream.time_base
            elif stream.time_base != time_base:
                raise OutputError(f"{segment_path}: its time base {stream.time_base} differs from the first "
                                  f"segment's {time_base}")
            for packet in segment.demux(stream):
                if packet.pts is None:
                    if packet.dts is None:
                        continue  # the flush marker
                    raise OutputError(f"{segment_path}: a video packet has no presentation time")
                shown.append(packet.pts)
    ordered = sorted(shown)
    delay = max((position - pts for position, pts in zip(ordered, shown, strict=True)), default=0)
    return [position - delay for position in ordered], time_base or Fraction(1, 1000)


def _merged_packets(source: object, others: Sequence[object], segment_paths: Sequence[Path],
                    video_out: object, stream_map: dict[int, object]) -> Iterator[tuple[float, int, object]]:
    """Video packets of the segments and the other packets of the source, in time order."""
    import av

    decode_times, time_base = decode_timestamps(segment_paths)

    def video_packets() -> Iterator[tuple[float, int, object]]:
        index = 0
        for segment_path in segment_paths:
            with av.open(str(segment_path)) as segment:
                for packet in segment.demux(segment.streams.video[0]):
                    if packet.pts is None:
                        continue  # the flush marker
                    packet.dts = decode_times[index]
                    index += 1
                    packet.stream = video_out
                    yield float(packet.dts * time_base), 0, packet

    def other_packets() -> Iterator[tuple[float, int, object]]:
        if not others:
            return
        for packet in source.demux(*others):  # type: ignore[attr-defined]
            if packet.dts is None and packet.pts is None:
                continue
            when = packet.dts if packet.dts is not None else packet.pts
            out_stream = stream_map[packet.stream.index]
            tb = packet.time_base
            packet.stream = out_stream
            yield float(when * tb), 1, packet

    yield from heapq.merge(video_packets(), other_packets(), key=lambda item: (item[0], item[1]))


def assemble(source_path: str | Path, segment_paths: Sequence[Path], output_path: str | Path) -> int:
    """Write ``output_path`` from the encoded segments and the source's other streams.

    Returns the number of video packets (frames) written. ``output_path`` should be
    a temporary path; the caller renames it into place.
    """
    import av

    if not segment_paths:
        raise OutputError(f"{output_path}: no segments to assemble")
    try:
        source = av.open(str(source_path))
    except av.FFmpegError as exc:
        raise InputError(f"{source_path}: cannot open ({exc})") from None
    from vapsr_video.video.probe import main_video_stream
    from vapsr_video.video.streams import (
        copy_container_metadata,
        copy_other_streams,
        copy_video_stream_properties,
    )

    frames = 0
    try:
        main_video = main_video_stream(source, source_path)
        with av.open(str(segment_paths[0])) as first:
            output = av.open(str(output_path), "w")
            try:
                # The same stream layout, tags and chapters as a single pass writes.
                video_out = output.add_stream_from_template(first.streams.video[0])
                copy_video_stream_properties(main_video, video_out)
                copied = copy_other_streams(source, output, main_video.index)
                copy_container_metadata(source, output)
            except BaseException:
                output.close()
                raise
        stream_map = dict(copied.by_input_index)
        others = [source.streams[index] for index, stream in stream_map.items() if stream.type != "attachment"]
        try:
            for _, is_other, packet in _merged_packets(source, others, segment_paths, video_out, stream_map):
                output.mux(packet)
                if not is_other:
                    frames += 1
        finally:
            output.close()
    except av.FFmpegError as exc:
        raise OutputError(f"{output_path}: cannot assemble the segments ({exc})") from None
    finally:
        source.close()
    return frames
