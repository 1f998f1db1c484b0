"""The VapSR training loop: L1 (or MSE) loss, Adam, cosine learning rate, EMA weights, resumable.

Checkpoints hold everything needed to continue bit for bit on the CPU (model,
EMA, optimiser, iteration); the data stream is a pure function of (seed,
iteration), so a resumed run sees the same batches it would have seen.

``TrainingStep`` is the one optimiser step used both by the loop and by the
time-budget calibration, so the calibration times what training will run.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from vapsr_video.host_memory import retain_freed_memory
from vapsr_video.inference.devices import resolve_device
from vapsr_video.model.phase_split import use_phase_split
from vapsr_video.model.vapsr import VapSR, published_config
from vapsr_video.model.weights import build_model, read_state_dict, save_weights
from vapsr_video.safe_output import atomic_output
from vapsr_video.training.cpu_bf16 import cpu_has_native_bf16, use_bf16_pointwise
from vapsr_video.training.data import PairedPatches
from vapsr_video.training.deferred_stop import DeferredStop
from vapsr_video.training.fast_depthwise import use_fast_depthwise
from vapsr_video.training.validation import ValidationSet

log = logging.getLogger("vapsr_video.train")


@dataclass
class TrainConfig:
    variant: str
    scale: int
    data: list[str]
    out_dir: str
    iterations: int = 0  # 0: fit to time_budget, else to the time left before the deadline
    time_budget: float = 0.0  # seconds; used to choose iterations when iterations == 0
    deadline: float = 0.0  # Unix time; past it the run checkpoints and exports, done or not (0: none)
    batch_size: int = 16
    lr_patch: int = 48
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup: int = 100
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    validate_every: int = 250
    log_every: int = 50
    validation: str | None = None  # a folder of HR images (Set5)
    seed: int = 0
    device: str | None = None
    warm_start: str | None = None  # weights whose body initialises this model
    compile: bool = False  # torch.compile the model (never the step: its learning rate changes every iteration)
    threads: int = 0
    fast_kernels: bool = True  # the faster depthwise backward on the CPU (fast_depthwise.py)
    bf16: bool = True  # autocast on CUDA; on CPUs with native bf16, the 1x1 convolutions (cpu_bf16.py)
    loss: str = "l1"  # a key of PIXEL_LOSSES
    notes: dict[str, str] = field(default_factory=dict)


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr`` at the last iteration."""
    if iteration < config.warmup:
        return config.lr * (iteration + 1) / config.warmup
    progress = (iteration - config.warmup) / max(1, config.iterations - config.warmup)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def warm_start(model: VapSR, weights: str) -> list[str]:
    """Copy every tensor of ``weights`` whose name and shape fit ``model``; return what was copied."""
    source, _ = read_state_dict(weights)
    target = model.state_dict()
    copied = [k for k, v in source.items() if k in target and target[k].shape == v.shape]
    model.load_state_dict({**target, **{k: source[k] for k in copied}})
    return copied


def prepare_for_training(model: VapSR, device: torch.device, fast_kernels: bool = True,
                         bf16: bool = True) -> VapSR:
    """In place: channels-last everywhere (the blocks' LayerNorm leaves that layout anyway) and, on the
    CPU, the faster depthwise backward and, with ``bf16`` on a CPU that has it, bf16 1x1 convolutions.
    Parameter names stay as they are.

    On the CPU it also makes this process keep freed host memory for reuse (``host_memory``).
    """
    model.to(memory_format=torch.channels_last)
    if device.type == "cpu":
        retain_freed_memory()
    if fast_kernels and device.type == "cpu":
        use_fast_depthwise(model)
    if uses_cpu_bf16(device, bf16):
        use_bf16_pointwise(model)
    return model


def uses_cpu_bf16(device: torch.device, bf16: bool) -> bool:
    """Whether training on ``device`` runs its 1x1 convolutions in bf16 (the CPU's own bf16 only)."""
    return bf16 and device.type == "cpu" and cpu_has_native_bf16()


def precision_summary(device: torch.device, bf16: bool) -> str:
    """How a training run on ``device`` computes, for logs and the exported metadata."""
    if device.type == "cuda" and bf16:
        return "bf16 autocast"
    if uses_cpu_bf16(device, bf16):
        return "float32, 1x1 convolutions in bf16"
    return "float32"


