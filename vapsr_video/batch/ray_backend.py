"""Running a batch's units on a Ray cluster: one actor per GPU, each with its own model.

The driver alone opens the job database (SQLite must not be shared over a
network file system): the loop in ``dispatch.py`` claims a unit for an idle
actor, this backend sends it, and the loop records what comes back. Actors read
inputs and write outputs on storage the cluster shares (SRC and DST must have
the same paths on every node). When an actor or its node dies, its unit goes
back to the queue and a fresh actor takes its place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vapsr_video.batch.dispatch import Done, Unit, Worker, WorkerLost
from vapsr_video.batch.tasks import Finished, Planned, UnitSettings, forget_failure, run_unit
from vapsr_video.errors import UsageError
from vapsr_video.host_memory import retain_freed_memory
from vapsr_video.inference.cuda_support import use_device_in_this_thread
from vapsr_video.inference.options import ModelOptions

MAX_REPLACEMENTS_PER_ACTOR = 3
DEVICE = "ray"  # what the job database records as the device of a Ray worker's claims


class BatchActor:
    """One worker: loads its model once, then runs units sent by the driver."""

    def __init__(self, model: ModelOptions, settings: UnitSettings) -> None:
        import torch

        # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU, so "cuda" is the right one.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(1)  # one CPU per actor, as reserved
            retain_freed_memory()  # the actor's process is ours (vapsr_video/host_memory.py)
        self.upscaler = model.build(device)
        self.settings = settings

    def run(self, unit: Unit) -> Finished | Planned:
        use_device_in_this_thread(self.upscaler.device)  # Ray may call methods from a thread of its own
        try:
            return run_unit(unit.claim, self.settings, self.upscaler, unit.segment_count)
        except BaseException as exc:
            failure = forget_failure(exc, self.upscaler.device)
        raise failure  # outside the handler: the new traceback holds this frame only


def connect(address: str) -> bool:
    """Join (or, for 'local', start) a Ray cluster; True when this call started it."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'vapsr-video[ray]'") from None
    if ray.is_initialized():
        return False
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"--ray {address}: cannot connect to a Ray cluster ({exc})") from None
    return True


def _cause(error: BaseException) -> BaseException:
    """The exception raised inside the actor, not Ray's wrapper."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


class RayBackend:
    """``count`` actors (default: one per GPU in the cluster, else one per 2 CPUs) on the
    cluster at ``address``: a cluster address, ``"auto"`` (the running one) or ``"local"``."""

    reports_frames = False  # an actor's frames are counted when its unit ends

    def __init__(self, address: str, count: int | None = None) -> None:
        self.address = address
        self.count = count
        self._started_here = False
        self._actor_class: Any = None
        self._init_args: tuple[ModelOptions, UnitSettings] | None = None
        self._actors: dict[str, Any] = {}
        self._replacements: dict[str, int] = {}
        self._in_flight: dict[Any, str] = {}

    def start(self, model: ModelOptions, settings: UnitSettings) -> list[Worker]:
        from vapsr_video.model.weights import load_model

        load_model(model.weights, variant=model.variant, scale=model.scale)  # a bad --weights fails here, once
        self._started_here = connect(self.address)
        import ray

        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        count = self.count or (gpus if gpus else max(1, int(resources.get("CPU", 1)) // 2))
        self._actor_class = ray.remote(BatchActor).options(num_gpus=1 if gpus else 0, num_cpus=1, max_restarts=0)
        self._init_args = (model, settings)
        for index in range(1, count + 1):
            name = f"ray{index}@{DEVICE}"
            self._actors[name] = self._actor_class.remote(*self._init_args)
            self._replacements[name] = 0
        return self.workers()

    def workers(self) -> list[Worker]:
        return [Worker(name, DEVICE) for name in self._actors]

    def submit(self, worker: str, unit: Unit, frames_done: Callable[[int], None]) -> None:
        self._in_flight[self._actors[worker].run.remote(unit)] = worker

    def wait(self, timeout: float) -> list[Done]:
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

        if not self._in_flight:
            return []
        ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=timeout)
        ended: list[Done] = []
        for ref in ready:
            worker = self._in_flight.pop(ref)
            try:
                ended.append(Done(worker, ray.get(ref)))
            except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
                ended.append(Done(worker, WorkerLost(" ".join(str(exc).split())[:200])))
                self._replace(worker)
            except RayTaskError as exc:
                ended.append(Done(worker, _cause(exc)))
        return ended

    def _replace(self, worker: str) -> None:
        """A fresh actor in the dead one's place, unless this place keeps losing them."""
        self._replacements[worker] += 1
        if self._replacements[worker] <= MAX_REPLACEMENTS_PER_ACTOR:
            self._actors[worker] = self._actor_class.remote(*self._init_args)
        else:
            del self._actors[worker]

    def cancel(self) -> None:
        import ray

        for ref in self._in_flight:
            ray.cancel(ref, force=True)
        self._in_flight.clear()

    def close(self) -> None:
        if not self._actors and not self._started_here:
            return
        import ray

        for actor in self._actors.values():
            ray.kill(actor)
        self._actors.clear()
        if self._started_here:
            ray.shutdown()
