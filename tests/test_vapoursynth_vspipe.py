"""core.vapsr.Upscale through the real ``vspipe``, loaded the documented development way
(``VAPOURSYNTH_EXTRA_PLUGIN_PATH``), writing Y4M.

Y4M has no float or RGB formats, so the scripts quantise the float RGB result to
16 bits with ``resize.Point`` and carry the R, G, B planes as Y, U, V; the test
quantises the ``Upscaler``'s own float output with the same ``resize.Point`` call
(in this process) and wants identical samples.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import vapoursynth as vs
from vapoursynth_support import (
    VENV_BIN,
    build_plugin_in_place,
    ensure_vspipe_config,
    frame_array,
    noise_clip,
    read_y4m,
    save_tiny_weights,
    vspipe_environment,
)

from vapsr_video.inference import Upscaler

VSPIPE = str(VENV_BIN / "vspipe") if (VENV_BIN / "vspipe").exists() else shutil.which("vspipe")
WIDTH, HEIGHT, LENGTH = 40, 24, 6

pytestmark = pytest.mark.skipif(VSPIPE is None,
                                reason="vspipe is not installed (it comes with pip install vapoursynth)")

SCRIPT = textwrap.dedent(f"""
    import vapoursynth as vs
    from vapoursynth_support import noise_clip

    clip = noise_clip({WIDTH}, {HEIGHT}, length={LENGTH})
    clip = vs.core.vapsr.Upscale(clip, weights=weights, device="cpu")
    clip = vs.core.resize.Point(clip, format=vs.RGB48)  # y4m carries no float formats
    clip = vs.core.std.ShufflePlanes(clip, [0, 1, 2], vs.YUV)  # ...and no RGB: R, G, B travel as Y, U, V
    clip.set_output()
""")

FAILING_INSIDE_INFERENCE = textwrap.dedent(f"""
    import vapoursynth as vs
    from vapoursynth_support import noise_clip
    from vapsr_video.inference import Upscaler

    def broken_model(self, frames):
        raise RuntimeError("boom in the model")

    Upscaler.__call__ = broken_model
    vs.core.vapsr.Upscale(noise_clip({WIDTH}, {HEIGHT}, length={LENGTH}), weights=weights, device="cpu").set_output()
