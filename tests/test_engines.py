"""Engines: the choice is checked, and torch.compile gives the eager numbers with fixed shapes."""

from __future__ import annotations

import pytest
import torch

from vapsr_video.errors import UsageError
from vapsr_video.inference.engines import ENGINES, CompiledEngine
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.vapsr import VapSR


def test_unknown_engine_is_a_usage_error_listing_the_choices(tiny_model: VapSR) -> None:
    with pytest.raises(UsageError, match="unknown engine 'tensorrt'; choose from eager, compile, cuda-graphs"):
        Upscaler(model=tiny_model, device="cpu", engine="tensorrt")
    assert ENGINES == ("eager", "compile", "cuda-graphs")


def test_cuda_graphs_on_the_cpu_is_a_usage_error(tiny_model: VapSR) -> None:
    with pytest.raises(UsageError, match="cuda-graphs engine needs a CUDA device"):
        Upscaler(model=tiny_model, device="cpu", engine="cuda-graphs")


@pytest.mark.slow
def test_compiled_engine_matches_eager_and_pads_the_last_batch(tiny_model: VapSR) -> None:
    # A first compile takes about a minute on a 2-core CPU (seconds once Inductor's cache is warm).
    frames = torch.rand(5, 3, 12, 16, generator=torch.Generator().manual_seed(0))
    eager = Upscaler(model=tiny_model, device="cpu")
    compiled = Upscaler(model=tiny_model, device="cpu", engine="compile")
    assert isinstance(compiled.engine, CompiledEngine)
    full = compiled(frames[:4])
    last = compiled(frames[4:])  # a partial batch, as at the end of a video
    torch.testing.assert_close(full, eager(frames[:4]), rtol=0, atol=1e-5)
    torch.testing.assert_close(last, eager(frames[4:]), rtol=0, atol=1e-5)
    assert last.shape == (1, 3, 24, 32)
    assert compiled.engine.compiled_shapes == {(4, 12, 16)}, "the partial batch must reuse the batch-4 graph"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need CUDA")
def test_cuda_graphs_match_eager_and_reuse_the_graph_for_a_partial_batch(tiny_model: VapSR) -> None:
    frames = torch.rand(3, 3, 12, 16, generator=torch.Generator().manual_seed(0))
    eager = Upscaler(model=tiny_model, device="cuda", precision="fp32")
    graphs = Upscaler(model=tiny_model, device="cuda", precision="fp32", engine="cuda-graphs")
    full, partial = graphs(frames[:2]), graphs(frames[2:])
    torch.testing.assert_close(full, eager(frames[:2]), rtol=0, atol=1e-5)
    torch.testing.assert_close(partial, eager(frames[2:]), rtol=0, atol=1e-5)
    assert partial.shape == (1, 3, 24, 32)
