"""The output file of one upscale: its container, its streams, and what its failures mean to a user.

The container is opened on the temporary path that ``safe_output`` publishes when
the job succeeds; every error of the muxer or the encoder is turned into a one-line
:class:`OutputError` naming the final path, with disk-full conditions said plainly.
"""

from __future__ import annotations

import contextlib
import errno
from fractions import Fraction
from pathlib import Path

import av

from vapsr_video.errors import OutputError, UsageError, VapsrError
from vapsr_video.video.colour import ColourSpec, PlaneLayout, default_matrix, plane_layout
from vapsr_video.video.encoder import EncodeOptions, choose_encoder, configure_video_stream
from vapsr_video.video.streams import copy_container_metadata, copy_other_streams, copy_video_stream_properties

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

    def __init__(self, temporary: Path, target: Path) -> None:
        self.target = target
        self.layout: PlaneLayout | None = None  # the upscaled video's planes, known after set_up
        self.colour: ColourSpec | None = None
        self.encoder_name = ""
        self.copied: dict[int, av.stream.Stream] = {}  # input stream index -> output stream
        self.dropped_streams: list[str] = []
        try:
            self.container = av.open(str(temporary), "w")
        except ValueError:
            raise OutputError(f"{target}: cannot tell the output format from the extension "
                              f"{target.suffix or '(none)'}; use e.g. .mp4, .mkv or .mov") from None
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"{target}: cannot be written ({exc})") from None

    def set_up(self, source: av.container.InputContainer, video: av.video.stream.VideoStream,
               in_layout: PlaneLayout, in_colour: ColourSpec, encode: EncodeOptions, *, scale: int,
               time_base: Fraction, frame_rate: Fraction | None, copy_streams: bool) -> None:
        """Add the video stream (``scale`` times the input's size) and, if asked, the other streams; start.

        On failure the container is closed before the error propagates.
        """
        try:
            context = video.codec_context
            choice = choose_encoder(context.name, in_layout.pix_fmt, self.container, encode)
            self.layout = plane_layout(choice.pix_fmt, in_layout.width * scale, in_layout.height * scale)
            self.colour = output_colour(in_colour, in_layout, self.layout)
            self.encoder_name = choice.codec
            self.video = self.container.add_stream(choice.codec)
            configure_video_stream(self.video, choice, width=self.layout.width, height=self.layout.height,
                                   time_base=time_base, frame_rate=frame_rate,
                                   sample_aspect_ratio=context.sample_aspect_ratio, colour=self.colour)
            copy_video_stream_properties(video, self.video)
            if copy_streams:
                copied = copy_other_streams(source, self.container, video.index)
                self.copied, self.dropped_streams = copied.by_input_index, copied.dropped
                copy_container_metadata(source, self.container)
            self._start_encoding()
        except UsageError as exc:
            self.abandon()
            # The encoder choices are about this output file: say which (batch runs write many).
            raise UsageError(f"{self.target}: {exc}") from None
        except BaseException:
            self.abandon()
            raise

    def _start_encoding(self) -> None:
        try:
            self.container.start_encoding()
        except (av.FFmpegError, OSError, ValueError) as exc:
            if is_disk_full(exc):
                raise OutputError(f"{self.target}: no space left on the output device") from None
            # The settings are the user's (codec, preset, pixel format, options): a usage error.
            raise UsageError(f"the {self.encoder_name} encoder or the "
                             f"{self.container.format.name} muxer refused the settings ({exc})") from None

    def encode(self, frame: av.VideoFrame | None) -> list[av.Packet]:
        """Packets for ``frame`` (None: flush the encoder); disk-full errors pass through for :meth:`user_facing`."""
        try:
            return self.video.encode(frame)
        except (av.FFmpegError, ValueError) as exc:
            if is_disk_full(exc):
                raise
            raise OutputError(f"{self.target}: the {self.encoder_name} encoder failed ({exc})") from None

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
