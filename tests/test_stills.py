"""Still images through ``vapsr-video IN OUT``: formats, bit depth, content, and refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from video_helpers import nearest_neighbour_vapsr

from vapsr_video.cli.main import main as cli_main
from vapsr_video.errors import ExitCode, InputError
from vapsr_video.imaging.image_files import StillImage, read_image, upscale_image_file, write_image
from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.weights import save_weights
from vapsr_video.safe_output import TEMP_PREFIX

FFPROBE = shutil.which("ffprobe")
needs_ffprobe = pytest.mark.skipif(FFPROBE is None, reason="Debian's ffprobe is not installed (apt-get install ffmpeg)")


def probe(path: Path) -> dict:
    command = [FFPROBE or "ffprobe", "-v", "error", "-of", "json", "-show_streams", str(path)]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)["streams"][0]


def smooth_rgb(height: int, width: int, depth: int = 8) -> np.ndarray:
    """Gentle colour gradients: survive lossy codecs well, so content checks can be tight."""
    y, x = np.mgrid[0:height, 0:width]
    unit = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 0.8 + 0.1
    peak = 65535 if depth == 16 else 255
    return np.rint(unit * peak).astype(np.uint16 if depth == 16 else np.uint8)


def replicate(image: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


@pytest.fixture(scope="module")
def nearest_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A x2 VapSR that replicates pixels: its output is known exactly."""
    path = tmp_path_factory.mktemp("weights") / "nearest-x2.safetensors"
    save_weights(nearest_neighbour_vapsr(2), path)
    return path


def upscale(tmp_path: Path, weights: Path, source: Path, target: Path, *extra: str) -> int:
    return cli_main([str(source), str(target), "--scale", "2", "--weights", str(weights), "--device", "cpu", *extra])


# Input extension, encoded bit depth, largest mean error allowed (lossy codecs), expected pix_fmt of the output.
FORMATS = {
    "png8": (".png", 8, 0.0, "rgb24"),
    "png16": (".png", 16, 0.0, "rgb48be"),
    "jpeg": (".jpg", 8, 2.0, "yuvj444p"),
    "webp": (".webp", 8, 2.0, "yuv420p"),
    "tiff8": (".tiff", 8, 0.0, "rgb24"),
    "tiff16": (".tif", 16, 0.0, "rgb48le"),
}


@needs_ffprobe
@pytest.mark.parametrize("kind", list(FORMATS))
def test_each_format_is_upscaled_with_size_depth_and_content_kept(tmp_path: Path, nearest_weights: Path,
                                                                   kind: str) -> None:
    suffix, depth, tolerance, pix_fmt = FORMATS[kind]
    original = smooth_rgb(24, 32, depth)
    source, target = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    write_image(source, StillImage(rgb=original))
    assert upscale(tmp_path, nearest_weights, source, target) == 0
    stream = probe(target)
    assert (stream["width"], stream["height"]) == (64, 48)
    assert stream["pix_fmt"] == pix_fmt
    result = read_image(target).rgb
    assert result.dtype == (np.uint16 if depth == 16 else np.uint8)
    # The input as decoded (lossy formats included), replicated, is what the model must give back.
    expected = replicate(read_image(source).rgb, 2).astype(np.float64)
    error = np.abs(result.astype(np.float64) - expected).mean() / (257 if depth == 16 else 1)
    assert error <= tolerance, f"{kind}: mean error {error:.3f} levels"
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*")), "a temporary file was left behind"


