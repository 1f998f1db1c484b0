"""One training iteration as ``vapsr-video train`` runs it on the CPU, for the benchmarks that time it.

The trainer's own parts (``prepare_for_training``, ``make_optimizer``, ``TrainingStep``,
``update_ema``), so that a benchmark measures what a training run does and each
benchmark does not build its own copy of that recipe.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

from vapsr_video.model.vapsr import ModelConfig, VapSR
from vapsr_video.training.trainer import TrainingStep, make_optimizer, prepare_for_training, update_ema

CPU = torch.device("cpu")


class TrainerIteration:
    """Forward, pixel loss, backward, Adam step and EMA update of a fresh model (seeded, so every side
    starts from the same weights). ``around`` is entered around the step alone: a benchmark's way of
    swapping a kernel for one side."""

    def __init__(self, config: ModelConfig, *, fast_kernels: bool = True, bf16: bool = False, seed: int = 0,
                 around: Callable[[], AbstractContextManager] = nullcontext) -> None:
        torch.manual_seed(seed)
        self.model = VapSR(config)
        self.ema = copy.deepcopy(self.model)
        prepare_for_training(self.model, CPU, fast_kernels, bf16)
        self.step = TrainingStep(self.model, make_optimizer(self.model, 1e-4), CPU, bf16=bf16)
        self.around = around

    def __call__(self, lr_batch: torch.Tensor, hr_batch: torch.Tensor) -> None:
        with self.around():
            self.step(lr_batch, hr_batch)
        update_ema(self.ema, self.model, 0.999, 1000)


def random_batch(config: ModelConfig, batch_size: int, patch: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A low-resolution batch of ``patch`` x ``patch`` and its high-resolution target, uniform noise
    (the time of a step does not depend on what the pixels show)."""
    high = patch * config.scale
    return (torch.rand(batch_size, 3, patch, patch, generator=generator),
            torch.rand(batch_size, 3, high, high, generator=generator))
