"""The output file of one upscale: its container, its streams, and what its failures mean to a user.

The container is opened on the temporary path that ``safe_output`` publishes when
the job succeeds; every error of the muxer or the encoder is turned into a one-line
:class:`OutputError` naming the final path, with disk-full conditions said plainly.
"""

from __future__ import annotations

import contextlib
import errno
from collections import deque
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.codec.context import Flags

from vapsr_video.errors import OutputError, UsageError, VapsrError
from vapsr_video.video.colour import ColourSpec, PlaneLayout, attach_alpha, default_matrix, plane_layout
from vapsr_video.video.encoder import EncodeOptions, choose_encoder, configure_video_stream
from vapsr_video.video.filters import FrameFilter, palette_filter, weave_filter
from vapsr_video.video.side_data import StaticHdr, add_hdr_options
from vapsr_video.video.streams import copy_container_metadata, copy_other_streams, copy_video_stream_properties
from vapsr_video.video.transport_stream import muxer_settings, read_transport_stream_info

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def is_disk_full(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) in DISK_FULL_ERRNOS


def output_colour(spec: ColourSpec, source: PlaneLayout, target: PlaneLayout) -> ColourSpec:
    """The colour description to write: the source's, re-expressed for the output's pixel family."""
    if source.family == target.family or target.family == "gray" or source.family == "gray":
        return spec
    if target.family == "rgb":
        return ColourSpec(matrix=0, full_range=True, primaries=spec.primaries, transfer=spec.transfer)
    matrix = spec.matrix if spec.matrix else default_matrix(target.width, target.height)
    return ColourSpec(matrix=matrix, full_range=False, primaries=spec.primaries, transfer=spec.transfer)


