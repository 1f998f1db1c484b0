"""``vapsr-video batch --ray``: the workers as actors of a real local Ray instance (on the CPU).

One Ray start for the whole module (it costs 10-20 s); the batch runs in this
process, which is the Ray driver and alone opens the job database.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import (
    STATE,
    db_rows,
    decodes_cleanly,
    frame_count,
    leftovers,
    make_clip,
    report,
    save_tiny_weights,
    video_size,
    wait_for,
)
from video_helpers import frame_times, needs_ffmpeg, rgb_frames, stream_md5

from vapsr_video.cli.main import main as cli_main

pytestmark = [needs_ffmpeg, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'vapsr-video[ray]'")
    # Ray starts its workers at nice +15; on a busy CI machine they would then wait minutes for
    # a core. Scheduling priority is no part of what these tests check.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


def batch(src: Path, dst: Path, weights: Path, *extra: str) -> int:
    return cli_main(["batch", str(src), str(dst), "--weights", str(weights), "--quiet", *extra])


def test_ray_path_produces_the_same_outputs_as_the_local_path(ray_instance, tmp_path: Path, weights: Path) -> None:
    src = tmp_path / "archive"
    make_clip(src / "a.mp4")
    make_clip(src / "sub dir" / "b.mkv", audio=False)
    make_clip(src / "long.mp4", seconds=1.5, gop=5)  # in segments, spread over the actors
    (src / "broken.mp4").write_bytes(b"\x00" * 3000)
    options = ("--segment-seconds", "0.5")

    local, remote = tmp_path / "local", tmp_path / "ray"
    assert batch(src, local, weights, *options) == 1
    assert batch(src, remote, weights, *options, "--ray", "auto", "--ray-workers", "2") == 1

    states = {e["path"]: (e["state"], e["reason"]) for e in report(local)["files"]}
    assert {e["path"]: (e["state"], e["reason"]) for e in report(remote)["files"]} == states
    assert states["broken.mp4"][0] == "failed"
    assert db_rows(remote, "SELECT COUNT(*) FROM segments WHERE state = 'done'") == [(3,)]
    for rel in ("a.mp4", "sub dir/b.mkv", "long.mp4"):
        mine, theirs = local / rel, remote / rel
        assert video_size(theirs) == (128, 96) and decodes_cleanly(theirs)
        assert frame_count(theirs) == frame_count(mine) == frame_count(src / rel)
        assert frame_times(theirs) == frame_times(mine)
        # Same model, same encoder settings: the pictures agree up to the encoder's rounding.
        difference = np.abs(rgb_frames(theirs) - rgb_frames(mine))
        assert difference.mean() < 1 / 255, f"{rel}: Ray output differs from the local one"
    assert stream_md5(remote / "long.mp4", "0:a") == stream_md5(src / "long.mp4", "0:a")
    assert leftovers(remote) == []


def _busy_actor_pids() -> list[int]:
    """Processes whose title Ray set to "ray::BatchActor.run" (an actor in the middle of a unit)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "ray::BatchActor.run" in command:
                found.append(int(entry.name))
    return found


def _kill_a_busy_actor(dst: Path, killed: list[int]) -> None:
    if not wait_for(lambda: bool(db_rows(dst, "SELECT 1 FROM jobs WHERE state = 'running' AND owner IS NOT NULL "
                                              "UNION SELECT 1 FROM segments WHERE state = 'running'")), 300):
        return
    for _ in range(400):
        for pid in _busy_actor_pids():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        threading.Event().wait(0.05)


def test_a_dead_actors_work_is_handed_to_another(ray_instance, tmp_path: Path, weights: Path) -> None:
    src, dst = tmp_path / "archive", tmp_path / "out"
    names = ["one.mp4", "two.mp4"]
    for name in names:
        make_clip(src / name, seconds=3.0)
    killed: list[int] = []
    killer = threading.Thread(target=_kill_a_busy_actor, args=(dst, killed), daemon=True)
    killer.start()
    assert batch(src, dst, weights, "--ray", "auto", "--ray-workers", "2") == 0
    killer.join(timeout=10)
    assert killed, "no busy Ray actor was found to kill"
    log = (dst / STATE / "batch.log").read_text(encoding="utf-8")
    assert "died during" in log
    for name in names:
        assert frame_count(dst / name) == 30 and decodes_cleanly(dst / name)
    assert leftovers(dst) == []
