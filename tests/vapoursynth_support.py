"""Helpers for the VapourSynth filter tests: building the plugin in place, tiny
weights, a deterministic noise clip (also imported by the .vpy scripts that
vspipe runs), and a Y4M reader.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import vapoursynth as vs

from vapsr_video.model.vapsr import ModelConfig, VapSR
from vapsr_video.model.weights import save_weights
from vapsr_video.vapoursynth.plugin import LIBRARY_NAME, SOURCE_TREE_DIR

REPO = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent
PLUGIN_SOURCE = SOURCE_TREE_DIR / "vapsr_plugin.c"
VENV_BIN = Path(sys.executable).parent


def build_plugin_in_place() -> Path:
    """The source tree's plugin library, (re)compiled when missing or older than its source."""
    library = SOURCE_TREE_DIR / LIBRARY_NAME
    if not library.is_file() or library.stat().st_mtime < PLUGIN_SOURCE.stat().st_mtime:
        result = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=REPO,
                                capture_output=True, text=True)
        if result.returncode or not library.is_file():
            raise AssertionError(f"building the plugin failed:\n{result.stdout}\n{result.stderr}")
    return library


def vspipe_environment(plugin_dir: Path) -> dict[str, str]:
    """The documented development setup: the plugin folder in VAPOURSYNTH_EXTRA_PLUGIN_PATH."""
    env = dict(os.environ)
    env["VAPOURSYNTH_EXTRA_PLUGIN_PATH"] = str(plugin_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS_DIR)])
    return env


def ensure_vspipe_config() -> None:
    # vspipe cannot find Python without this file (the Makefile writes it too).
    subprocess.run([sys.executable, "-m", "vapoursynth", "config"], capture_output=True, check=True)


def save_tiny_weights(path: Path, scale: int = 2, seed: int = 0, num_feat: int = 8, num_blocks: int = 1) -> Path:
    torch.manual_seed(seed)
    save_weights(VapSR(ModelConfig(scale=scale, num_feat=num_feat, num_blocks=num_blocks)), path)
    return path


def noise_clip(width: int = 40, height: int = 24, length: int = 6, fmt: int = vs.RGBS) -> vs.VideoNode:
    """Float RGB noise, the same for frame n on every run, with a custom property to follow."""
    core = vs.core
    blank = core.std.BlankClip(width=width, height=height, format=fmt, length=length, fpsnum=25, fpsden=1)
    dtype = np.float16 if blank.format.bits_per_sample == 16 else np.float32

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        frame = f.copy()
        rng = np.random.default_rng(n)
        for plane in range(3):
            np.asarray(frame[plane])[:] = rng.random((height, width), dtype=np.float32).astype(dtype)
        frame.props["TestFrameNumber"] = n
        return frame

    return core.std.ModifyFrame(blank, blank, fill)


def frame_array(frame: vs.VideoFrame) -> np.ndarray:
    """A frame's three planes as one (3, H, W) array (a copy)."""
    return np.stack([np.asarray(frame[p]) for p in range(3)])


def read_y4m(path: Path) -> tuple[dict[str, str], list[np.ndarray]]:
    """The header fields and the frames, (planes, H, W), of an uncompressed 4:4:4 Y4M file."""
    data = path.read_bytes()
    header_end = data.index(b"\n")
    fields = {item[0]: item[1:] for item in data[:header_end].decode().split()[1:]}
    width, height = int(fields["W"]), int(fields["H"])
    dtype = np.dtype("<u2") if fields.get("C", "").endswith(("p16", "p10", "p12", "p14")) else np.dtype(np.uint8)
    frame_bytes = 3 * width * height * dtype.itemsize
    frames, position = [], header_end + 1
    while position < len(data):
        marker_end = data.index(b"\n", position)
        assert data[position:marker_end].startswith(b"FRAME"), "corrupt Y4M frame marker"
        start = marker_end + 1
        frames.append(np.frombuffer(data[start:start + frame_bytes], dtype).reshape(3, height, width))
        position = start + frame_bytes
    return fields, frames
