"""Ways to run the network's forward pass: eager, ``torch.compile`` and CUDA graphs.

All of them compute the same function; compiled code may reorder floating-point
sums, so results agree to about 1e-6, not bit for bit. The compiled engines work
on fixed shapes: ``torch.compile`` with ``dynamic=False`` and CUDA graphs both
specialise on (batch, height, width), so the :class:`Upscaler` pads the last,
partial batch of a run up to the batch it has been using and crops the result.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import torch
from torch import nn

from vapsr_video.choices import ENGINES
from vapsr_video.errors import UsageError

log = logging.getLogger(__name__)

# Distinct (batch, height, width) shapes an engine specialises on; further shapes run eager.
# A video has one frame size, and tiling adds at most nine tile shapes (corners, edges, middle).
MAX_SHAPES = 16

Shape = tuple[int, int, int]


def _shape_of(frames: torch.Tensor) -> Shape:
    batch, _, height, width = frames.shape
    return batch, height, width


class EagerEngine:
    """The model as it is, one kernel per layer."""

    name = "eager"
    static_shapes = False

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model(frames)


class CompiledEngine:
    """``torch.compile`` (Inductor) of the model, specialised per shape; works on the CPU and on CUDA.

    The first call at each shape compiles (seconds to a minute); later calls reuse it.
    """

    name = "compile"
    static_shapes = True

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        # Dynamo keeps at most ``recompile_limit`` specialisations per function and silently falls
        # back to eager beyond it; every Upscaler shares VapSR.forward, so make room for all of them.
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # before 2.6
        setattr(config, name, max(getattr(config, name), 4 * MAX_SHAPES))
        self.compiled: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model, dynamic=False)
        self._shapes: set[Shape] = set()  # compiled, or being compiled
        self._ready: set[Shape] = set()
        self._lock = threading.Lock()
        self._compiling = threading.Lock()  # one compilation at a time: Dynamo's tracing is not thread-safe

    @property
    def compiled_shapes(self) -> frozenset[Shape]:
        """The (batch, height, width) shapes compiled so far."""
        with self._lock:
            return frozenset(self._ready)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        shape = _shape_of(frames)
        with self._lock:
            ready = shape in self._ready
            too_many = not ready and shape not in self._shapes and len(self._shapes) >= MAX_SHAPES
            if not ready and not too_many:
                self._shapes.add(shape)
        if too_many:
            return self.model(frames)
        if ready:
            return self.compiled(frames)
        with self._compiling:
            result = self.compiled(frames)
        with self._lock:
            self._ready.add(shape)
        return result


class _Graph:
    """One captured forward pass: fixed input and output buffers."""

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        self.input = example.clone()
        side = torch.cuda.Stream(example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side):  # warm-up outside the capture: cuDNN picks its algorithms here
            for _ in range(2):
                model(self.input)
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (VapourSynth streams, the pipeline's copies) may use the
        # device while this thread captures
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = model(self.input)


class CudaGraphEngine:
    """The model's kernels captured once per shape into a CUDA graph and replayed: no per-layer
    launch cost, which is what dominates at batch 1 and with small tiles.

    The replay reads and writes fixed buffers, so calls are serialised: each call waits (on the
    device, not the host) until the previous call has copied its result out.
    """

    name = "cuda-graphs"
    static_shapes = True

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        if device.type != "cuda":
            raise UsageError("the cuda-graphs engine needs a CUDA device; on the CPU use eager or compile")
        self.model = model
        self.device = device
        self._graphs: dict[Shape, _Graph] = {}
        self._lock = threading.Lock()
        self._last_done: torch.cuda.Event | None = None

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        shape = _shape_of(frames)
        with self._lock:
            stream = torch.cuda.current_stream(self.device)
            if self._last_done is not None:
                stream.wait_event(self._last_done)  # the previous caller's result has left the buffers
            graph = self._graphs.get(shape)
            if graph is None:
                if len(self._graphs) >= MAX_SHAPES:
                    return self.model(frames)
                graph = self._graphs[shape] = _Graph(self.model, frames)
            graph.input.copy_(frames)
            graph.graph.replay()
            result = graph.output.clone()
            done = torch.cuda.Event()
            done.record(stream)
            self._last_done = done
            return result


def make_engine(name: str, model: nn.Module, device: torch.device) -> EagerEngine | CompiledEngine | CudaGraphEngine:
    """The engine called ``name`` (one of :data:`ENGINES`) for ``model`` already on ``device``."""
    if name == "eager":
        return EagerEngine(model)
    if name == "compile":
        return CompiledEngine(model)
    if name == "cuda-graphs":
        return CudaGraphEngine(model, device)
    raise UsageError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
