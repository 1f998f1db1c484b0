"""Did the decoder see the whole video? Comparing what was decoded with what the container promised.

A file cut short (a download that stopped, a copy that ran out of space, a file
truncated while it is being read) often demuxes without any error: FFmpeg only
logs "File ended prematurely" and the decoder simply runs out of packets. The
container's header still says how long the video stream is, so the job compares:

* the end of the last decoded frame with the end of the video stream (its own
  duration, or Matroska's per-stream ``DURATION`` tag; never the container's
  duration, which includes audio that may run longer than the video), and
* where the container counts its frames exactly (MP4/MOV), the frames seen
  (decoded, or skipped as damaged) with that count;
* for a Matroska file without per-stream durations (mkvmerge writes none), the
  end of every stream read (video and copied packets) with the segment's
  duration: audio longer than the video then still reaches it, while a file cut
  short ends early in all its streams. Only when every stream of the file was
  read, and only for Matroska, whose segment duration is written by the muxer
  rather than estimated from the bit rate as for raw streams.

Only the video stream's own numbers are trusted, each with a tolerance (a few
frames, or 2 % of the span) so that B-frame reordering, edit lists and rounded
durations never trip it; with a time range (batch segments) the expected end is
the range's end where the stream goes on past it. A stream whose length is not
stated in the header (raw elementary streams, live captures) is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vapsr_video.errors import InputError
from vapsr_video.video.probe import tag_seconds

TOLERANCE_FRAMES = 3  # frames of slack for reordering, edit lists and rounded durations
TOLERANCE_SHARE = 0.02  # or this share of the expected span, whichever is larger


@dataclass(frozen=True)
class Expectation:
    """What the header says about the video stream (None: not stated)."""

    end_seconds: float | None  # presentation time at which the last frame ends
    frames: int | None  # exact frame count (MP4/MOV sample tables)
    frame_seconds: float  # one frame's duration at the average rate (for the tolerance)
    start_seconds: float  # first presentation time
    file_end_seconds: float | None = None  # the whole file's declared end (Matroska without stream durations)


# Containers whose overall duration is written by the muxer (not estimated from the bit rate).
DECLARED_DURATION_FORMATS = frozenset({"matroska,webm"})


def expectation(stream: av.video.stream.VideoStream,
                container: av.container.InputContainer | None = None) -> Expectation:
    """Read the video stream's declared length (and, where it has none, the file's) before decoding starts."""
    time_base = stream.time_base or Fraction(1, 90000)
    start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
    end: float | None = None
    if stream.duration:
        end = start + float(stream.duration * time_base)
    else:
        # Matroska's tag is the track's length from zero; read as an end time it can only be early,
        # so a stream that starts late is checked less strictly, never wrongly refused.
        end = tag_seconds(stream.metadata.get("DURATION"))
    rate = stream.average_rate or stream.guessed_rate
    frame_seconds = 1.0 / float(rate) if rate else 0.04
    file_end: float | None = None
    if (end is None and container is not None and container.format.name in DECLARED_DURATION_FORMATS
            and container.duration):
        file_end = (container.start_time or 0) / av.time_base + container.duration / av.time_base
    return Expectation(end_seconds=end, frames=stream.frames or None, frame_seconds=frame_seconds,
                       start_seconds=start, file_end_seconds=file_end)


@dataclass
class Decoded:
    """What the decode thread saw, updated frame by frame."""

    frames: int = 0  # frames decoded (inside the time range, if any)
    skipped_packets: int = 0  # damaged packets skipped (each would have been a frame)
    end_seconds: float | None = None  # end of the latest decoded frame
    reached_range_end: bool = False  # stopped at the end of the time range, not at the end of the file
    other_end_seconds: float | None = None  # end of the latest packet of the other streams read
    every_stream_read: bool = False  # all streams of the file were demuxed (none left out)

    def saw(self, pts_seconds: float, duration_seconds: float) -> None:
        self.frames += 1
        end = pts_seconds + duration_seconds
        if self.end_seconds is None or end > self.end_seconds:
            self.end_seconds = end

    def saw_packet(self, pts_seconds: float, duration_seconds: float) -> None:
        end = pts_seconds + duration_seconds
        if self.other_end_seconds is None or end > self.other_end_seconds:
            self.other_end_seconds = end


def shortfall(expected: Expectation, decoded: Decoded, time_range: tuple[float, float] | None) -> str | None:
    """Why the decoded video is shorter than the header says, or None when it is complete."""
    if decoded.reached_range_end:
        return None
    target_end = expected.end_seconds
    span_start = expected.start_seconds
    if time_range is not None:
        span_start = max(span_start, time_range[0])
        if target_end is not None:
            target_end = min(target_end, time_range[1])
    if target_end is not None and target_end > span_start:
        span = target_end - span_start
        slack = max(TOLERANCE_FRAMES * expected.frame_seconds, TOLERANCE_SHARE * span)
        reached = decoded.end_seconds if decoded.end_seconds is not None else span_start
        if reached < target_end - slack:
            return f"the video stops at {reached:.2f} s of the {target_end:.2f} s its header declares"
    if expected.file_end_seconds is not None and time_range is None and decoded.every_stream_read:
        span = expected.file_end_seconds - span_start
        slack = max(TOLERANCE_FRAMES * expected.frame_seconds, TOLERANCE_SHARE * span)
        ends = [end for end in (decoded.end_seconds, decoded.other_end_seconds) if end is not None]
        reached = max(ends) if ends else span_start
        if span > 0 and reached < expected.file_end_seconds - slack:
            return f"the file stops at {reached:.2f} s of the {expected.file_end_seconds:.2f} s its header declares"
    if expected.frames and time_range is None:
        seen = decoded.frames + decoded.skipped_packets
        slack_frames = max(TOLERANCE_FRAMES, round(TOLERANCE_SHARE * expected.frames))
        if seen < expected.frames - slack_frames:
            return f"{seen} of the {expected.frames} frames its header declares could be read"
    return None


def check_complete(source: Path, expected: Expectation, decoded: Decoded, time_range: tuple[float, float] | None,
                   *, allow_partial: bool) -> str | None:
    """Raise :class:`InputError` for a short read unless ``allow_partial``; then return the reason (a warning)."""
    reason = shortfall(expected, decoded, time_range)
    if reason is not None and not allow_partial:
        raise InputError(f"{source}: truncated or cut short: {reason}; nothing was written "
                         "(--allow-partial keeps what could be decoded)")
    return reason
