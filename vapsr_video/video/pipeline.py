"""The streaming video upscaler: decode -> device (YUV->RGB, model, RGB->YUV) -> encode, overlapped.

Three threads and two bounded queues keep memory flat however long the video is:

    demux/decode thread --(frame slots)--> inference worker --(upscaled planes)--> encode/mux thread
            \\------------------------ copied packets (audio, subtitles, ...) ----------/

On CUDA the decoded planes sit in a ring of pinned host buffers and are copied to
the device on a separate CUDA stream while the previous batch computes; results
come back through pinned buffers, and the encode thread waits on a CUDA event
(not a device-wide synchronize) before reading them. On the CPU the same
pipeline runs in fp32, without the CUDA parts. Those copies live in
``video/transfer.py`` (one interface, a CPU and a CUDA implementation); the
output container, its streams and its error messages in ``video/output_file.py``.

Every frame keeps its own presentation timestamp and the stream its time base, so
variable frame rates and non-zero start times stay in sync with the audio.

Each thread first makes the upscaler's device its current CUDA device (PyTorch keeps one per
thread, starting at cuda:0). A failing thread hands its exception over with the local variables
of its frames cleared, so the tensors they held do not outlive the failure.

Safety: the picture size is checked against ``max_pixels`` from the header before
any buffer is made, and the decoder is bounded (threads, picture size); when the
input ends, what was decoded is compared with what the header declares
(``video/completeness.py``) and a short read is an input error unless
``allow_partial``. The main thread never blocks in ``Thread.join()``: each stage
sets its own event when it ends, and on an error or a signal (Ctrl-C, SIGTERM,
SIGHUP) every stage is told to stop and waited for before the exception goes on,
so no thread is left inside FFmpeg or torch while the interpreter shuts down.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from vapsr_video.choices import DEFAULT_MAX_PIXELS
from vapsr_video.errors import InputError, UsageError
from vapsr_video.inference.cuda_support import clear_failure_frames, release_device_memory, use_device_in_this_thread
from vapsr_video.inference.precision import precision_warning
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.safe_output import atomic_output, check_output_path
from vapsr_video.video.channels import QUEUE_BATCHES, Channel, Stopped
from vapsr_video.video.colour import (
    alpha_plane,
    alpha_twin,
    colour_spec,
    copy_frame_into,
    frame_from_buffer,
    has_alpha,
    is_native_format,
    is_opaque,
    native_fallback,
    plane_layout,
    rgb_to_yuv,
    yuv_to_rgb,
)
from vapsr_video.video.completeness import Decoded, check_complete, expectation
from vapsr_video.video.encoder import EncodeOptions
from vapsr_video.video.interlace import Fields
from vapsr_video.video.output_file import OutputFile
from vapsr_video.video.pipes import PIPE_FORMATS, STDIN_NAME, STDOUT_NAME, STDOUT_URL, is_pipe, pipe_muxer
from vapsr_video.video.probe import (
    alpha_decoder_for,
    check_frame_size,
    check_pixel_format,
    describe,
    limit_decoder,
    main_video_stream,
    open_input,
)
from vapsr_video.video.side_data import FrameSideDataWatch, read_static_hdr
from vapsr_video.video.transfer import HostPlanes, make_transfer

__all__ = ["VideoResult", "upscale_video"]

log = logging.getLogger(__name__)

MAX_DECODE_WARNINGS = 5


@dataclass
class VideoResult:
    frames: int  # frames written
    seconds: float  # wall-clock time of the whole job
    output_bytes: int
    decode_errors: int = 0  # damaged video packets: skipped, or decoded with concealment (see docs/video.md)
    dropped_streams: list[str] = field(default_factory=list)  # streams the output container cannot hold
    nonfinite_pixels: int = 0  # output pixels the model gave as NaN/infinity (replaced by the Upscaler)
    partial: str | None = None  # why the input was read only in part (with allow_partial), else None


_END = object()


@dataclass
class _FrameMeta:
    pts: int
    duration: int
    alpha: tuple[np.ndarray, int] | None = None  # the source's alpha plane and its depth, when kept


class _Job:
    """One upscale of one file: the three stages and what they share.

    The output container (``OutputFile``) and the host/device copies (``Transfer``)
    live in their own modules; the job holds the input side and the threads.
    """

    def __init__(self, source: Path, target: Path, temporary: Path | str, container: av.container.InputContainer,
                 upscaler: Upscaler, encode: EncodeOptions, *, batch_size: int,
                 progress: Callable[[int], None] | None, time_range: tuple[float, float] | None,
                 copy_streams: bool, output_format: str | None = None, deinterlace: str = "frame",
                 max_pixels: int = DEFAULT_MAX_PIXELS, allow_partial: bool = False) -> None:
        self.source, self.target = source, target
        self.input = container
        self.upscaler = upscaler
        self.batch_size = batch_size
        self.progress = progress
        self.time_range = time_range
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.frames_written = 0
        self.decode_errors = 0
        self.concealed_frames = 0
        self.allow_partial = allow_partial
        self.partial: str | None = None

        self.video = main_video_stream(container, source)
        context = self.video.codec_context
        check_frame_size(source, context.width, context.height, max_pixels)
        limit_decoder(self.video, max_pixels)
        self.expected = expectation(self.video, container)
        self.decoded_so_far = Decoded()
        info = describe(container, self.video, source)
        check_pixel_format(info)
        decoded_fmt = info.pix_fmt if is_native_format(info.pix_fmt) else native_fallback(info.pix_fmt)
        assert decoded_fmt is not None  # check_pixel_format refused the others
        # Alpha (issue #11): a VP9 stream tagged alpha_mode=1 keeps its alpha in side data that only libvpx
        # decodes, so such a stream is decoded by libvpx-vp9 instead of FFmpeg's own VP9 decoder.
        self.decoder = alpha_decoder_for(self.video)
        self.source_alpha = has_alpha(info.pix_fmt) or self.decoder is not None
        self.warned_alpha = False
        if decoded_fmt != info.pix_fmt and alpha_twin(decoded_fmt) != info.pix_fmt:
            # (yuva420p -> yuv420p is no conversion: the picture planes are read as they are.)
            log.warning("%s: pixel format %s is converted to %s on the CPU", source, info.pix_fmt, decoded_fmt)
        self.time_base = self.video.time_base or Fraction(1, 90000)
        rate = self.video.average_rate or self.video.guessed_rate
        self.fields = Fields(source, self.video, deinterlace, self.time_base, rate)
        self.time_base, rate = self.fields.time_base, self.fields.frame_rate
        self.in_layout = plane_layout(decoded_fmt, info.width, self.fields.picture_height(info.height))
        self.in_colour = colour_spec(self.video.codec_context, decoded_fmt)
        self.default_step = max(1, round(1 / (rate * self.time_base))) if rate else 1

        self.output = OutputFile(temporary, target, output_format)
        self.output.set_up(container, self.video, self.in_layout, self.in_colour, encode, scale=upscaler.scale,
                           time_base=self.time_base, frame_rate=rate, copy_streams=copy_streams,
                           alpha=self.source_alpha, source_name=source, weave_top_first=self.fields.weave_top_first,
                           hdr=read_static_hdr(self.video, None if source == STDIN_NAME else source))
        self.side_data_watch = FrameSideDataWatch(source)
        assert self.output.layout is not None and self.output.colour is not None
        self.out_layout, self.out_colour = self.output.layout, self.output.colour

        self.transfer = make_transfer(upscaler.device, self.in_layout, self.out_layout, batch_size, self.stop)
        self.decoded = Channel(self.transfer.ring_size, self.stop)
        self.to_mux = Channel(QUEUE_BATCHES * max(batch_size, 8), self.stop)

    # ----------------------------------------------------------------- stage 1
    def _in_range(self, pts: int) -> bool | None:
        """True inside the time range, False before it, None after it (stop)."""
        if self.time_range is None:
            return True
        seconds = float(pts * self.time_base)
        start, end = self.time_range
        if seconds >= end:
            return None
        return seconds >= start

    def _seek_to_start(self) -> None:
        if self.time_range is None or self.time_range[0] <= 0:
            return
        offset = int(self.time_range[0] / (self.video.time_base or self.time_base))
        with contextlib.suppress(av.FFmpegError):
            self.input.seek(offset, stream=self.video, backward=True, any_frame=False)

    def demux_and_decode(self) -> None:
        self.video.thread_type = "AUTO"  # frame + slice threads in the decoder (count bounded by limit_decoder)
        streams = [self.video, *(self.input.streams[index] for index in self.output.copied)]
        self.decoded_so_far.every_stream_read = len(streams) == len(self.input.streams)
        self._seek_to_start()
        state = {"last_pts": None, "warned_resize": False}
        try:
            for packet in self.input.demux(streams):
                if packet.stream.index != self.video.index:
                    if packet.pts is not None and packet.time_base is not None:
                        self.decoded_so_far.saw_packet(float(packet.pts * packet.time_base),
                                                       float((packet.duration or 0) * packet.time_base))
                    self._forward_packet(packet)
                    continue
                for frame in self._deinterlaced(self._decode(packet)):
                    if not self._take(frame, state):
                        return
            for frame in self._deinterlaced(None):  # the frames the deinterlacer still holds
                if not self._take(frame, state):
                    return
            self.decoded_so_far.skipped_packets = self.decode_errors - self.concealed_frames
            self.partial = check_complete(self.source, self.expected, self.decoded_so_far, self.time_range,
                                          allow_partial=self.allow_partial)
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"{self.source}: read error ({exc}); the file may be truncated or damaged") from None
        finally:
            self._finish_decoding()

    def _take(self, frame: av.VideoFrame, state: dict) -> bool:
        """Put one decoded frame into the ring for the model; False when the time range is over."""
        ring = self.transfer.input_ring
        if frame.is_corrupt:
            self._note_concealed(frame)
        last_pts = state["last_pts"]
        pts = frame.pts
        if pts is None:
            pts = 0 if last_pts is None else last_pts + self.default_step
        elif last_pts is not None and pts <= last_pts:
            log.warning("%s: frame timestamps go backwards at %s; shifting by one tick", self.source, pts)
            pts = last_pts + 1
        inside = self._in_range(pts)
        if inside is None:
            self.decoded_so_far.reached_range_end = True
            return False
        if not inside:
            return True
        state["last_pts"] = pts
        self.decoded_so_far.saw(float(pts * self.time_base),
                                float((frame.duration or self.default_step) * self.time_base))
        alpha = self._alpha_of(frame) if self.source_alpha else None
        if (frame.width, frame.height, frame.format.name) != (
                self.in_layout.width, self.in_layout.height, self.in_layout.pix_fmt) and not self._planes_fit(frame):
            if (frame.width, frame.height) != (self.in_layout.width, self.in_layout.height) \
                    and not state["warned_resize"]:
                log.warning("%s: the frame size changes mid-stream; scaling frames to %dx%d",
                            self.source, self.in_layout.width, self.in_layout.height)
                state["warned_resize"] = True
            frame = frame.reformat(width=self.in_layout.width, height=self.in_layout.height,
                                   format=self.in_layout.pix_fmt)
        slot = ring.acquire()
        copy_frame_into(frame, self.in_layout, ring.arrays[slot])
        self.decoded.put((slot, _FrameMeta(pts, frame.duration or self.default_step, alpha)))
        return True

    def _deinterlaced(self, frames: list[av.VideoFrame] | None) -> list[av.VideoFrame]:
        """``frames`` through the deinterlacer, if there is one (None: flush it)."""
        if frames is None:
            return self.fields.flush()
        for frame in frames:
            self.side_data_watch.check(frame)
        return [out for frame in frames for out in self.fields.push(frame)]

    def _finish_decoding(self) -> None:
        with contextlib.suppress(Stopped):
            self.decoded.put(_END)
            self.to_mux.put(_END)

    def _planes_fit(self, frame: av.VideoFrame) -> bool:
        """A yuva420p frame holds the yuv420p planes first (gbrap: gbrp): no conversion needed."""
        return (frame.width, frame.height) == (self.in_layout.width, self.in_layout.height) \
            and frame.format.name == alpha_twin(self.in_layout.pix_fmt)

    def _alpha_of(self, frame: av.VideoFrame) -> tuple[np.ndarray, int] | None:
        """The frame's alpha plane when the output keeps it; else None, after warning once if it is not opaque."""
        if not has_alpha(frame.format.name):
            return None
        alpha, bits = alpha_plane(frame)
        if self.output.keeps_alpha:
            return alpha, bits
        if not self.warned_alpha and not is_opaque(alpha, bits):
            self.warned_alpha = True
            log.warning("%s: the alpha channel (transparency) is dropped: %s in %s cannot store it; "
                        "write .webm (VP9), .mov with --codec prores_ks, or .mkv with --codec ffv1 to keep it",
                        self.source, self.output.encoder_name, self.output.container.format.name)
        return None

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            if self.decoder is not None:
                return self.decoder.decode(packet)
            return packet.decode()
        except av.error.InvalidDataError as exc:
            # Policy: skip a damaged packet and go on (a player would too); each frame keeps its own
            # timestamp, so nothing after it shifts. Counted and reported at the end.
            self.decode_errors += 1
            if self.decode_errors <= MAX_DECODE_WARNINGS:
                seconds = float(packet.pts * packet.time_base) if packet.pts is not None else float("nan")
                log.warning("%s: skipping a damaged video packet at %.3f s (%s)", self.source, seconds, exc)
            return []

    def _note_concealed(self, frame: av.VideoFrame) -> None:
        # Policy: the decoder patched over damage in this frame; keep it (as a player shows it), so the
        # frame count and timing stay, and report it.
        self.decode_errors += 1
        self.concealed_frames += 1
        if self.decode_errors <= MAX_DECODE_WARNINGS:
            seconds = float(frame.pts * self.time_base) if frame.pts is not None else float("nan")
            log.warning("%s: damaged video data at %.3f s; the decoder concealed it (the frame is kept)",
                        self.source, seconds)

    def _forward_packet(self, packet: av.Packet) -> None:
        if packet.size == 0 or (packet.dts is None and packet.pts is None):
            return  # demuxer flush markers
        if self.time_range is not None and packet.pts is not None:
            seconds = float(packet.pts * packet.time_base)
            if not self.time_range[0] <= seconds < self.time_range[1]:
                return
        self.to_mux.put(packet)

    # ----------------------------------------------------------------- stage 2
    def _next_batch(self) -> tuple[list[tuple[int, _FrameMeta]], bool]:
        batch: list[tuple[int, _FrameMeta]] = []
        while len(batch) < self.batch_size:
            item = self.decoded.get()
            if item is _END:
                return batch, True
            batch.append(item)  # type: ignore[arg-type]
        return batch, False

    def infer(self) -> None:
        try:
            finished = False
            while not finished:
                batch, finished = self._next_batch()
                if not batch:
                    break
                samples = self.transfer.upload([slot for slot, _ in batch])
                planes = self._upscale_planes(samples)
                self.to_mux.put((self.transfer.hand_back(planes), [meta for _, meta in batch]))
                self.transfer.release_uploaded()
        finally:
            with contextlib.suppress(Stopped):
                self.to_mux.put(_END)

    @torch.inference_mode()
    def _upscale_planes(self, samples: torch.Tensor) -> torch.Tensor:
        rgb = yuv_to_rgb(samples.to(self.upscaler.device, non_blocking=True), self.in_layout, self.in_colour)
        upscaled = self.upscaler(rgb.clamp_(0.0, 1.0))
        return rgb_to_yuv(upscaled, self.out_layout, self.out_colour)

    # ----------------------------------------------------------------- stage 3
    def encode_and_mux(self) -> None:
        producers_left = 2  # the decode thread (copied packets) and the inference worker
        while producers_left:
            item = self.to_mux.get()
            if item is _END:
                producers_left -= 1
            elif isinstance(item, av.Packet):
                self.output.write_copied(item)
            else:
                self._encode_batch(*item)  # type: ignore[misc]
        self.output.write(self.output.encode(None))

    def _encode_batch(self, handed: HostPlanes, metas: list[_FrameMeta]) -> None:
        with self.transfer.read_back(handed) as planes:
            for row, meta in enumerate(metas):
                frame = frame_from_buffer(planes[row], self.out_layout)
                frame.pts, frame.duration, frame.time_base = meta.pts, meta.duration, self.time_base
                frame.colorspace = self.out_colour.matrix
                frame.color_range = self.out_colour.range_tag
                frame.color_primaries = self.out_colour.primaries
                frame.color_trc = self.out_colour.transfer
                self.output.write(self.output.encode(frame, meta.alpha))
        self.frames_written += len(metas)
        if self.progress is not None:
            self.progress(len(metas))

    # ----------------------------------------------------------------- running
    def _stage(self, body: Callable[[], None], finished: threading.Event) -> Callable[[], None]:
        def run() -> None:
            try:
                use_device_in_this_thread(self.upscaler.device)
                body()
            except Stopped:
                pass
            except BaseException as exc:  # handed to the main thread and re-raised there
                clear_failure_frames(exc)  # its traceback would keep this batch's tensors alive
                self.errors.append(exc)
                self.stop.set()
            finally:
                finished.set()
        return run

    def run(self) -> None:
        stages = (("decode", self.demux_and_decode), ("infer", self.infer), ("encode", self.encode_and_mux))
        finished = [threading.Event() for _ in stages]
        threads = [threading.Thread(target=self._stage(body, done), name=f"vapsr-{name}", daemon=True)
                   for (name, body), done in zip(stages, finished, strict=True)]
        for thread in threads:
            thread.start()
        try:
            # Events, not Thread.join(): a signal landing inside join() can make CPython take a live
            # thread for finished, and the interpreter then exits under it (std::terminate, SIGABRT).
            for done in finished:
                while not done.wait(0.1):
                    pass
        except BaseException:
            self.stop.set()
            _wait_despite_signals(finished)
            raise
        if self.errors:
            raise self.output.user_facing(self.errors[0])
        if self.frames_written == 0:
            raise InputError(f"{self.source}: no video frame could be decoded"
                             + (" in the requested time range" if self.time_range else ""))


