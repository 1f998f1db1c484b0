"""Moving frames between the host and the device for the inference worker.

The decode thread writes each frame's planes into a slot of :attr:`Transfer.input_ring`;
the inference worker turns a batch of slots into one tensor on the device
(:meth:`Transfer.upload`), runs the model, and gives the result back to the host
(:meth:`Transfer.hand_back`); the encode thread reads it (:meth:`Transfer.read_back`).

On the CPU this is a stack and a view. On CUDA the slots are pinned host buffers,
uploads run on their own CUDA stream while the previous batch computes, and
results come back through a ring of pinned buffers; events, not device-wide
synchronizes, order the three threads:

* an input slot is reused only after the event recorded behind its copy has completed;
* the device tensor a copy fills is allocated on the copy stream and recorded on the
  compute stream, so the caching allocator cannot give its memory to a later upload
  while the model still reads it;
* the encode thread reads an output slot only after the event recorded behind its copy.

The events the host waits on are blocking ones: a waiting thread sleeps instead of spinning on a
CPU core that the decoder and the encoder need. The pinned buffers come from the process-wide pool
(``inference/cuda_support.py``) and go back to it when the job ends (:meth:`Transfer.close`), after
which PyTorch's cache of pinned blocks is emptied: page-locked memory kept between jobs stays under
the pool's limit however many frame sizes a batch goes through.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from vapsr_video.inference.cuda_support import PinnedBufferPool, empty_pinned_cache, shared_pinned_pool
from vapsr_video.video.channels import QUEUE_BATCHES, SlotRing
from vapsr_video.video.colour import PlaneLayout, samples_to_tensor, tensor_to_samples


@dataclass
class HostPlanes:
    """One batch of upscaled planes on its way to the encode thread."""

    planes: np.ndarray  # batch x samples of the output layout
    ready: torch.cuda.Event | None = None  # None: already there (CPU)
    slot: int | None = None  # the output ring slot it occupies (CUDA)


class Transfer:
    """The CPU implementation; also the interface the CUDA one follows."""

    def __init__(self, in_layout: PlaneLayout, batch_size: int, stop: threading.Event, *, pinned: bool = False,
                 pool: PinnedBufferPool | None = None) -> None:
        self.in_layout = in_layout
        self.input_ring = SlotRing(batch_size * (QUEUE_BATCHES + 1), in_layout.samples, in_layout.torch_dtype,
                                   pinned, stop, pool)

    @property
    def ring_size(self) -> int:
        """How many decoded frames can wait for the model."""
        return len(self.input_ring.buffers)

    def upload(self, slots: list[int]) -> torch.Tensor:
        """The samples of ``slots`` as one batch x samples tensor (on the CPU the slots are free again at once)."""
        samples = samples_to_tensor(np.stack([self.input_ring.arrays[slot] for slot in slots]))
        for slot in slots:
            self.input_ring.release(slot)
        return samples

    def release_uploaded(self) -> None:
        """Free the input slots whose copies are certainly done (called after each batch is handed back)."""

    def hand_back(self, planes: torch.Tensor) -> HostPlanes:
        """The model's output planes (batch x samples), on their way to the host."""
        return HostPlanes(tensor_to_samples(planes))

    @contextlib.contextmanager
    def read_back(self, batch: HostPlanes) -> Iterator[np.ndarray]:
        """In the encode thread: the planes once they are on the host; their slot is freed afterwards."""
        yield batch.planes

    def close(self) -> None:
        """At the end of the job, success or failure, once its threads are gone: give the buffers back."""
        self.input_ring.close()


class CudaTransfer(Transfer):
    """Pinned input and output rings, a copy stream, and events between the threads."""

    def __init__(self, in_layout: PlaneLayout, out_layout: PlaneLayout, batch_size: int, stop: threading.Event,
                 device: torch.device, pool: PinnedBufferPool | None = None) -> None:
        pool = shared_pinned_pool() if pool is None else pool
        super().__init__(in_layout, batch_size, stop, pinned=True, pool=pool)
        self.device = device
        self.output_ring = SlotRing(QUEUE_BATCHES + 1, batch_size * out_layout.samples, out_layout.torch_dtype,
                                    True, stop, pool)
        self._copy_stream: torch.cuda.Stream | None = None
        self._pending_release: list[tuple[torch.cuda.Event, list[int]]] = []

    def upload(self, slots: list[int]) -> torch.Tensor:
        if self._copy_stream is None:
            # Made by the inference worker on its first batch, like the rest of its CUDA state.
            self._copy_stream = torch.cuda.Stream(self.device)
        copy_stream = self._copy_stream
        compute_stream = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(copy_stream):
            # Allocated on the copy stream and marked as used by the compute stream, so the caching
            # allocator does not hand this memory to a later upload while the model still reads it.
            samples = torch.empty((len(slots), self.in_layout.samples), dtype=self.in_layout.torch_dtype,
                                  device=self.device)
            samples.record_stream(compute_stream)
            for row, slot in enumerate(slots):
                samples[row].copy_(self.input_ring.buffers[slot], non_blocking=True)
            copied = torch.cuda.Event(blocking=True)  # waited on by the host in release_uploaded
            copied.record(copy_stream)
        compute_stream.wait_event(copied)
        self._pending_release.append((copied, slots))
        return samples

    def release_uploaded(self) -> None:
        # All but the newest upload: those copies ran before the batch just handed back computed.
        for event, done in self._pending_release[:-1]:
            event.synchronize()  # long finished: the copy ran before the last batch computed
            for slot in done:
                self.input_ring.release(slot)
        del self._pending_release[:-1]

    def hand_back(self, planes: torch.Tensor) -> HostPlanes:
        slot = self.output_ring.acquire()
        host = self.output_ring.buffers[slot][: planes.numel()].view(planes.shape)
        host.copy_(planes, non_blocking=True)
        ready = torch.cuda.Event(blocking=True)  # the encode thread sleeps on it, not spins
        ready.record(torch.cuda.current_stream(self.device))
        return HostPlanes(self.output_ring.arrays[slot][: planes.numel()].reshape(planes.shape), ready, slot)

    @contextlib.contextmanager
    def read_back(self, batch: HostPlanes) -> Iterator[np.ndarray]:
        if batch.ready is not None:
            batch.ready.synchronize()
        try:
            yield batch.planes
        finally:
            if batch.slot is not None:
                self.output_ring.release(batch.slot)

    def close(self) -> None:
        # After a failure copies may still be queued on the device: the buffers go back to the pool
        # (and to the next job) only once nothing reads or writes them any more.
        torch.cuda.synchronize(self.device)
        self._pending_release.clear()
        self.input_ring.close()
        self.output_ring.close()
        empty_pinned_cache()  # what the pool let go of goes back to the system, not to PyTorch's cache


def make_transfer(device: torch.device, in_layout: PlaneLayout, out_layout: PlaneLayout, batch_size: int,
                  stop: threading.Event) -> Transfer:
    """The transfer for ``device``: pinned rings and a copy stream on CUDA, plain arrays elsewhere."""
    if device.type == "cuda":
        return CudaTransfer(in_layout, out_layout, batch_size, stop, device)
    return Transfer(in_layout, batch_size, stop)
