"""Everything in the file besides the upscaled picture: other streams, metadata, chapters, orientation.

Audio, subtitle, data and extra video streams (cover art) are copied packet for
packet; attachments (fonts in MKV) are copied as attachments. A stream the
output container cannot hold is left out with a warning that names it.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

import av

from vapsr_video.video.containers import container_holds, keep_stream_id

log = logging.getLogger(__name__)

# Tags that describe the old encode rather than the content; they would be wrong on the new file.
STALE_TAG_PREFIXES = ("encoder", "duration", "bps", "number_of_frames", "number_of_bytes", "_statistics_",
                      "major_brand", "minor_version", "compatible_brands")


def content_tags(metadata: dict[str, str]) -> dict[str, str]:
    """Metadata worth keeping (title, language, handler, creation time, ...), minus the stale encode stats."""
    return {key: value for key, value in metadata.items()
            if not key.lower().startswith(STALE_TAG_PREFIXES)}


def describe_stream(stream: av.stream.Stream) -> str:
    """``#2 (subtitle subrip, eng, "English")`` — how a warning names a stream."""
    codec = stream.codec_context.name if stream.codec_context is not None else stream.metadata.get("mimetype", "?")
    details = [f"{stream.type} {codec}"]
    if stream.metadata.get("language"):
        details.append(stream.metadata["language"])
    if stream.metadata.get("title"):
        details.append(repr(stream.metadata["title"]))
    if stream.type == "attachment" and stream.metadata.get("filename"):
        details.append(stream.metadata["filename"])
    return f"#{stream.index} ({', '.join(details)})"


@dataclass
class CopiedStreams:
    """Input stream index -> output stream, for packets to be re-addressed while muxing."""

    by_input_index: dict[int, av.stream.Stream]
    dropped: list[str]


def _can_hold(container: av.container.OutputContainer, stream: av.stream.Stream) -> bool:
    context = stream.codec_context
    if context is None:
        return False
    return container_holds(container, context.codec.canonical_name)


def copy_other_streams(source: av.container.InputContainer, target: av.container.OutputContainer,
                       video_index: int) -> CopiedStreams:
    """Add an output stream for every input stream except the upscaled video, where the container allows."""
    copied: dict[int, av.stream.Stream] = {}
    dropped: list[str] = []
    for stream in source.streams:
        if stream.index == video_index:
            continue
        if _hidden_by_demuxer(stream):
            # MP4/MOV chapter titles are stored in a text track; the demuxer hands them over as chapters
            # (copied by copy_container_metadata) and marks the track itself "discard all", so it delivers
            # no packets. It is not a stream the user would miss, and warning about it would be false.
            log.debug("stream %s is hidden by the demuxer (a chapter track); not copied", stream.index)
            continue
        if _is_timecode_track(stream) and target.format.name in ("mov", "mp4"):
            # The muxer writes a new timecode track from the video stream's "timecode" tag (copied
            # with the video's metadata); the old track has no codec to copy packets with.
            continue
        if stream.type == "attachment":
            if _add_attachment(target, stream):
                continue
            dropped.append(describe_stream(stream))
            continue
        if stream.type not in ("audio", "subtitle", "data", "video") or not _can_hold(target, stream):
            dropped.append(describe_stream(stream))
            continue
        try:
            output = target.add_stream_from_template(stream)
        except (ValueError, av.FFmpegError) as exc:
            log.debug("cannot copy stream %s: %s", stream.index, exc)
            dropped.append(describe_stream(stream))
            continue
        output.metadata.update(content_tags(dict(stream.metadata)))
        output.disposition = stream.disposition
        keep_stream_id(stream, output)
        copied[stream.index] = output
    for description in dropped:
        log.warning("stream %s cannot be stored in a %s file and is left out; "
                    "use an .mkv output to keep it", description, target.format.name)
    return CopiedStreams(copied, dropped)


AVDISCARD_ALL = 48  # libavcodec's AVDiscard value for "this stream delivers no packets"


def _hidden_by_demuxer(stream: av.stream.Stream) -> bool:
    return stream.discard == AVDISCARD_ALL


def _is_timecode_track(stream: av.stream.Stream) -> bool:
    return stream.type == "data" and "timecode" in stream.metadata


def _add_attachment(target: av.container.OutputContainer, stream: av.stream.Stream) -> bool:
    if target.format.name != "matroska":
        return False
    name = stream.metadata.get("filename") or f"attachment-{stream.index}"
    mimetype = stream.metadata.get("mimetype") or "application/octet-stream"
    try:
        target.add_attachment(name=name, mimetype=mimetype, data=bytes(stream.data or b""))
    except (ValueError, TypeError, av.FFmpegError) as exc:
        log.debug("cannot copy attachment %s: %s", name, exc)
        return False
    return True


def copy_container_metadata(source: av.container.InputContainer, target: av.container.OutputContainer) -> None:
    target.metadata.update(content_tags(dict(source.metadata)))
    chapters = source.chapters()
    if chapters:
        try:
            target.set_chapters(chapters)
        except (ValueError, av.FFmpegError) as exc:
            log.warning("the chapters could not be copied (%s)", exc)


def display_matrix(stream: av.video.stream.VideoStream) -> list[int] | None:
    """The stream's display matrix (rotation/flip for players), as 9 integers, if it has one."""
    data = (stream.codec_context.coded_side_data or {}).get("display_matrix")
    if not data or len(data) < 36:
        return None
    return list(struct.unpack("<9i", bytes(data[:36])))


def copy_video_stream_properties(source: av.video.stream.VideoStream, target: av.video.stream.VideoStream) -> None:
    """Tags, disposition and display matrix of the upscaled video stream."""
    target.metadata.update(content_tags(dict(source.metadata)))
    target.disposition = source.disposition
    keep_stream_id(source, target)
    matrix = display_matrix(source)
    if matrix is not None:
        target.set_display_matrix(matrix)