def _wait_despite_signals(finished: list[threading.Event]) -> None:
    """Wait until every stage has ended (they stop within moments once told); a second
    Ctrl-C or SIGTERM meanwhile does not cut the wait short, the first one is still raised."""
    while True:
        try:
            for done in finished:
                while not done.wait(0.1):
                    pass
            return
        except KeyboardInterrupt:
            continue


def upscale_video(
    input_path: str | Path,
    output_path: str | Path,
    upscaler: Upscaler,
    encode: EncodeOptions | None = None,
    *,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
    time_range: tuple[float, float] | None = None,
    copy_streams: bool = True,
    overwrite: bool = False,
    output_format: str | None = None,
    deinterlace: str = "frame",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_partial: bool = False,
) -> VideoResult:
    """Upscale the video of ``input_path`` into ``output_path``, keeping everything else in the file.

    Args:
        encode: encoder settings; default: the input's codec, bit depth and chroma layout.
        batch_size: frames per forward pass.
        progress: called from the encode thread with the number of frames finished since the last call.
        time_range: only frames whose timestamp (seconds) lies in [start, end); timestamps stay as in the source.
        copy_streams: copy audio/subtitle/data/attachment streams, metadata and chapters (False: video only).
        overwrite: replace an existing ``output_path``.
        output_format: ``mkv``, ``nut`` or ``mpegts``; required when ``output_path`` is ``-`` (standard
            output, streamed as it is encoded; see ``video/pipes.py``). ``input_path`` may be ``-`` too.
        deinterlace: interlaced input is deinterlaced with bwdif, ``"frame"`` (one frame per frame) or
            ``"field"`` (one frame per field); see ``video/interlace.py``.
        max_pixels: refuse inputs whose pictures (width x height, from the header) are larger.
        allow_partial: keep the output of an input that ends before its header says (truncated, cut
            short, or shrinking while read) with a warning, instead of refusing it.

    Raises:
        InputError: the input cannot be read, has no usable video, is too large or ends early.
        OutputError: the output cannot be written (exists, is the input, no space, encoder refused).
        UsageError: encoder options that do not fit the codec or container.
    """
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, not {batch_size}")
    if time_range is not None and not time_range[0] < time_range[1]:
        raise UsageError(f"time range start {time_range[0]} must be before its end {time_range[1]}")
    if is_pipe(input_path) or is_pipe(output_path):
        return _upscale_through_pipes(input_path, output_path, upscaler, encode or EncodeOptions(),
                                      batch_size=batch_size, progress=progress, time_range=time_range,
                                      copy_streams=copy_streams, overwrite=overwrite, output_format=output_format,
                                      deinterlace=deinterlace, max_pixels=max_pixels, allow_partial=allow_partial)
    source = Path(input_path)
    target = check_output_path(source, output_path, overwrite=overwrite)
    started = time.perf_counter()
    nonfinite_before = _nonfinite_pixels(upscaler)
    with contextlib.closing(open_input(source)) as container, atomic_output(target, overwrite=overwrite) as temporary:
        job = _Job(source, target, temporary, container, upscaler, encode or EncodeOptions(),
                   batch_size=batch_size, progress=progress, time_range=time_range, copy_streams=copy_streams,
                   output_format=PIPE_FORMATS.get(output_format) if output_format else None,
                   deinterlace=deinterlace, max_pixels=max_pixels, allow_partial=allow_partial)
        _run_to_the_end(job, upscaler, target)
    _report_damage(job, source)
    return VideoResult(frames=job.frames_written, seconds=time.perf_counter() - started,
                       output_bytes=target.stat().st_size, decode_errors=job.decode_errors,
                       dropped_streams=job.output.dropped_streams,
                       nonfinite_pixels=_nonfinite_pixels(upscaler) - nonfinite_before, partial=job.partial)