@needs_ffprobe
def test_16_bit_png_keeps_all_16_bits_through_a_real_process(tmp_path: Path, nearest_weights: Path,
                                                              run_cli) -> None:
    original = smooth_rgb(20, 30, 16)
    original[0, 0] = (1, 65534, 12345)  # values an 8-bit detour would destroy
    source, target = tmp_path / "deep.png", tmp_path / "deep-x2.png"
    write_image(source, StillImage(rgb=original))
    result = run_cli(source, target, "--weights", nearest_weights, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert probe(target)["pix_fmt"] == "rgb48be"
    np.testing.assert_array_equal(read_image(target).rgb, replicate(original, 2))


def test_output_format_follows_the_extension_and_depth_is_reduced_when_needed(tmp_path: Path,
                                                                               nearest_weights: Path) -> None:
    source, target = tmp_path / "deep.png", tmp_path / "out.jpg"
    write_image(source, StillImage(rgb=smooth_rgb(16, 16, 16)))
    assert upscale(tmp_path, nearest_weights, source, target) == 0
    result = read_image(target).rgb
    assert result.dtype == np.uint8 and result.shape == (32, 32, 3)
    assert np.abs(result.astype(int) - replicate(smooth_rgb(16, 16, 8), 2)).mean() < 2


def test_grayscale_input_becomes_rgb(tmp_path: Path, nearest_weights: Path) -> None:
    gray = smooth_rgb(16, 20)[..., 0]
    source, target = tmp_path / "gray.png", tmp_path / "out.png"
    # A grayscale PNG, encoded directly (write_image always writes RGB).
    frame = av.VideoFrame.from_ndarray(gray, format="gray")
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = 20, 16, "gray"
    source.write_bytes(b"".join(bytes(p) for p in codec.encode(frame) + codec.encode(None)))
    assert upscale(tmp_path, nearest_weights, source, target) == 0
    result = read_image(target).rgb
    assert result.shape == (32, 40, 3)
    for channel in range(3):
        np.testing.assert_array_equal(result[..., channel], replicate(gray, 2))


def test_alpha_is_kept_in_png_and_refused_for_jpeg(tmp_path: Path, nearest_weights: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rgb = smooth_rgb(12, 16)
    alpha = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (12, 1))
    source = tmp_path / "alpha.png"
    write_image(source, StillImage(rgb=rgb, alpha=alpha))
    assert upscale(tmp_path, nearest_weights, source, tmp_path / "out.png") == 0
    result = read_image(tmp_path / "out.png")
    assert result.alpha is not None and result.alpha.shape == (24, 32)
    assert np.abs(result.alpha.astype(int) - replicate(alpha, 2)).max() <= 16  # bicubic, not replication
    np.testing.assert_array_equal(result.rgb, replicate(rgb, 2))
    assert upscale(tmp_path, nearest_weights, source, tmp_path / "out.jpg") == ExitCode.BAD_OUTPUT
    assert "cannot hold the transparency" in capsys.readouterr().err
    assert not (tmp_path / "out.jpg").exists()


def test_existing_output_is_refused_without_overwrite(tmp_path: Path, nearest_weights: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    write_image(source, StillImage(rgb=smooth_rgb(10, 12)))
    target.write_bytes(b"precious")
    assert upscale(tmp_path, nearest_weights, source, target) == ExitCode.BAD_OUTPUT == 4
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and err.count("\n") == 1
    assert target.read_bytes() == b"precious"
    assert upscale(tmp_path, nearest_weights, source, target, "--overwrite") == 0
    assert read_image(target).rgb.shape == (20, 24, 3)


def test_output_over_the_input_is_refused(tmp_path: Path, nearest_weights: Path) -> None:
    source = tmp_path / "in.png"
    write_image(source, StillImage(rgb=smooth_rgb(10, 12)))
    before = source.read_bytes()
    assert upscale(tmp_path, nearest_weights, source, source, "--overwrite") == ExitCode.BAD_OUTPUT
    assert source.read_bytes() == before


def test_unsupported_output_extension_is_refused(tmp_path: Path, nearest_weights: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.png"
    write_image(source, StillImage(rgb=smooth_rgb(10, 12)))
    assert upscale(tmp_path, nearest_weights, source, tmp_path / "out.xyz") == ExitCode.BAD_OUTPUT
    assert "cannot write images of type '.xyz'" in capsys.readouterr().err
    assert not (tmp_path / "out.xyz").exists()


@pytest.mark.parametrize("content", [b"", b"this is a text file, not a picture\n", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_unreadable_input_is_a_one_line_error_with_exit_code_3(tmp_path: Path, nearest_weights: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               content: bytes) -> None:
    source, target = tmp_path / "broken.png", tmp_path / "out.png"
    source.write_bytes(content)
    assert upscale(tmp_path, nearest_weights, source, target) == ExitCode.BAD_INPUT == 3
    err = capsys.readouterr().err
    assert err.startswith("vapsr-video: error: ") and err.count("\n") == 1
    assert str(source) in err
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png"]


def test_unreadable_input_in_a_real_process_prints_no_traceback(tmp_path: Path, nearest_weights: Path,
                                                                 run_cli) -> None:
    source, target = tmp_path / "notes.png", tmp_path / "out.png"
    source.write_text("hello\n")
    result = run_cli(source, target, "--weights", nearest_weights, "--device", "cpu")
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and f"{source}: " in result.stderr
    assert not target.exists()


def test_missing_input_is_named(tmp_path: Path) -> None:
    upscaler = Upscaler(model=nearest_neighbour_vapsr(2), device="cpu")
    with pytest.raises(InputError, match=r"nothing\.png: no such file"):
        upscale_image_file(tmp_path / "nothing.png", tmp_path / "out.png", upscaler)


def test_upscale_image_file_returns_the_written_path(tmp_path: Path) -> None:
    source = tmp_path / "in.webp"
    write_image(source, StillImage(rgb=smooth_rgb(8, 8)))
    upscaler = Upscaler(model=nearest_neighbour_vapsr(2), device="cpu")
    written = upscale_image_file(source, tmp_path / "out.tiff", upscaler)
    assert written == tmp_path / "out.tiff" and read_image(written).rgb.shape == (16, 16, 3)
