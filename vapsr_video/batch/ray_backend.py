"""The batch on a Ray cluster: the same workers as Ray actors, one GPU each.

The driver alone opens the job database (SQLite must not be shared over a
network file system): it claims a unit for an idle actor, sends it, and records
what comes back. Actors read inputs and write outputs on storage the cluster
shares (SRC and DST must have the same paths on every node). When an actor or
its node dies, its unit goes back to the queue and a fresh actor takes its place.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from pathlib import Path
from typing import Any

from vapsr_video.batch.jobs_db import Claim, JobsDB, process_prefix
from vapsr_video.batch.progress import BatchProgress
from vapsr_video.batch.tasks import BatchSettings, Finished
from vapsr_video.batch.workers import Heartbeat, RetryPolicy, describe, execute, record_failure, record_success
from vapsr_video.errors import UsageError

log = logging.getLogger("vapsr_video.batch")
POLL_SECONDS = 0.5
MAX_REPLACEMENTS_PER_ACTOR = 3


class BatchActor:
    """One worker: loads its model once, then runs units sent by the driver."""

    def __init__(self, model_options: dict[str, Any], settings: BatchSettings) -> None:
        import torch

        from vapsr_video.inference.upscaler import Upscaler

        # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU, so "cuda" is the right one.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(1)  # one CPU per actor, as reserved
        self.upscaler = Upscaler(device=device, **model_options)
        self.settings = settings

    def where(self) -> str:
        import socket

        return f"{socket.gethostname()} {self.upscaler.device}"

    def run(self, claim: Claim, segment_count: int) -> Any:
        return execute(claim, self.settings, self.upscaler, segment_count, None)


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


def run_ray(args: argparse.Namespace, *, db_path: Path, settings: BatchSettings, policy: RetryPolicy, run_id: int,
            todo: list) -> None:
    from vapsr_video.model.weights import load_model

    load_model(args.weights, variant=args.model, scale=args.scale)  # a bad --weights fails here, once
    started_here = connect(args.ray)
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    count = args.ray_workers or (gpus if gpus else max(1, int(resources.get("CPU", 1)) // 2))
    actor_class = ray.remote(BatchActor).options(num_gpus=1 if gpus else 0, num_cpus=1, max_restarts=0)
    model_options = {"weights": args.weights, "variant": args.model, "scale": args.scale,
                     "precision": args.precision, "tile": args.tile, "tile_overlap": args.tile_overlap}
    names = [f"ray{index}" for index in range(1, count + 1)]
    actors = {name: actor_class.remote(model_options, settings) for name in names}
    replacements = dict.fromkeys(names, 0)
    prefix = process_prefix()
    ui = BatchProgress(total_frames=sum(job.est_frames or 0 for job in todo), total_files=len(todo), workers=names,
                       quiet=args.quiet)
    heartbeat_stop = threading.Event()
    heartbeat = Heartbeat(db_path, args.lease_seconds, heartbeat_stop)
    heartbeat.start()
    in_flight: dict[Any, tuple[str, Claim]] = {}
    db = JobsDB(db_path, lease_seconds=args.lease_seconds)
    try:
        while True:
            for name in names:
                if name in {worker for worker, _ in in_flight.values()}:
                    continue
                owner = f"{prefix}{name}@ray"
                claim = db.claim(owner, device="ray")
                if claim is None:
                    break
                segment_count = len(db.segments(claim.job.id)) if claim.kind == "assemble" else 0
                ui.started(name, describe(claim), None)
                log.info("%s: %s", name, describe(claim))
                in_flight[actors[name].run.remote(claim, segment_count)] = (name, claim)
            if not in_flight:
                if not db.has_open_work(prefix):
                    break
                time.sleep(POLL_SECONDS)
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                name, claim = in_flight.pop(ref)
                owner = f"{prefix}{name}@ray"
                ui.idle(name)
                try:
                    outcome = ray.get(ref)
                except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
                    # The actor (or its node) is gone: the unit goes back, a new actor takes over.
                    log.warning("%s died during %s (%s); handing it to another worker", name, describe(claim),
                                " ".join(str(exc).split())[:200])
                    db.release_claim(claim, owner)
                    replacements[name] += 1
                    if replacements[name] > MAX_REPLACEMENTS_PER_ACTOR:
                        names.remove(name)
                        if not names:
                            raise UsageError("every Ray worker died; see the Ray logs") from None
                    else:
                        actors[name] = actor_class.remote(model_options, settings)
                    continue
                except RayTaskError as exc:
                    record_failure(db, settings, claim, owner, _cause(exc), run_id=run_id, policy=policy, ui=ui)
                    continue
                if isinstance(outcome, Finished):
                    ui.frames(name, outcome.frames if claim.kind != "assemble" else 0)
                record_success(db, claim, owner, outcome, run_id=run_id, ui=ui)
    except KeyboardInterrupt:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        raise
    finally:
        db.release(prefix)
        db.close()
        heartbeat_stop.set()
        heartbeat.join()
        ui.close()
        for actor in actors.values():
            ray.kill(actor)
        if started_here:
            ray.shutdown()