class OutputFile:
    """An output container being written to ``temporary`` on behalf of ``target``.

    Opened by the constructor; :meth:`set_up` adds the upscaled video stream (and the
    copied ones) and starts encoding; then the encode thread calls :meth:`encode` and
    :meth:`write`, and the job ends with :meth:`close` (or :meth:`abandon` on failure).
    """

    def __init__(self, temporary: Path | str, target: Path, format_name: str | None = None) -> None:
        self.target = target
        self.layout: PlaneLayout | None = None  # the upscaled video's planes, known after set_up
        self.colour: ColourSpec | None = None
        self.encoder_name = ""
        self.copied: dict[int, av.stream.Stream] = {}  # input stream index -> output stream
        self.dropped_streams: list[str] = []
        self.keeps_alpha = False  # the source's alpha plane is written (known after set_up)
        self.palette: FrameFilter | None = None  # GIF: truecolour -> palette frames
        self.weave: FrameFilter | None = None  # --deinterlace keep: upscaled fields -> interlaced frames
        self.field_times: deque[int] = deque()
        try:
            self.container = av.open(str(temporary), "w", format=format_name)
        except ValueError:
            raise OutputError(f"{target}: cannot tell the output format from the extension "
                              f"{target.suffix or '(none)'}; use e.g. .mp4, .mkv or .mov") from None
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"{target}: cannot be written ({exc})") from None

    def set_up(self, source: av.container.InputContainer, video: av.video.stream.VideoStream,
               in_layout: PlaneLayout, in_colour: ColourSpec, encode: EncodeOptions, *, scale: int,
               time_base: Fraction, frame_rate: Fraction | None, copy_streams: bool, alpha: bool = False,
               hdr: StaticHdr | None = None, source_name: Path | None = None,
               weave_top_first: bool | None = None) -> None:
        """Add the video stream (``scale`` times the input's size) and, if asked, the other streams; start.

        ``alpha``: the source has an alpha plane; :attr:`keeps_alpha` says whether the output stores it.
        ``hdr``: the source's HDR10 static metadata, handed to the encoder where it can write it.
        ``weave_top_first``: the pictures are fields (``time_base`` at field rate) to be woven into
        interlaced frames, top or bottom field first; None: progressive pictures.
        On failure the container is closed before the error propagates.
        """
        try:
            context = video.codec_context
            try:
                choice = choose_encoder(context.codec.canonical_name, in_layout.pix_fmt, self.container, encode,
                                        alpha=alpha)
            except UsageError as exc:
                raise UsageError(f"{self.target}: {exc}") from None
            self.choice = choice
            if hdr:
                add_hdr_options(choice.codec, choice.options, hdr, source_name or self.target)
            self.keeps_alpha = choice.keeps_alpha
            self.layout = plane_layout(choice.pix_fmt, in_layout.width * scale, in_layout.height * scale)
            self.colour = output_colour(in_colour, in_layout, self.layout)
            self.encoder_name = choice.codec
            self.video = self.container.add_stream(choice.codec)
            woven = weave_top_first is not None
            configure_video_stream(self.video, choice, width=self.layout.width,
                                   height=self.layout.height * (2 if woven else 1),
                                   time_base=time_base * 2 if woven else time_base,
                                   frame_rate=frame_rate / 2 if woven and frame_rate else frame_rate,
                                   sample_aspect_ratio=context.sample_aspect_ratio, colour=self.colour)
            if woven:
                self._set_up_weave(bool(weave_top_first), time_base)
            if choice.palette:
                self.palette = palette_filter(self.layout.width, self.layout.height, self.layout.pix_fmt, time_base)
            copy_video_stream_properties(video, self.video)
            # The source's alpha_mode tag (VP9 in WebM/MKV) must describe this file, not the source.
            for key in [key for key in self.video.metadata if key.lower() == "alpha_mode"]:
                del self.video.metadata[key]
            if choice.keeps_alpha and choice.codec == "libvpx-vp9":
                self.video.metadata["alpha_mode"] = "1"  # how players (and FFmpeg) know to read the alpha
            if copy_streams:
                copied = copy_other_streams(source, self.container, video.index)
                self.copied, self.dropped_streams = copied.by_input_index, copied.dropped
                copy_container_metadata(source, self.container)
                self._keep_transport_stream_program(source)
            self._start_encoding()
        except UsageError as exc:
            self.abandon()
            # The encoder choices are about this output file: say which (batch runs write many).
            raise UsageError(f"{self.target}: {exc}") from None
        except BaseException:
            self.abandon()
            raise

    def _set_up_weave(self, top_first: bool, field_time_base: Fraction) -> None:
        assert self.layout is not None
        self.weave = weave_filter(self.layout.width, self.layout.height, self.layout.pix_fmt, field_time_base,
                                  top_first=top_first)
        context = self.video.codec_context
        context.field_order = 2 if top_first else 3  # AVFieldOrder TT / BB
        # Interlaced coding tools, for the encoders that have them (x264, MPEG-2); others ignore the flags.
        context.flags = int(context.flags) | int(Flags.interlaced_dct) | int(Flags.interlaced_me)

    def _woven(self, field: av.VideoFrame | None) -> list[av.VideoFrame]:
        # weave stamps a frame with its second field's time; a frame starts with its first field.
        assert self.weave is not None
        if field is not None:
            self.field_times.append(field.pts)
        frames = self.weave.push(field)
        for frame in frames:
            first = self.field_times.popleft() if self.field_times else None
            if self.field_times:
                self.field_times.popleft()
            if first is not None:
                frame.pts = first // 2
        return frames

    def _keep_transport_stream_program(self, source: av.container.InputContainer) -> None:
        """TS to TS: the program number, PMT PID, stream ids and service name/provider of the input."""
        if self.container.format.name != "mpegts" or source.format.name != "mpegts" \
                or not Path(source.name).is_file():
            return
        info = read_transport_stream_info(source.name)
        if info is None:
            return
        options, metadata = muxer_settings(info, source.name)
        self.container.options.update(options)
        self.container.metadata.update(metadata)

    def _start_encoding(self) -> None:
        try:
            self.container.start_encoding()
        except (av.FFmpegError, OSError, ValueError) as exc:
            if is_disk_full(exc):
                raise OutputError(f"{self.target}: no space left on the output device") from None
            # The settings are the user's (codec, preset, pixel format, options): a usage error.
            raise UsageError(f"the {self.encoder_name} encoder or the "
                             f"{self.container.format.name} muxer refused the settings ({exc})") from None

    def encode(self, frame: av.VideoFrame | None, alpha: tuple[np.ndarray, int] | None = None) -> list[av.Packet]:
        """Packets for ``frame`` (None: flush the encoder); disk-full errors pass through for :meth:`user_facing`.

        ``frame`` is in :attr:`layout`; ``alpha`` (samples, bit depth; any size) is stored with it when
        :attr:`keeps_alpha`. Frames are turned into what the encoder takes (alpha twin, packed, palette).
        """
        try:
            if frame is None:
                packets = []
                for woven in self._woven(None) if self.weave is not None else []:
                    packets += self._encode_one(woven)
                if self.palette is not None:
                    for ready in self.palette.push(None):
                        packets += self._encode_palette_frame(ready)
                return packets + self.video.encode(None)
            frame = self._for_encoder(frame, alpha)
            frames = self._woven(frame) if self.weave is not None else [frame]
            return [packet for one in frames for packet in self._encode_one(one)]
        except (av.FFmpegError, ValueError) as exc:
            if is_disk_full(exc):
                raise
            raise OutputError(f"{self.target}: the {self.encoder_name} encoder failed ({exc})") from None

    def _encode_one(self, frame: av.VideoFrame) -> list[av.Packet]:
        if self.palette is not None:
            return [packet for ready in self.palette.push(frame) for packet in self._encode_palette_frame(ready)]
        return self.video.encode(frame)

    def _encode_palette_frame(self, frame: av.VideoFrame) -> list[av.Packet]:
        # The GIF encoder gives its packets no duration, and the muxer then guesses the last frame's delay;
        # one frame makes one packet, so the frame's own duration is the packet's.
        packets = self.video.encode(frame)
        for packet in packets:
            if not packet.duration and frame.duration:
                packet.duration = frame.duration
        return packets

    def _for_encoder(self, frame: av.VideoFrame, alpha: tuple[np.ndarray, int] | None) -> av.VideoFrame:
        assert self.layout is not None
        if not self.keeps_alpha:
            return frame
        if alpha is None:  # a frame without alpha in a stream with alpha: opaque
            alpha = (np.full((1, 1), 255, np.uint8), 8)
        combined = attach_alpha(frame, self.layout, *alpha)
        for name in ("pts", "duration", "time_base", "colorspace", "color_range", "color_primaries", "color_trc"):
            setattr(combined, name, getattr(frame, name))
        if combined.format.name != self.choice.opened_pix_fmt:  # packed alpha formats (rgba for PNG, ...)
            converted = combined.reformat(format=self.choice.opened_pix_fmt)
            converted.pts, converted.duration, converted.time_base = frame.pts, frame.duration, frame.time_base
            return converted
        return combined

    def write(self, packets: av.Packet | list[av.Packet]) -> None:
        self.container.mux(packets)

    def write_copied(self, packet: av.Packet) -> None:
        """Mux a packet of a copied (audio, subtitle, ...) stream into its output stream."""
        packet.stream = self.copied[packet.stream.index]
        self.write(packet)

    def user_facing(self, exc: BaseException) -> BaseException:
        """The error to show for a failure while writing: disk full and muxer errors name the output."""
        if isinstance(exc, VapsrError):
            return exc
        if is_disk_full(exc):
            return OutputError(f"{self.target}: no space left on the output device (file too large or disk full)")
        if isinstance(exc, av.FFmpegError | OSError):
            return OutputError(f"{self.target}: writing failed ({exc})")
        return exc

    def close(self) -> None:
        """Finish the file (trailer, index); the caller then publishes it."""
        try:
            self.container.close()
        except (av.FFmpegError, OSError) as exc:
            if is_disk_full(exc):
                raise OutputError(f"{self.target}: no space left on the output device") from None
            raise OutputError(f"{self.target}: finishing the file failed ({exc})") from None

    def abandon(self) -> None:
        """Close after a failure; the temporary file is discarded by the caller, so errors do not matter."""
        with contextlib.suppress(Exception):
            self.container.close()