""")


@pytest.fixture(scope="module")
def plugin_dir() -> Path:
    ensure_vspipe_config()
    return build_plugin_in_place().parent


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


def run_vspipe(plugin_dir: Path, script: Path, weights: str, *options: str, output: str = "--",
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [VSPIPE, "-a", f"weights={weights}", *options, str(script), output]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=vspipe_environment(plugin_dir),
                          cwd=script.parent)


def expected_y4m_frames(weights: Path) -> list[np.ndarray]:
    """The Upscaler's output for the script's clip, quantised by the same ``resize.Point`` call."""
    upscaler = Upscaler(weights=weights, device="cpu")
    clip = noise_clip(WIDTH, HEIGHT, length=LENGTH)
    results = [upscaler(torch.from_numpy(frame_array(clip.get_frame(n)))).numpy() for n in range(LENGTH)]
    canvas = vs.core.std.BlankClip(width=2 * WIDTH, height=2 * HEIGHT, format=vs.RGBS, length=LENGTH)

    def put_result(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        frame = f.copy()
        for plane in range(3):
            np.asarray(frame[plane])[:] = results[n][plane]
        return frame

    quantised = vs.core.resize.Point(vs.core.std.ModifyFrame(canvas, canvas, put_result), format=vs.RGB48)
    return [frame_array(quantised.get_frame(n)) for n in range(LENGTH)]


def test_vspipe_y4m_frames_equal_the_upscalers_with_1_or_8_requests_in_flight(plugin_dir: Path, weights: Path,
                                                                              tmp_path: Path) -> None:
    script = tmp_path / "upscale.vpy"
    script.write_text(SCRIPT)
    expected = expected_y4m_frames(weights)
    outputs = []
    for requests in (1, 8):
        output = tmp_path / f"out-r{requests}.y4m"
        result = run_vspipe(plugin_dir, script, str(weights), "-c", "y4m", "-r", str(requests), output=str(output))
        assert result.returncode == 0, result.stderr
        fields, frames = read_y4m(output)
        assert (fields["W"], fields["H"], fields["C"]) == (str(2 * WIDTH), str(2 * HEIGHT), "444p16")
        assert len(frames) == len(expected) == LENGTH
        for got, want in zip(frames, expected, strict=True):
            np.testing.assert_array_equal(got, want)
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]


def test_vspipe_reports_a_bad_weights_path(plugin_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "upscale.vpy"
    script.write_text(SCRIPT)
    result = run_vspipe(plugin_dir, script, str(tmp_path / "missing.pth"))
    assert result.returncode != 0
    assert "vapsr.Upscale: " in result.stderr and "missing.pth: no such weights file" in result.stderr


def test_vspipe_reports_an_exception_inside_inference_and_stops(plugin_dir: Path, weights: Path,
                                                                tmp_path: Path) -> None:
    script = tmp_path / "failing.vpy"
    script.write_text(FAILING_INSIDE_INFERENCE)
    result = run_vspipe(plugin_dir, script, str(weights), "-r", "4")
    assert result.returncode != 0
    assert "vapsr.Upscale at frame" in result.stderr
    assert "internal error: RuntimeError: boom in the model" in result.stderr


def test_vspipe_without_the_plugin_path_has_no_vapsr_namespace(plugin_dir: Path, weights: Path,
                                                               tmp_path: Path) -> None:
    # Guards the tests above: the plugin really comes from VAPOURSYNTH_EXTRA_PLUGIN_PATH.
    script = tmp_path / "upscale.vpy"
    script.write_text(SCRIPT)
    env = vspipe_environment(plugin_dir)
    del env["VAPOURSYNTH_EXTRA_PLUGIN_PATH"]
    if (Path(vs.get_plugin_dir()) / "vapsr").is_dir():
        # As in the venv `make` creates, which links it there (tests/test_readme_vapoursynth.py covers that).
        pytest.skip("the plugin is installed next to vapoursynth, so autoload finds it anyway")
    result = subprocess.run([VSPIPE, "-a", f"weights={weights}", str(script), "--"], capture_output=True, text=True,
                            timeout=300, env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "vapsr" in result.stderr


LONG_SCRIPT = textwrap.dedent("""
    import vapoursynth as vs
    from vapoursynth_support import noise_clip

    vs.core.vapsr.Upscale(noise_clip(96, 64, length=5000), weights=weights, device="cpu").set_output()
""")


def test_vspipe_ends_cleanly_when_the_encoder_stops_reading(plugin_dir: Path, weights: Path, tmp_path: Path) -> None:
    # What Ctrl-C in `vspipe ... | ffmpeg ...` amounts to for vspipe: its pipe closes mid-stream.
    script = tmp_path / "long.vpy"
    script.write_text(LONG_SCRIPT)
    process = subprocess.Popen([VSPIPE, "-a", f"weights={weights}", "-r", "4", str(script), "-"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=vspipe_environment(plugin_dir),
                               cwd=tmp_path)
    assert process.stdout is not None and process.stderr is not None
    frame_bytes = 3 * 4 * (2 * 96) * (2 * 64)
    received = process.stdout.read(3 * frame_bytes)
    process.stdout.close()
    try:
        process.wait(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("vspipe kept running after its output pipe closed")
    stderr = process.stderr.read().decode(errors="replace")
    assert len(received) == 3 * frame_bytes
    assert process.returncode not in (0, -signal.SIGSEGV, -signal.SIGABRT), stderr
    assert "Fatal Python error" not in stderr and "Segmentation" not in stderr