def make_optimizer(model: VapSR, lr: float) -> torch.optim.Adam:
    """Adam with betas 0.9/0.99: fused on the CPU, multi-tensor ("foreach") on CUDA.

    One Adam step for VapSR x2 on the 2-core VM: 25 ms as a per-parameter loop (PyTorch's CPU
    default), 14 ms foreach, 2.6 ms fused. On CUDA foreach keeps the step counters on the CPU,
    as resuming expects. All three write the same state dict.
    """
    on_cpu = next(model.parameters()).device.type == "cpu"
    kind = {"fused": True} if on_cpu else {"foreach": True}
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99), **kind)


@torch.no_grad()
def update_ema(ema: VapSR, model: VapSR, ema_decay: float, iteration: int) -> None:
    """Move the EMA weights towards the model's, in one multi-tensor kernel."""
    # The usual bias correction: early on the EMA follows the model closely.
    decay = min(ema_decay, (1 + iteration) / (10 + iteration))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (this device's, not GPU 0's), so wall-clock timing is real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# L1 is the authors' loss; MSE is what PSNR measures, for a last fine-tuning run from trained weights.
PIXEL_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


class TrainingStep:
    """One training step: forward (bf16 autocast on CUDA), pixel loss, backward, optimiser step.

    With ``compile``, the model is compiled, not this step: the learning rate changes every
    iteration and would make a compiled step recompile on older PyTorch.
    """

    def __init__(self, model: VapSR, optimizer: torch.optim.Optimizer, device: torch.device,
                 compile: bool = False, bf16: bool = True, loss: str = "l1") -> None:
        self.model, self.optimizer, self.device = model, optimizer, device
        self.loss = PIXEL_LOSSES[loss]
        self.autocast = bf16 and device.type == "cuda"
        self.forward = torch.compile(model) if compile else model

    def __call__(self, lr_batch: torch.Tensor, hr_batch: torch.Tensor) -> torch.Tensor:
        """The loss (a tensor on the device) after one step on this (LR, HR) batch."""
        lr_batch = lr_batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        hr_batch = hr_batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            loss = self.loss(self.forward(lr_batch).float(), hr_batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


# What export-only takes from the checkpoint: the settings that describe how the weights were made.
RECORDED_RECIPE = ("data", "batch_size", "lr_patch", "lr", "min_lr", "warmup", "ema_decay", "seed", "warm_start",
                   "bf16", "loss")


class Trainer:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        # Kept on the monotonic clock, which wall-clock adjustments do not move.
        self.deadline = time.monotonic() + config.deadline - time.time() if config.deadline > 0 else math.inf
        self.out_dir = Path(config.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.model = VapSR(published_config(config.variant, config.scale)).to(self.device)
        self.copied: list[str] = []
        if config.warm_start:
            self.copied = warm_start(self.model, config.warm_start)
        # The custom backward is opaque to torch.compile: a compiled model keeps the stock one.
        prepare_for_training(self.model, self.device, config.fast_kernels and not config.compile, config.bf16)
        # The EMA in the model's layout, so the multi-tensor lerp meets matching strides.
        self.ema = VapSR(self.model.config).to(self.device, memory_format=torch.channels_last)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        if self.device.type == "cpu":
            use_phase_split(self.ema)  # validation runs it, as the CPU upscaler runs the exported weights
        self.optimizer = make_optimizer(self.model, config.lr)
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        self.recorded_config: dict[str, object] = {}  # the checkpoint's TrainConfig, after try_resume
        self.step = TrainingStep(self.model, self.optimizer, self.device, config.compile, config.bf16, config.loss)

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        state = {
            "config": asdict(self.config),
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": json.dumps(self.history),
            "copied": json.dumps(self.copied),
        }
        # Each checkpoint replaces the last one, whole: a run killed while saving resumes from the previous one.
        with atomic_output(self.checkpoint_path, overwrite=True) as temporary:
            torch.save(state, temporary)

    def try_resume(self) -> bool:
        if not self.checkpoint_path.is_file():
            return False
        # Loaded to the CPU: load_state_dict moves each tensor where it belongs, and leaves Adam's
        # step counters on the CPU as non-fused Adam expects (on the GPU they cost a sync per tensor).
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])
        planned = int(state["config"]["iterations"])
        if self.config.iterations and self.config.iterations != planned:
            # Lengthening or shortening a run re-stretches the cosine schedule from here on.
            log.info("changing the run's length from %d to %d iterations", planned, self.config.iterations)
        else:
            self.config.iterations = planned
        self.history = json.loads(state["history"])
        self.copied = json.loads(state["copied"])
        self.recorded_config = dict(state["config"])
        recorded_loss = self.recorded_config.get("loss", "l1")  # checkpoints from before the option: L1
        if recorded_loss != self.config.loss:
            log.info("changing the loss from %s to %s at iteration %d", recorded_loss, self.config.loss,
                     self.iteration)
        # A resumed run was warm-started by its first command, whatever this one says.
        self.config.warm_start = self.config.warm_start or state["config"].get("warm_start")
        log.info("resumed from %s at iteration %d of %d", self.checkpoint_path, self.iteration,
                 self.config.iterations)
        return True

    def adopt_recorded_recipe(self) -> None:
        """Take the data and recipe the checkpoint's run was trained with (after :meth:`try_resume`),
        so that exporting it alone writes how it was made, not the defaults of the export command."""
        for key in RECORDED_RECIPE:
            if key in self.recorded_config:
                setattr(self.config, key, self.recorded_config[key])

    def _update_ema(self) -> None:
        update_ema(self.ema, self.model, self.config.ema_decay, self.iteration)

    def _batches(self, data: PairedPatches):
        """Batches for iterations from the current one on; prefetched on a thread on CUDA."""
        def make(iteration: int):
            rng = np.random.default_rng([self.config.seed, iteration])
            lr_batch, hr_batch = data.sample(rng, self.config.batch_size)
            if self.device.type == "cuda":
                lr_batch, hr_batch = lr_batch.pin_memory(), hr_batch.pin_memory()
            return lr_batch, hr_batch

        if self.device.type != "cuda":
            iteration = self.iteration
            while True:
                yield make(iteration)
                iteration += 1
        ready: queue.Queue = queue.Queue(maxsize=8)

        def produce() -> None:
            iteration = self.iteration
            while True:
                ready.put(make(iteration))
                iteration += 1

        threading.Thread(target=produce, daemon=True).start()
        while True:
            yield ready.get()

    def calibration_step(self) -> tuple[TrainingStep, VapSR, VapSR]:
        """A ``TrainingStep`` like the real one (same model class, layout, kernels, optimiser, precision,
        compilation), on copies, so timing it leaves the run's state alone; with the copies' model and EMA."""
        probe = copy.deepcopy(self.model)
        probe_ema = copy.deepcopy(self.ema)
        step = TrainingStep(probe, make_optimizer(probe, 0.0), self.device, self.config.compile, self.config.bf16,
                            self.config.loss)
        return step, probe, probe_ema

    def _fit_iterations(self, data: PairedPatches) -> None:
        """Choose the iteration count that fills the time budget, from a short timing run."""
        config = self.config
        if not config.time_budget and time.monotonic() >= self.deadline:
            config.iterations = config.warmup + 1  # one iteration will run; the deadline stops it there
            log.info("the deadline passed while loading the data: one iteration")
            return
        step, probe, probe_ema = self.calibration_step()
        rng = np.random.default_rng(0)
        timings = []
        for _ in range(4):
            lr_batch, hr_batch = data.sample(rng, config.batch_size)
            start = time.perf_counter()
            step(lr_batch, hr_batch)
            update_ema(probe_ema, probe, config.ema_decay, 0)
            synchronize(self.device)
            timings.append(time.perf_counter() - start)
        seconds = float(np.median(timings[1:]))
        # Without a budget, the time left before the limit, less a share for validation and export.
        budget = config.time_budget or max(0.0, (self.deadline - time.monotonic()) * 0.85)
        config.iterations = max(config.warmup + 1, int(budget / (seconds * 1.1)))
        log.info("time budget %.0f s at %.3f s/iteration: %d iterations", budget, seconds, config.iterations)

    def _checked_mean(self, losses: list[torch.Tensor]) -> float:
        """The mean of these iterations' losses; FloatingPointError if one is not finite."""
        if not losses:
            return math.nan
        loss = float(torch.stack(losses).mean())
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} in the {len(losses)} iterations up to {self.iteration}; "
                                     "lower --lr")
        return loss

    def train(self) -> Path:
        config = self.config
        data = PairedPatches(config.data, config.scale, config.lr_patch)
        log.info("%d training pairs from %s; computing in %s", len(data.pairs), ", ".join(config.data),
                 precision_summary(self.device, config.bf16))
        validation = ValidationSet(config.validation, config.scale) if config.validation else None
        if not self.try_resume():
            if config.iterations <= 0:
                if config.time_budget <= 0 and config.deadline <= 0:
                    raise ValueError("give iterations, a time budget or a deadline")
                self._fit_iterations(data)
            if self.copied:
                log.info("warm start: %d tensors from %s", len(self.copied), config.warm_start)
        batches = self._batches(data)
        self.model.train()
        bar = tqdm(total=config.iterations, initial=self.iteration, desc=f"{config.variant} x{config.scale}",
                   unit="it", dynamic_ncols=True, mininterval=2.0)
        # Log lines go above the bar, not onto it; and the bar is closed however the loop ends, so
        # that the command's last message starts on a line of its own.
        with bar, logging_redirect_tqdm(), DeferredStop() as stop:
            self._iterate(batches, validation, bar, stop)
        return self.export()

    def _iterate(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], validation: ValidationSet | None,
                 bar: tqdm, stop: DeferredStop) -> None:
        """Train until the planned iteration, the deadline, or a stop signal (after a checkpoint)."""
        config = self.config
        # Losses stay on the device until a log line needs them: reading one every iteration
        # would make the CPU wait for the GPU each time.
        interval_losses: list[torch.Tensor] = []
        while self.iteration < config.iterations:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(config, self.iteration)
            interval_losses.append(self.step(*next(batches)))
            self.iteration += 1
            self._update_ema()
            bar.update(1)
            out_of_time = time.monotonic() >= self.deadline and self.iteration < config.iterations
            if out_of_time:
                log.info("time limit reached at iteration %d of %d: stopping here", self.iteration,
                         config.iterations)
            done = self.iteration == config.iterations or out_of_time
            validate = validation is not None and (self.iteration % config.validate_every == 0 or done)
            if validate or self.iteration % config.log_every == 0 or done:
                # The mean over the interval: one batch's loss is too noisy to read.
                loss = self._checked_mean(interval_losses)
                record = {"iteration": self.iteration, "loss": loss,
                          "lr": self.optimizer.param_groups[0]["lr"]}
                interval_losses.clear()
                if validate:
                    record["set5_psnr"] = validation.psnr(self.ema, self.device)
                log.info("iteration %d: loss %.4f, lr %.2e%s", self.iteration, record["loss"], record["lr"],
                         f", validation PSNR {record['set5_psnr']:.3f} dB" if validate else "")
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.1e}", refresh=False)
                self.history.append(record)
            if self.iteration % config.checkpoint_every == 0 or done or stop.requested:
                self._checked_mean(interval_losses)  # never checkpoint weights a NaN went through
                self.save_checkpoint()
            if done:
                break
            if stop.requested:
                log.info("stopped at iteration %d of %d; checkpoint saved in %s: the same command resumes "
                         "from there", self.iteration, config.iterations, self.checkpoint_path)
                raise stop.exception()

    def export(self) -> Path:
        """Write the EMA weights as safetensors with how they were made."""
        config = self.config
        path = self.out_dir / f"{config.variant}-x{config.scale}.safetensors"
        validation = [h for h in self.history if "set5_psnr" in h]
        metadata = {
            "training_data": ", ".join(Path(d).name for d in config.data),
            "iterations": str(self.iteration),
            "batch_size": str(config.batch_size),
            "lr_patch": str(config.lr_patch),
            "recipe": f"{config.loss.upper()}, Adam lr {config.lr} betas 0.9/0.99, warm-up {config.warmup} + cosine to "
                      f"{config.min_lr}, EMA {config.ema_decay}, flips and 90-degree rotations, colour augmentation "
                      "(channel orders, inversion, flat saturated patches)",
            "device": str(self.device),
            "precision": precision_summary(self.device, config.bf16),
            "warm_start": f"{config.warm_start} ({len(self.copied)} tensors)" if config.warm_start else "none",
            "seed": str(config.seed),
            "final_set5_psnr": f"{validation[-1]['set5_psnr']:.4f}" if validation else "not measured",
            **config.notes,
        }
        ema = build_model(self.ema.state_dict(), "EMA weights")
        save_weights(ema, path, metadata)
        log.info("wrote %s", path)
        return path
