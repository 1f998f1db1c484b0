"""The streaming video upscaler: decode -> device (YUV->RGB, model, RGB->YUV) -> encode, overlapped.

Three threads and two bounded queues keep memory flat however long the video is:

    demux/decode thread --(frame slots)--> inference worker --(upscaled planes)--> encode/mux thread
            \\------------------------ copied packets (audio, subtitles, ...) ----------/

On CUDA the decoded planes sit in a ring of pinned host buffers and are copied to
the device on a separate CUDA stream while the previous batch computes; results
come back through pinned buffers, and the encode thread waits on a CUDA event
(not a device-wide synchronize) before reading them. On the CPU the same
pipeline runs in fp32, without the CUDA parts.

Every frame keeps its own presentation timestamp and the stream its time base, so
variable frame rates and non-zero start times stay in sync with the audio.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from vapsr_video.errors import InputError, OutputError, UsageError, VapsrError
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.safe_output import atomic_output, check_output_path
from vapsr_video.video.colour import (
    ColourSpec,
    PlaneLayout,
    colour_spec,
    copy_frame_into,
    default_matrix,
    frame_from_buffer,
    is_native_format,
    native_fallback,
    plane_layout,
    rgb_to_yuv,
    samples_to_tensor,
    tensor_to_samples,
    yuv_to_rgb,
)
from vapsr_video.video.encoder import EncodeOptions, choose_encoder, configure_video_stream
from vapsr_video.video.probe import VideoInfo, check_pixel_format, describe, main_video_stream, open_input, probe_video
from vapsr_video.video.streams import (
    copy_container_metadata,
    copy_other_streams,
    copy_video_stream_properties,
)

__all__ = ["EncodeOptions", "VideoInfo", "VideoResult", "probe_video", "upscale_video"]

log = logging.getLogger(__name__)

QUEUE_BATCHES = 3  # batches in flight between two stages: enough to overlap, small enough to stay flat
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
MAX_DECODE_WARNINGS = 5


@dataclass
class VideoResult:
    frames: int  # frames written
    seconds: float  # wall-clock time of the whole job
    output_bytes: int
    decode_errors: int = 0  # damaged video packets: skipped, or decoded with concealment (see docs/video.md)
    dropped_streams: list[str] = field(default_factory=list)  # streams the output container cannot hold


class _Stopped(Exception):
    """Raised inside a stage when another stage failed or the user interrupted."""


_END = object()


@dataclass
class _FrameMeta:
    pts: int
    duration: int


class _Channel:
    """A bounded queue whose blocking calls give up as soon as the job is stopped."""

    def __init__(self, size: int, stop: threading.Event) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = stop

    def put(self, item: object) -> None:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def get(self) -> object:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                return self._queue.get(timeout=0.05)
            except queue.Empty:
                continue


class _SlotRing:
    """A fixed set of host buffers reused round-robin (pinned on CUDA, so copies can be asynchronous)."""

    def __init__(self, count: int, samples: int, dtype: torch.dtype, pinned: bool, stop: threading.Event) -> None:
        self.buffers = [torch.empty(samples, dtype=dtype, pin_memory=pinned) for _ in range(count)]
        self.arrays = [tensor_to_samples(buffer) for buffer in self.buffers]
        self._free = _Channel(count, stop)
        for index in range(count):
            self._free.put(index)

    def acquire(self) -> int:
        return self._free.get()  # type: ignore[return-value]

    def release(self, index: int) -> None:
        self._free.put(index)


def _output_colour(spec: ColourSpec, source: PlaneLayout, target: PlaneLayout) -> ColourSpec:
    """The colour description to write: the source's, re-expressed for the output's pixel family."""
    if source.family == target.family or target.family == "gray" or source.family == "gray":
        return spec
    if target.family == "rgb":
        return ColourSpec(matrix=0, full_range=True, primaries=spec.primaries, transfer=spec.transfer)
    matrix = spec.matrix if spec.matrix else default_matrix(target.width, target.height)
    return ColourSpec(matrix=matrix, full_range=False, primaries=spec.primaries, transfer=spec.transfer)


def _disk_error(exc: BaseException) -> bool:
    return getattr(exc, "errno", None) in DISK_FULL_ERRNOS


class _Job:
    """One upscale of one file: the three stages and what they share."""

    def __init__(self, source: Path, target: Path, temporary: Path, container: av.container.InputContainer,
                 upscaler: Upscaler, encode: EncodeOptions, *, batch_size: int,
                 progress: Callable[[int], None] | None, time_range: tuple[float, float] | None,
                 copy_streams: bool) -> None:
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
        self.cuda = upscaler.device.type == "cuda"

        self.video = main_video_stream(container, source)
        info = describe(container, self.video, source)
        check_pixel_format(info)
        self.info = info
        context = self.video.codec_context
        decoded_fmt = info.pix_fmt if is_native_format(info.pix_fmt) else native_fallback(info.pix_fmt)
        assert decoded_fmt is not None  # check_pixel_format refused the others
        if decoded_fmt != info.pix_fmt:
            alpha = any(c.is_alpha for c in av.VideoFormat(info.pix_fmt).components)
            log.warning("%s: pixel format %s is converted to %s on the CPU%s", source, info.pix_fmt, decoded_fmt,
                        " (the alpha channel is dropped)" if alpha else "")
        self.in_layout = plane_layout(decoded_fmt, info.width, info.height)
        self.in_colour = colour_spec(context, decoded_fmt)
        self.time_base = self.video.time_base or Fraction(1, 90000)
        rate = self.video.average_rate or self.video.guessed_rate
        self.default_step = max(1, round(1 / (rate * self.time_base))) if rate else 1

        self.dropped_streams: list[str] = []
        self.copied: dict[int, av.stream.Stream] = {}
        self.output = self._open_output(temporary)
        try:
            self._set_up_output(encode, copy_streams, rate)
        except BaseException:
            with contextlib.suppress(Exception):
                self.output.close()
            raise

        ring_size = batch_size * (QUEUE_BATCHES + 1)
        self.in_ring = _SlotRing(ring_size, self.in_layout.samples, self.in_layout.torch_dtype, self.cuda, self.stop)
        self.out_ring = (_SlotRing(QUEUE_BATCHES + 1, batch_size * self.out_layout.samples,
                                   self.out_layout.torch_dtype, True, self.stop) if self.cuda else None)
        self.decoded = _Channel(ring_size, self.stop)
        self.to_mux = _Channel(QUEUE_BATCHES * max(batch_size, 8), self.stop)

    # ----------------------------------------------------------------- setup
    def _set_up_output(self, encode: EncodeOptions, copy_streams: bool, rate: Fraction | None) -> None:
        context, info, container = self.video.codec_context, self.info, self.input
        choice = choose_encoder(context.name, self.in_layout.pix_fmt, self.output, encode)
        scale = self.upscaler.scale
        self.out_layout = plane_layout(choice.pix_fmt, info.width * scale, info.height * scale)
        self.out_colour = _output_colour(self.in_colour, self.in_layout, self.out_layout)
        self.encoder_name = choice.codec
        self.out_video = self.output.add_stream(choice.codec)
        configure_video_stream(self.out_video, choice, width=self.out_layout.width, height=self.out_layout.height,
                               time_base=self.time_base, frame_rate=rate,
                               sample_aspect_ratio=context.sample_aspect_ratio, colour=self.out_colour)
        copy_video_stream_properties(self.video, self.out_video)
        if copy_streams:
            copied = copy_other_streams(container, self.output, self.video.index)
            self.copied, self.dropped_streams = copied.by_input_index, copied.dropped
            copy_container_metadata(container, self.output)
        self._start_encoding()

    def _open_output(self, temporary: Path) -> av.container.OutputContainer:
        try:
            return av.open(str(temporary), "w")
        except ValueError:
            raise OutputError(f"{self.target}: cannot tell the output format from the extension "
                              f"{self.target.suffix or '(none)'}; use e.g. .mp4, .mkv or .mov") from None
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"{self.target}: cannot be written ({exc})") from None

    def _start_encoding(self) -> None:
        try:
            self.output.start_encoding()
        except (av.FFmpegError, OSError, ValueError) as exc:
            if _disk_error(exc):
                raise OutputError(f"{self.target}: no space left on the output device") from None
            raise OutputError(f"{self.target}: the {self.encoder_name} encoder or the "
                              f"{self.output.format.name} muxer refused the settings ({exc})") from None

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
        offset = int(self.time_range[0] / self.time_base)
        with contextlib.suppress(av.FFmpegError):
            self.input.seek(offset, stream=self.video, backward=True, any_frame=False)

    def demux_and_decode(self) -> None:
        self.video.thread_type = "AUTO"  # frame + slice threads in the decoder
        self.video.codec_context.thread_count = 0
        streams = [self.video, *(self.input.streams[index] for index in self.copied)]
        self._seek_to_start()
        last_pts: int | None = None
        warned_resize = False
        try:
            for packet in self.input.demux(streams):
                if packet.stream.index != self.video.index:
                    self._forward_packet(packet)
                    continue
                for frame in self._decode(packet):
                    if frame.is_corrupt:
                        self._note_concealed(frame)
                    pts = frame.pts
                    if pts is None:
                        pts = 0 if last_pts is None else last_pts + self.default_step
                    elif last_pts is not None and pts <= last_pts:
                        log.warning("%s: frame timestamps go backwards at %s; shifting by one tick",
                                    self.source, pts)
                        pts = last_pts + 1
                    inside = self._in_range(pts)
                    if inside is None:
                        return
                    if not inside:
                        continue
                    last_pts = pts
                    if (frame.width, frame.height, frame.format.name) != (
                            self.in_layout.width, self.in_layout.height, self.in_layout.pix_fmt):
                        if (frame.width, frame.height) != (self.in_layout.width, self.in_layout.height) \
                                and not warned_resize:
                            log.warning("%s: the frame size changes mid-stream; scaling frames to %dx%d",
                                        self.source, self.in_layout.width, self.in_layout.height)
                            warned_resize = True
                        frame = frame.reformat(width=self.in_layout.width, height=self.in_layout.height,
                                               format=self.in_layout.pix_fmt)
                    slot = self.in_ring.acquire()
                    copy_frame_into(frame, self.in_layout, self.in_ring.arrays[slot])
                    self.decoded.put((slot, _FrameMeta(pts, frame.duration or self.default_step)))
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"{self.source}: read error ({exc}); the file may be truncated or damaged") from None
        finally:
            self._finish_decoding()

    def _finish_decoding(self) -> None:
        with contextlib.suppress(_Stopped):
            self.decoded.put(_END)
            self.to_mux.put(_END)

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            return packet.decode()
        except av.error.InvalidDataError as exc:
            # Policy: skip a damaged packet and go on (a player would too); each frame keeps its own
            # timestamp, so nothing after it shifts. Counted and reported at the end.
            self.decode_errors += 1
            if self.decode_errors <= MAX_DECODE_WARNINGS:
                seconds = float(packet.pts * self.time_base) if packet.pts is not None else float("nan")
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
        copy_stream = torch.cuda.Stream(self.upscaler.device) if self.cuda else None
        pending_release: list[tuple[torch.cuda.Event, list[int]]] = []
        try:
            finished = False
            while not finished:
                batch, finished = self._next_batch()
                if not batch:
                    break
                slots = [slot for slot, _ in batch]
                if copy_stream is not None:
                    samples = self._upload_async(slots, copy_stream, pending_release)
                else:
                    samples = samples_to_tensor(np.stack([self.in_ring.arrays[slot] for slot in slots]))
                    for slot in slots:
                        self.in_ring.release(slot)
                planes = self._upscale_planes(samples)
                self._hand_over(planes, [meta for _, meta in batch])
                for event, done in pending_release[:-1]:
                    event.synchronize()  # long finished: the copy ran before the last batch computed
                    for slot in done:
                        self.in_ring.release(slot)
                del pending_release[:-1]
        finally:
            with contextlib.suppress(_Stopped):
                self.to_mux.put(_END)

    def _upload_async(self, slots: list[int], copy_stream: torch.cuda.Stream,
                      pending_release: list[tuple[torch.cuda.Event, list[int]]]) -> torch.Tensor:
        device = self.upscaler.device
        compute_stream = torch.cuda.current_stream(device)
        with torch.cuda.stream(copy_stream):
            # Allocated on the copy stream and marked as used by the compute stream, so the caching
            # allocator does not hand this memory to a later upload while the model still reads it.
            samples = torch.empty((len(slots), self.in_layout.samples), dtype=self.in_layout.torch_dtype,
                                  device=device)
            samples.record_stream(compute_stream)
            for row, slot in enumerate(slots):
                samples[row].copy_(self.in_ring.buffers[slot], non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(copy_stream)
        compute_stream.wait_event(copied)
        pending_release.append((copied, slots))
        return samples

    @torch.inference_mode()
    def _upscale_planes(self, samples: torch.Tensor) -> torch.Tensor:
        rgb = yuv_to_rgb(samples.to(self.upscaler.device, non_blocking=True), self.in_layout, self.in_colour)
        upscaled = self.upscaler(rgb.clamp_(0.0, 1.0))
        return rgb_to_yuv(upscaled, self.out_layout, self.out_colour)

    def _hand_over(self, planes: torch.Tensor, metas: list[_FrameMeta]) -> None:
        if self.out_ring is None:
            self.to_mux.put((tensor_to_samples(planes), metas, None, None))
            return
        slot = self.out_ring.acquire()
        host = self.out_ring.buffers[slot][: planes.numel()].view(planes.shape)
        host.copy_(planes, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record(torch.cuda.current_stream(self.upscaler.device))
        self.to_mux.put((self.out_ring.arrays[slot][: planes.numel()].reshape(planes.shape), metas, ready, slot))

    # ----------------------------------------------------------------- stage 3
    def encode_and_mux(self) -> None:
        producers_left = 2  # the decode thread (copied packets) and the inference worker
        while producers_left:
            item = self.to_mux.get()
            if item is _END:
                producers_left -= 1
            elif isinstance(item, av.Packet):
                self._mux_copied(item)
            else:
                self._encode_batch(*item)  # type: ignore[misc]
        self._write(self.out_video.encode(None))

    def _mux_copied(self, packet: av.Packet) -> None:
        packet.stream = self.copied[packet.stream.index]
        self._write(packet)

    def _encode_batch(self, planes: np.ndarray, metas: list[_FrameMeta], ready: torch.cuda.Event | None,
                      slot: int | None) -> None:
        if ready is not None:
            ready.synchronize()
        try:
            for row, meta in enumerate(metas):
                frame = frame_from_buffer(planes[row], self.out_layout)
                frame.pts, frame.duration, frame.time_base = meta.pts, meta.duration, self.time_base
                frame.colorspace = self.out_colour.matrix
                frame.color_range = self.out_colour.range_tag
                frame.color_primaries = self.out_colour.primaries
                frame.color_trc = self.out_colour.transfer
                packets = self._encode(frame)
                self._write(packets)
        finally:
            if slot is not None and self.out_ring is not None:
                self.out_ring.release(slot)
        self.frames_written += len(metas)
        if self.progress is not None:
            self.progress(len(metas))

    def _encode(self, frame: av.VideoFrame) -> list[av.Packet]:
        try:
            return self.out_video.encode(frame)
        except (av.FFmpegError, ValueError) as exc:
            if _disk_error(exc):
                raise
            raise OutputError(f"{self.target}: the {self.encoder_name} encoder failed ({exc})") from None

    def _write(self, packets: av.Packet | list[av.Packet]) -> None:
        self.output.mux(packets)

    # ----------------------------------------------------------------- running
    def _stage(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except _Stopped:
                pass
            except BaseException as exc:  # handed to the main thread and re-raised there
                self.errors.append(exc)
                self.stop.set()
        return run

    def run(self) -> None:
        threads = [threading.Thread(target=self._stage(body), name=f"vapsr-{name}", daemon=True)
                   for name, body in (("decode", self.demux_and_decode), ("infer", self.infer),
                                      ("encode", self.encode_and_mux))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.1)
        except BaseException:
            self.stop.set()
            for thread in threads:
                thread.join()
            raise
        if self.errors:
            raise self._user_facing(self.errors[0])
        if self.frames_written == 0:
            raise InputError(f"{self.source}: no video frame could be decoded"
                             + (" in the requested time range" if self.time_range else ""))

    def _user_facing(self, exc: BaseException) -> BaseException:
        if isinstance(exc, VapsrError):
            return exc
        if _disk_error(exc):
            return OutputError(f"{self.target}: no space left on the output device (file too large or disk full)")
        if isinstance(exc, av.FFmpegError | OSError):
            return OutputError(f"{self.target}: writing failed ({exc})")
        return exc

    def close(self) -> None:
        try:
            self.output.close()
        except (av.FFmpegError, OSError) as exc:
            if _disk_error(exc):
                raise OutputError(f"{self.target}: no space left on the output device") from None
            raise OutputError(f"{self.target}: finishing the file failed ({exc})") from None


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
) -> VideoResult:
    """Upscale the video of ``input_path`` into ``output_path``, keeping everything else in the file.

    Args:
        encode: encoder settings; default: the input's codec, bit depth and chroma layout.
        batch_size: frames per forward pass.
        progress: called from the encode thread with the number of frames finished since the last call.
        time_range: only frames whose timestamp (seconds) lies in [start, end); timestamps stay as in the source.
        copy_streams: copy audio/subtitle/data/attachment streams, metadata and chapters (False: video only).
        overwrite: replace an existing ``output_path``.

    Raises:
        InputError: the input cannot be read or has no usable video.
        OutputError: the output cannot be written (exists, is the input, no space, encoder refused).
        UsageError: encoder options that do not fit the codec or container.
    """
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, not {batch_size}")
    if time_range is not None and not time_range[0] < time_range[1]:
        raise UsageError(f"time range start {time_range[0]} must be before its end {time_range[1]}")
    source = Path(input_path)
    target = check_output_path(source, output_path, overwrite=overwrite)
    started = time.perf_counter()
    with contextlib.closing(open_input(source)) as container, atomic_output(target) as temporary:
        job = _Job(source, target, temporary, container, upscaler, encode or EncodeOptions(),
                   batch_size=batch_size, progress=progress, time_range=time_range, copy_streams=copy_streams)
        try:
            job.run()
        except BaseException:
            with contextlib.suppress(Exception):
                job.output.close()
            raise
        job.close()
    if job.decode_errors:
        skipped = job.decode_errors - job.concealed_frames
        log.warning("%s: damaged video data: %d packet(s) skipped, %d frame(s) concealed; %d frames written",
                    source, skipped, job.concealed_frames, job.frames_written)
    return VideoResult(frames=job.frames_written, seconds=time.perf_counter() - started,
                       output_bytes=target.stat().st_size, decode_errors=job.decode_errors,
                       dropped_streams=job.dropped_streams)
