"""Opening an input file and describing its video, with one-line errors for files that cannot be used."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from vapsr_video.choices import DEFAULT_MAX_PIXELS, MAX_DECODER_THREADS
from vapsr_video.errors import InputError
from vapsr_video.video.colour import is_native_format, native_fallback
from vapsr_video.video.pipes import STDIN_NAME, STDIN_URL, is_pipe

log = logging.getLogger(__name__)

# Demuxers that read a single still picture: such inputs are images, not videos.
IMAGE_FORMATS = frozenset({"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe",
                           "dpx_pipe", "exr_pipe", "pam_pipe", "pgm_pipe", "ppm_pipe", "qoi_pipe", "j2k_pipe",
                           "sgi_pipe", "jpegxl_pipe", "pbm_pipe", "pcx_pipe", "hdr_pipe", "psd_pipe"})


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "strerror", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_input(path: str | Path) -> av.container.InputContainer:
    """Open ``path`` for reading, or raise :class:`InputError` naming the file and why not."""
    if is_pipe(path):
        return _open_standard_input()
    source = Path(path)
    if not source.exists():
        raise InputError(f"{source}: no such file")
    if source.is_dir():
        raise InputError(f"{source}: is a folder, not a video file")
    if not os.access(source, os.R_OK):
        raise InputError(f"{source}: not readable (permission denied)")
    if source.stat().st_size == 0:
        raise InputError(f"{source}: file is empty")
    try:
        return av.open(str(source), "r")
    except av.error.InvalidDataError:
        raise InputError(f"{source}: not a media file FFmpeg can read, or truncated") from None
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        if getattr(exc, "errno", None) == errno.EACCES:
            raise InputError(f"{source}: not readable (permission denied)") from None
        raise InputError(f"{source}: cannot be opened ({_first_line(exc)})") from None


def _open_standard_input() -> av.container.InputContainer:
    # FFmpeg probes the container from the first bytes of the pipe, as it does for ``ffmpeg -i -``.
    try:
        return av.open(STDIN_URL, "r")
    except av.error.InvalidDataError:
        raise InputError(f"{STDIN_NAME}: not a media stream FFmpeg can read") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"{STDIN_NAME}: cannot be read ({_first_line(exc)})") from None


def main_video_stream(container: av.container.InputContainer, path: str | Path) -> av.video.stream.VideoStream:
    """The stream to upscale: the first video stream that is not a cover picture."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise InputError(f"{path}: has no video stream")


@dataclass(frozen=True)
class VideoInfo:
    """What a user and a scheduler need to know about an input, read without decoding it all."""

    path: Path
    container_format: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    frames: int  # from the container, or estimated from duration x frame rate
    frames_exact: bool  # True when the container states the count
    duration: float  # seconds (0.0 when unknown)
    frame_rate: float  # average frames per second (0.0 when unknown)
    start_time: float  # first presentation time of the video stream, seconds
    is_image: bool  # a still-image format (PNG, JPEG, ...), not a video


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def tag_seconds(text: str | None) -> float | None:
    """Matroska's per-stream ``DURATION`` tag, ``HH:MM:SS.nnnnnnnnn``."""
    if not text:
        return None
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def describe(container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path) -> VideoInfo:
    context = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    frame_rate = float(rate) if rate else 0.0
    start = _seconds(stream.start_time, stream.time_base) or 0.0
    duration = _seconds(stream.duration, stream.time_base)
    span = duration
    if duration is None:
        # Matroska's DURATION tag is where the stream ends, not how long it lasts: a stream that starts
        # at 0.023 s and has 20 frames of 0.04 s says 0.823 s, which would estimate 21 frames.
        duration = tag_seconds(stream.metadata.get("DURATION"))
        span = duration - start if duration is not None else None
    if duration is None and container.duration is not None:
        duration = span = container.duration / av.time_base
    duration = duration or 0.0
    exact = bool(stream.frames)
    frames = stream.frames if exact else round(max(span or 0.0, 0.0) * frame_rate)
    is_image = container.format.name in IMAGE_FORMATS
    return VideoInfo(path=path, container_format=container.format.name, codec=context.codec.canonical_name,
                     width=context.width, height=context.height,
                     pix_fmt=context.format.name if context.format else "none",
                     frames=max(frames, 1 if is_image else 0), frames_exact=exact or is_image, duration=duration,
                     frame_rate=frame_rate, start_time=start, is_image=is_image)