def _run_to_the_end(job: _Job, upscaler: Upscaler, target: Path | str) -> None:
    """Run ``job`` and close its output; on failure abandon the output and free what it held."""
    coarse = precision_warning(upscaler.dtype, job.out_layout.bit_depth)
    if coarse is not None:
        log.warning("%s: %s", target, coarse)
    try:
        job.run()
    except BaseException:
        job.output.abandon()  # on standard output the stream is cut here; the exit code says it failed
        with contextlib.suppress(Exception):  # a broken device must not hide the error that matters
            job.transfer.close()
        if upscaler.device.type == "cuda":
            release_device_memory(upscaler.device)  # so a retry on this device starts clean
        raise
    job.transfer.close()
    job.output.close()


def _report_damage(job: _Job, source: Path | str) -> None:
    if job.partial:
        log.warning("%s: truncated or cut short (%s); kept the %d frames decoded, as --allow-partial asks",
                    source, job.partial, job.frames_written)
    if job.decode_errors:
        skipped = job.decode_errors - job.concealed_frames
        log.warning("%s: damaged video data: %d packet(s) skipped, %d frame(s) concealed; %d frames written",
                    source, skipped, job.concealed_frames, job.frames_written)


def _upscale_through_pipes(input_path: str | Path, output_path: str | Path, upscaler: Upscaler,
                           encode: EncodeOptions, *, batch_size: int, progress: Callable[[int], None] | None,
                           time_range: tuple[float, float] | None, copy_streams: bool, overwrite: bool,
                           output_format: str | None, deinterlace: str, max_pixels: int,
                           allow_partial: bool) -> VideoResult:
    """``upscale_video`` with standard input and/or output: no atomic publish for a pipe (see video/pipes.py)."""
    to_stdout = is_pipe(output_path)
    source = STDIN_NAME if is_pipe(input_path) else Path(input_path)
    if to_stdout:
        muxer: str | None = pipe_muxer(output_format)
        target, destination = STDOUT_NAME, STDOUT_URL
    else:
        muxer = PIPE_FORMATS.get(output_format) if output_format else None
        target = check_output_path(source, output_path, overwrite=overwrite)
    started = time.perf_counter()
    nonfinite_before = _nonfinite_pixels(upscaler)
    with contextlib.closing(open_input(input_path)) as container, contextlib.ExitStack() as stack:
        if not to_stdout:
            destination = stack.enter_context(atomic_output(target, overwrite=overwrite))
        job = _Job(source, target, destination, container, upscaler, encode, batch_size=batch_size,
                   progress=progress, time_range=time_range, copy_streams=copy_streams, output_format=muxer,
                   deinterlace=deinterlace, max_pixels=max_pixels, allow_partial=allow_partial)
        _run_to_the_end(job, upscaler, target)
    _report_damage(job, source)
    return VideoResult(frames=job.frames_written, seconds=time.perf_counter() - started,
                       output_bytes=0 if to_stdout else target.stat().st_size, decode_errors=job.decode_errors,
                       dropped_streams=job.output.dropped_streams,
                       nonfinite_pixels=_nonfinite_pixels(upscaler) - nonfinite_before, partial=job.partial)


def _nonfinite_pixels(upscaler: Upscaler) -> int:
    """The upscaler's running count of NaN/infinite output pixels (0 for upscalers that do not count)."""
    return int(getattr(upscaler, "nonfinite_pixels", 0))
