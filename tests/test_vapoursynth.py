"""core.vapsr.Upscale (the native plugin) and its Python twin, driven through ``import vapoursynth``.

Both must give exactly the frames the shared ``Upscaler`` gives (fp32 on the
CPU), keep frame properties, and turn every failure into a ``vapoursynth.Error``
with a readable message.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import vapoursynth as vs
from vapoursynth_support import (
    REPO,
    TESTS_DIR,
    build_plugin_in_place,
    frame_array,
    noise_clip,
    save_tiny_weights,
)

from vapsr_video.inference import Upscaler
from vapsr_video.model.weights import BUNDLED_DIR
from vapsr_video.vapoursynth import load_plugin, upscale
from vapsr_video.vapoursynth.plugin import LIBRARY_NAME, SOURCE_TREE_DIR


@pytest.fixture(scope="module")
def core() -> vs.Core:
    build_plugin_in_place()
    load_plugin(vs.core)
    return vs.core


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


def native(clip: vs.VideoNode, **kwargs: object) -> vs.VideoNode:
    return vs.core.vapsr.Upscale(clip, **kwargs)


FRONT_ENDS = {"native": native, "twin": upscale}


def expected_frame(upscaler: Upscaler, source: vs.VideoFrame) -> np.ndarray:
    return upscaler(torch.from_numpy(frame_array(source))).numpy()


def test_native_and_twin_give_the_upscalers_frames_and_keep_properties(core: vs.Core, weights: Path) -> None:
    clip = noise_clip(40, 24, length=4)
    plugin_out = core.vapsr.Upscale(clip, weights=str(weights), device="cpu")
    twin_out = upscale(clip, weights=weights, device="cpu")
    upscaler = Upscaler(weights=weights, device="cpu")
    assert (plugin_out.width, plugin_out.height, plugin_out.format.id) == (80, 48, vs.RGBS)
    assert (twin_out.width, twin_out.height, twin_out.format.id) == (80, 48, vs.RGBS)
    assert (plugin_out.num_frames, plugin_out.fps) == (clip.num_frames, clip.fps)
    for n in range(clip.num_frames):
        expected = expected_frame(upscaler, clip.get_frame(n))
        plugin_frame, twin_frame = plugin_out.get_frame(n), twin_out.get_frame(n)
        np.testing.assert_array_equal(frame_array(plugin_frame), expected)
        np.testing.assert_array_equal(frame_array(twin_frame), expected)
        assert plugin_frame.props["TestFrameNumber"] == n
        assert dict(plugin_frame.props) == dict(clip.get_frame(n).props) == dict(twin_frame.props)


def test_fp16_clip_on_cpu_computes_in_fp32_and_returns_rgbh(core: vs.Core, weights: Path) -> None:
    clip = noise_clip(32, 24, length=2, fmt=vs.RGBH)
    upscaler = Upscaler(weights=weights, device="cpu", precision="fp32")
    for front_end in FRONT_ENDS.values():
        out = front_end(clip, weights=str(weights), device="cpu")
        assert out.format.id == vs.RGBH
        for n in range(clip.num_frames):
            result = frame_array(out.get_frame(n))
            assert result.dtype == np.float16
            np.testing.assert_array_equal(result, expected_frame(upscaler, clip.get_frame(n)))


def test_tiles_and_overlap_are_passed_to_the_upscaler(core: vs.Core, weights: Path) -> None:
    clip = noise_clip(48, 40, length=1)
    out = core.vapsr.Upscale(clip, weights=str(weights), device="cpu", tilesize=16, overlap=4)
    tiled = Upscaler(weights=weights, device="cpu", tile=16, tile_overlap=4)
    whole = Upscaler(weights=weights, device="cpu")
    result = frame_array(out.get_frame(0))
    np.testing.assert_array_equal(result, expected_frame(tiled, clip.get_frame(0)))
    # 4 pixels of context are less than the network's receptive field: tiling must show.
    assert not np.array_equal(result, expected_frame(whole, clip.get_frame(0)))


def test_several_frames_in_flight_give_the_same_frames(core: vs.Core, weights: Path) -> None:
    clip = noise_clip(32, 24, length=8)
    out = core.vapsr.Upscale(clip, weights=str(weights), device="cpu", num_streams=3)
    futures = [out.get_frame_async(n) for n in range(clip.num_frames)]
    upscaler = Upscaler(weights=weights, device="cpu")
    for n, future in enumerate(futures):
        np.testing.assert_array_equal(frame_array(future.result()), expected_frame(upscaler, clip.get_frame(n)))


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_engine_is_chosen_by_name_and_eager_gives_the_upscalers_frames(core: vs.Core, weights: Path,
                                                                       front_end: str) -> None:
    clip = noise_clip(32, 24, length=2)
    out = FRONT_ENDS[front_end](clip, weights=str(weights), device="cpu", engine="eager")
    upscaler = Upscaler(weights=weights, device="cpu")
    np.testing.assert_array_equal(frame_array(out.get_frame(1)), expected_frame(upscaler, clip.get_frame(1)))


@pytest.fixture()
def reference_x4(reference_weights_dir: Path) -> Path:
    return reference_weights_dir / "VapSR_X4.pth"


def test_scale_follows_the_weights_and_a_contradicting_scale_is_refused(core: vs.Core, reference_x4: Path) -> None:
    clip = noise_clip(16, 12, length=1)
    out = core.vapsr.Upscale(clip, weights=str(reference_x4), device="cpu")
    assert (out.width, out.height) == (64, 48)
    assert frame_array(out.get_frame(0)).shape == (3, 48, 64)
    with pytest.raises(vs.Error, match=r"x4.*x2 was asked for"):
        core.vapsr.Upscale(clip, weights=str(reference_x4), scale=2, device="cpu")


BUNDLED_X2 = BUNDLED_DIR / "vapsr-x2.safetensors"


@pytest.mark.skipif(BUNDLED_X2.is_file(), reason="this installation has bundled weights")
@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_without_bundled_weights_the_error_says_to_pass_weights(core: vs.Core, front_end: str) -> None:
    with pytest.raises(vs.Error, match=r'no bundled weights for vapsr x2 in this installation; pass weights="FILE"'):
        FRONT_ENDS[front_end](noise_clip(), device="cpu")


@pytest.mark.skipif(not BUNDLED_X2.is_file(), reason="the bundled weights are not trained yet")
def test_default_is_the_bundled_vapsr_x2(core: vs.Core) -> None:
    clip = noise_clip(24, 16, length=1)
    out = core.vapsr.Upscale(clip, device="cpu")
    expected = expected_frame(Upscaler(variant="vapsr", scale=2, device="cpu"), clip.get_frame(0))
    np.testing.assert_array_equal(frame_array(out.get_frame(0)), expected)


def _variable_size_clip() -> vs.VideoNode:
    return vs.core.std.Splice([noise_clip(32, 24, length=1), noise_clip(16, 16, length=1)], mismatch=True)


def _variable_format_clip() -> vs.VideoNode:
    return vs.core.std.Splice([noise_clip(32, 24, length=1), noise_clip(32, 24, length=1, fmt=vs.RGBH)], mismatch=True)


SCRIPT_TIME_ERRORS = {
    "yuv": (lambda: vs.core.std.BlankClip(format=vs.YUV420P8, width=32, height=24), {},
            r'got YUV420P8; add clip = core\.resize\.Bicubic\(clip, format=vs\.RGBS, matrix_in_s="709"\)'),
    "gray": (lambda: vs.core.std.BlankClip(format=vs.GRAY16, width=32, height=24), {},
             r"got GRAY16; add clip = core\.resize\.Point\(clip, format=vs\.RGBS\)"),
    "integer-rgb": (lambda: vs.core.std.BlankClip(format=vs.RGB24, width=32, height=24), {},
                    r"got RGB24; add clip = core\.resize\.Point\(clip, format=vs\.RGBS\)"),
    "variable-size": (_variable_size_clip, {}, r"changes frame size"),
    "variable-format": (_variable_format_clip, {}, r"changes format"),
    "missing-weights": (noise_clip, {"weights": "/nonexistent/vapsr.pth"},
                        r"/nonexistent/vapsr\.pth: no such weights file"),
    "unknown-device": (noise_clip, {"device": "tpu"}, r"unknown device 'tpu'"),
    "bad-scale": (noise_clip, {"scale": 5}, r"scale must be 2, 3 or 4"),
    "bad-model": (noise_clip, {"model": "esrgan", "weights": None}, r"model must be one of"),
    "fp16-on-cpu": (noise_clip, {"device": "cpu", "fp16": True}, r"fp16=True needs a CUDA device"),
    "bad-streams": (noise_clip, {"num_streams": 0}, r"num_streams must be from 1 to 16, not 0"),
    # Once made vspipe hang allocating a slot per stream (issue #9).
    "huge-streams": (noise_clip, {"num_streams": 2**40}, r"num_streams must be from 1 to 16, not 1099511627776"),
    "bad-engine": (noise_clip, {"engine": "tensorrt"}, r"engine must be one of 'eager', 'compile', 'cuda-graphs'"),
    "cuda-graphs-on-cpu": (noise_clip, {"engine": "cuda-graphs"}, r"cuda-graphs"),
}


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("case", SCRIPT_TIME_ERRORS)
def test_bad_input_is_a_vapoursynth_error_at_script_time(core: vs.Core, weights: Path, front_end: str,
                                                         case: str) -> None:
    make_clip, overrides, message = SCRIPT_TIME_ERRORS[case]
    kwargs = {"weights": str(weights), "device": "cpu", **overrides}
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    with pytest.raises(vs.Error, match=message) as caught:
        FRONT_ENDS[front_end](make_clip(), **kwargs)
    assert str(caught.value).startswith("vapsr.Upscale") and "\n" not in str(caught.value)


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_not_a_checkpoint_is_refused(core: vs.Core, tmp_path: Path, front_end: str) -> None:
    junk = tmp_path / "notes.pth"
    junk.write_bytes(b"these are not weights\n" * 8)
    refused = r"notes\.pth: not a (readable )?PyTorch checkpoint.*expected a VapSR checkpoint"
    with pytest.raises(vs.Error, match=refused):
        FRONT_ENDS[front_end](noise_clip(), weights=str(junk), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_cuda_asked_for_on_a_machine_without_it(core: vs.Core, weights: Path, front_end: str) -> None:
    with pytest.raises(vs.Error, match=r"device 'cuda:1' is not available \(this machine has 0 CUDA device"):
        FRONT_ENDS[front_end](noise_clip(), weights=str(weights), device="cuda:1")


FRAME_TIME_FAILURES = {
    # CUDA out-of-memory cannot happen on this CPU machine: the exception is raised
    # where the model runs to check that it reaches the user as advice, not a crash.
    "oom": (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            r"vapsr\.Upscale at frame 1: CUDA out of memory; pass a smaller tilesize"),
    "python-exception": (RuntimeError("boom in the model"),
                         r"vapsr\.Upscale at frame 1: internal error: RuntimeError: boom in the model"),
}


@pytest.mark.parametrize("front_end", FRONT_ENDS)
@pytest.mark.parametrize("case", FRAME_TIME_FAILURES)
def test_failures_inside_inference_are_vapoursynth_errors(core: vs.Core, weights: Path, front_end: str, case: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    exception, message = FRAME_TIME_FAILURES[case]
    out = FRONT_ENDS[front_end](noise_clip(32, 24, length=3), weights=str(weights), device="cpu")
    original = Upscaler.__call__

    def failing_on_frame_1(self: Upscaler, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[-1] == 32 and failing_on_frame_1.calls == 1:
            failing_on_frame_1.calls += 1
            raise exception
        failing_on_frame_1.calls += 1
        return original(self, frames)

    failing_on_frame_1.calls = 0  # type: ignore[attr-defined]
    monkeypatch.setattr(Upscaler, "__call__", failing_on_frame_1)
    out.get_frame(0)
    with pytest.raises(vs.Error, match=message):
        out.get_frame(1)
    assert frame_array(out.get_frame(2)).shape == (3, 48, 64)  # the filter keeps working afterwards


def test_plugin_path_points_at_the_built_library(core: vs.Core) -> None:
    from vapsr_video.vapoursynth import plugin_path

    # In the quick start's venv the autoload folder holds a link to the library built here.
    assert plugin_path().resolve() == (SOURCE_TREE_DIR / LIBRARY_NAME).resolve()
    listed = subprocess.run([sys.executable, "-m", "vapsr_video.vapoursynth"], capture_output=True, text=True,
                            cwd=REPO, check=True)
    assert Path(listed.stdout.strip()) == plugin_path().parent


EXIT_WITH_FRAMES_IN_FLIGHT = textwrap.dedent("""
    import sys
    import vapoursynth as vs
    from vapsr_video.vapoursynth import load_plugin
    from vapoursynth_support import noise_clip
    load_plugin(vs.core)
    clip = vs.core.vapsr.Upscale(noise_clip(96, 64, length=60), weights=sys.argv[1], device="cpu", num_streams=2)
    futures = [clip.get_frame_async(n) for n in range(clip.num_frames)]
    futures[0].result()
    print("requested", len(futures), flush=True)
""")


def test_interpreter_exit_with_frames_in_flight_is_clean(core: vs.Core, tmp_path: Path) -> None:
    weights = save_tiny_weights(tmp_path / "slower.safetensors", num_feat=16, num_blocks=2)
    script = tmp_path / "exit_early.py"
    script.write_text(EXIT_WITH_FRAMES_IN_FLIGHT)
    env = {"PYTHONPATH": f"{REPO}:{TESTS_DIR}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, str(script), str(weights)], capture_output=True, text=True,
                            timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "requested 60" in result.stdout
    assert "Fatal" not in result.stderr and "Segmentation" not in result.stderr