def check_frame_size(path: str | Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse a picture larger than ``max_pixels`` from its declared size, before anything is allocated."""
    if width * height > max_pixels:
        raise InputError(f"{path}: its pictures are {width}x{height} ({width * height:,} pixels), more than the "
                         f"limit of {max_pixels:,}; raise --max-pixels if the file is genuine")


def limit_decoder(stream: av.video.stream.VideoStream, max_pixels: int) -> None:
    """Bound what the decoder may allocate: its thread count, and the picture size (a stream that
    declares a small size and then switches to a huge one is refused by FFmpeg itself)."""
    context = stream.codec_context
    context.thread_count = min(os.cpu_count() or 1, MAX_DECODER_THREADS)
    context.options = {**context.options, "max_pixels": str(max_pixels)}


def check_pixel_format(info: VideoInfo) -> None:
    if info.pix_fmt == "none":
        raise InputError(f"{info.path}: the video stream has no decodable picture format (codec {info.codec})")
    if not is_native_format(info.pix_fmt) and native_fallback(info.pix_fmt) is None:
        raise InputError(f"{info.path}: unsupported pixel format {info.pix_fmt}")


def probe_video(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Cheaply describe a media file with a picture (video or still image).

    Raises :class:`InputError` for missing, empty, unreadable, truncated or
    non-media files, files without a video stream, pictures larger than
    ``max_pixels`` (judged from the header, before decoding), unsupported pixel
    formats, and files whose first frame cannot be decoded.
    """
    source = Path(path)
    with contextlib.closing(open_input(source)) as container:
        stream = main_video_stream(container, source)
        if not stream.codec_context.width or not stream.codec_context.height:
            raise InputError(f"{source}: the video stream has no frame size (damaged or unsupported)")
        check_frame_size(source, stream.codec_context.width, stream.codec_context.height, max_pixels)
        info = describe(container, stream, source)
        check_pixel_format(info)
        limit_decoder(stream, max_pixels)
        _decode_first_frame(container, stream, source)
    return info


def _decode_first_frame(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                        path: Path) -> None:
    """Decode one frame, so that files with a header but no usable pictures are caught early."""
    try:
        for packet in container.demux(stream):
            try:
                for _ in packet.decode():
                    return
            except av.error.InvalidDataError:
                continue  # a damaged packet; later ones may decode
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: cannot be read ({_first_line(exc)})") from None
    raise InputError(f"{path}: no video frame could be decoded (empty, truncated or damaged)")


def alpha_decoder_for(stream: av.video.stream.VideoStream) -> av.codec.context.CodecContext | None:
    """A libvpx-vp9 decoder for a VP9 stream tagged ``alpha_mode=1`` (WebM/MKV transparency), else None.

    FFmpeg's own VP9 decoder ignores the alpha layer (stored in Matroska BlockAdditional side data);
    libvpx-vp9 decodes it and returns ``yuva420p`` frames.
    """
    tagged = any(key.lower() == "alpha_mode" and value == "1" for key, value in stream.metadata.items())
    if stream.codec_context.codec.canonical_name != "vp9" or not tagged:
        return None
    try:
        decoder = av.CodecContext.create("libvpx-vp9", "r")
    except (ValueError, av.FFmpegError):
        log.warning("the VP9 stream has an alpha channel, but this FFmpeg build has no libvpx-vp9 decoder "
                    "to read it; the alpha channel is dropped")
        return None
    decoder.extradata = stream.codec_context.extradata
    decoder.thread_count = 0
    return decoder
