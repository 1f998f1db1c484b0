"""Fixtures shared by the whole suite.

``../shared`` (benchmarks, the authors' checkpoints) exists only in the developers'
checkout; tests that need it skip with a reason that says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from vapsr_video.model.vapsr import ModelConfig, VapSR

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
REFERENCE_CHECKPOINTS = ("VapSR_X2.pth", "VapSR_X3.pth", "VapSR_X4.pth", "VapSR-S.pth")

# `vapsr-video eval` finds its benchmarks and reference results through this variable (the installed
# package knows nothing of the checkout); the CLI tests inherit it. A value the caller set wins.
if (SHARED_DIR / "data").is_dir():
    os.environ.setdefault("VAPSR_VIDEO_DATA", str(SHARED_DIR / "data"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared``; skips the test when this checkout has none."""
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(f"needs the shared data folder {SHARED_DIR} (only in the developers' checkout)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def reference_weights_dir(shared_dir: Path) -> Path:
    """The VapSR authors' four checkpoints (never copied into the repository)."""
    folder = shared_dir / "data" / "reference-weights"
    missing = [name for name in REFERENCE_CHECKPOINTS if not (folder / name).is_file()]
    if missing:
        pytest.skip(f"the authors' checkpoints {', '.join(missing)} are not in {folder}")
    return folder


@pytest.fixture(scope="session")
def benchmarks_dir(shared_dir: Path) -> Path:
    folder = shared_dir / "data" / "benchmarks"
    if not (folder / "Set5" / "HR").is_dir():
        pytest.skip(f"the benchmark images are not in {folder}")
    return folder


def make_tiny_model(scale: int = 2, seed: int = 0) -> VapSR:
    """A small VapSR with random (seeded) weights, for plumbing tests."""
    torch.manual_seed(seed)
    return VapSR(ModelConfig(scale=scale, num_feat=8, num_blocks=1, d_atten=8)).eval()


@pytest.fixture
def tiny_model() -> VapSR:
    """A x2 VapSR with 8 features and one block, random but reproducible weights."""
    return make_tiny_model(scale=2)


@pytest.fixture(scope="session")
def tiny_model_factory() -> Callable[..., VapSR]:
    """``factory(scale=2, seed=0)``: more tiny models (other scales, other seeds)."""
    return make_tiny_model


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`make_tiny_model` (x2) saved as safetensors, for ``--weights`` in plumbing tests."""
    from vapsr_video.model.weights import save_weights

    path = tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors"
    save_weights(make_tiny_model(scale=2), path)
    return path


def _run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vapsr_video", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_cli(*args)``: ``vapsr-video ARGS`` in a fresh interpreter, as a user runs it."""
    return _run_cli
