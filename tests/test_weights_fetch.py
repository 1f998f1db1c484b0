"""``vapsr-video weights list|fetch`` and known model names in every front end.

Downloads come from a real HTTP server on 127.0.0.1 started by the test, serving
copies of the authors' checkpoints from ``../shared`` (the tests skip without
them); ``VAPSR_VIDEO_WEIGHTS_URL`` points the tool at it and
``VAPSR_VIDEO_CACHE_DIR`` at a temporary cache.
"""

from __future__ import annotations

import http.server
import logging
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from batch_helpers import make_clip, video_size

from vapsr_video.imaging.image_files import StillImage, read_image, write_image
from vapsr_video.inference import Upscaler
from vapsr_video.model.catalog import AUTHORS_MODELS, find_model, model_path, resolve_weights
from vapsr_video.model.weights import bundled_weights_path, default_weights_path, load_model
from vapsr_video.user_cache import cache_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_NAMES = ("VAPSR_VIDEO_CACHE_DIR", "VAPSR_VIDEO_WEIGHTS", "VAPSR_VIDEO_WEIGHTS_URL", "XDG_CACHE_HOME")


class FakeAuthorsServer:
    """A loopback HTTP server holding a folder of files; ``mode`` breaks transfers on purpose."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.mode = "good"  # "good", "truncate" (close halfway through the announced length)
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.mode == "truncate":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty per-test cache; none of the user's own settings leak in."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "cache"
    monkeypatch.setenv("VAPSR_VIDEO_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def authors_files(reference_weights_dir: Path) -> dict[str, bytes]:
    return {model.file_name: (reference_weights_dir / model.file_name).read_bytes() for model in AUTHORS_MODELS}


@pytest.fixture
def server(authors_files: dict[str, bytes], cache: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAuthorsServer]:
    fake = FakeAuthorsServer(dict(authors_files))
    monkeypatch.setenv("VAPSR_VIDEO_WEIGHTS_URL", fake.url)
    yield fake
    fake.stop()


def place_by_hand(reference_weights_dir: Path, name: str) -> Path:
    """What a user without network does: copy the file to the cache path the tool names."""
    model = find_model(name)
    assert model is not None
    target = model_path(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(reference_weights_dir / model.file_name, target)
    return target


def vapsr_video(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, with this process's environment (the test's cache and URL)."""
    return subprocess.run([sys.executable, "-m", "vapsr_video", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)


def cache_contents(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vapsr-video: error: "), result.stderr
    return lines[0]


# --- fetching ---------------------------------------------------------------------------------------


def test_fetch_downloads_the_pinned_file_and_list_shows_it_cached(server: FakeAuthorsServer, cache: Path,
                                                                   authors_files: dict[str, bytes]) -> None:
    result = vapsr_video("weights", "fetch", "VapSR_X2")
    assert result.returncode == 0, result.stderr
    target = cache / "weights" / "VapSR_X2.pth"
    assert target.read_bytes() == authors_files["VapSR_X2.pth"]
    assert cache_contents(cache) == ["weights/VapSR_X2.pth"], "a temporary file was left behind"
    assert "downloaded and verified" in result.stdout and str(target) in result.stdout
    assert result.stderr.count("carry no licence") == 1 and "from the authors" in result.stderr
    assert server.requests == ["/VapSR_X2.pth"]

    listing = vapsr_video("weights", "list")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines() if line.strip()}
    assert "cached" in rows["VapSR_X2"] and "38.11 / 0.9609" in rows["VapSR_X2"] and "none stated" in rows["VapSR_X2"]
    for name in ("VapSR_X3", "VapSR_X4", "VapSR-S"):
        assert "not fetched" in rows[name]
    for name in ("vapsr-x2", "vapsr-x3", "vapsr-x4", "vapsr-s-x4"):
        assert "bundled" in rows[name] and "MIT" in rows[name]
    # The bundled numbers come from each file's own metadata.
    from vapsr_video.model.weights import bundled_weights_path, read_metadata

    metadata = read_metadata(bundled_weights_path("vapsr", 2))
    assert f"{float(metadata['set5_psnr']):.2f} / {float(metadata['set5_ssim']):.4f}" in rows["vapsr-x2"]


def test_second_fetch_uses_the_cache_without_the_network(server: FakeAuthorsServer, cache: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert vapsr_video("weights", "fetch", "VapSR_X3").returncode == 0
    server.stop()  # from here on, any connection attempt would fail
    result = vapsr_video("weights", "fetch", "VapSR_X3")
    assert result.returncode == 0, result.stderr
    assert "already cached" in result.stdout
    assert "licence" not in result.stderr  # said once, when the file was downloaded
    assert server.requests == ["/VapSR_X3.pth"]


def test_corrupted_download_is_refused_and_leaves_nothing(server: FakeAuthorsServer, cache: Path) -> None:
    damaged = bytearray(server.files["VapSR_X2.pth"])
    damaged[len(damaged) // 2] ^= 0xFF  # same size, one byte different
    server.files["VapSR_X2.pth"] = bytes(damaged)
    result = vapsr_video("weights", "fetch", "VapSR_X2")
    assert result.returncode == 5
    line = one_error_line(result)
    assert "SHA-256" in line and "nothing was kept" in line
    assert cache_contents(cache) == []


def test_truncated_transfer_is_refused_and_leaves_no_temporary_file(server: FakeAuthorsServer, cache: Path) -> None:
    server.mode = "truncate"
    result = vapsr_video("weights", "fetch", "VapSR-S")
    assert result.returncode == 5
    line = one_error_line(result)
    assert "1324433" in line and "nothing was kept" in line
    assert cache_contents(cache) == []


def test_unreachable_server_says_how_to_place_the_file_by_hand(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                               reference_weights_dir: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("VAPSR_VIDEO_WEIGHTS_URL", f"http://127.0.0.1:{port}/")
    result = vapsr_video("weights", "fetch", "VapSR_X4")
    assert result.returncode != 0
    line = one_error_line(result)
    target = cache / "weights" / "VapSR_X4.pth"
    assert "by hand" in line and str(target) in line and "--weights FILE" in line
    assert "https://raw.githubusercontent.com/zhoumumu/VapSR/404c584e21ed92b3c9ddc3da8272d366c978148f/VapSR_X4.pth" \
        in line
    assert cache_contents(cache) == []
    # Following the instructions works: the placed file is used by name.
    place_by_hand(reference_weights_dir, "VapSR_X4")
    assert load_model("VapSR_X4").scale == 4


def test_fetch_of_an_unknown_name_is_a_usage_error(cache: Path) -> None:
    result = vapsr_video("weights", "fetch", "VapSR_X8")
    assert result.returncode == 2
    assert "VapSR_X8: not a known model" in one_error_line(result)


# --- the cache folder and name resolution ------------------------------------------------------------


def test_cache_folder_follows_xdg_then_the_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "vapsr-video"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "vapsr-video"
    monkeypatch.setenv("VAPSR_VIDEO_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_a_file_wins_over_a_name_and_a_cached_file_that_changed_is_refused(
    cache: Path, reference_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    placed = place_by_hand(reference_weights_dir, "VapSR_X2")
    assert resolve_weights("VapSR_X2") == placed
    assert resolve_weights("vapsr_x2.pth") == placed  # any case, with or without the extension
    monkeypatch.chdir(tmp_path)
    (tmp_path / "VapSR_X2").write_bytes(b"mine")
    assert resolve_weights("VapSR_X2") == Path("VapSR_X2")
    (tmp_path / "VapSR_X2").unlink()
    with placed.open("r+b") as handle:  # damaged after it was fetched
        handle.seek(1000)
        handle.write(b"\0")
    with pytest.raises(Exception, match=r"not the pinned VapSR_X2\.pth .*weights fetch VapSR_X2"):
        load_model("VapSR_X2")


@pytest.fixture
def small_png(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    write_image(path, StillImage(rgb=rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)))
    return path


def test_cli_accepts_a_cached_name_and_gives_the_files_pixels(cache: Path, reference_weights_dir: Path,
                                                              small_png: Path, tmp_path: Path) -> None:
    place_by_hand(reference_weights_dir, "VapSR_X2")
    by_name, by_file = tmp_path / "by-name.png", tmp_path / "by-file.png"
    result = vapsr_video(small_png, by_name, "--weights", "VapSR_X2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert vapsr_video(small_png, by_file, "--weights", reference_weights_dir / "VapSR_X2.pth",
                       "--quiet").returncode == 0
    assert read_image(by_name).rgb.shape == (48, 64, 3)
    assert np.array_equal(read_image(by_name).rgb, read_image(by_file).rgb)


def test_cli_with_a_name_not_fetched_says_which_command_fetches_it(cache: Path, small_png: Path,
                                                                    tmp_path: Path) -> None:
    result = vapsr_video(small_png, tmp_path / "out.png", "--weights", "VapSR_X3")
    assert result.returncode == 5
    assert "vapsr-video weights fetch VapSR_X3" in one_error_line(result)
    assert not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_batch_accepts_a_cached_name(cache: Path, reference_weights_dir: Path, tmp_path: Path) -> None:
    place_by_hand(reference_weights_dir, "VapSR_X2")
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_clip(src / "a.mp4", seconds=0.3, audio=False, extra=("-vf", "scale=32:24"))
    result = subprocess.run([sys.executable, "-m", "vapsr_video", "batch", src, dst, "--weights", "VapSR_X2",
                             "--quiet"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert video_size(dst / "a.mp4") == (64, 48)
    missing = subprocess.run([sys.executable, "-m", "vapsr_video", "batch", src, tmp_path / "dst2", "--weights",
                              "VapSR-S", "--quiet"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert missing.returncode == 5
    assert "vapsr-video weights fetch VapSR-S" in missing.stderr
    assert not list((tmp_path / "dst2").rglob("*.mp4"))


# --- VAPSR_VIDEO_WEIGHTS: the default model ------------------------------------------------------------


def test_environment_default_is_used_when_no_weights_are_given(cache: Path, reference_weights_dir: Path,
                                                               small_png: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    place_by_hand(reference_weights_dir, "VapSR_X2")
    monkeypatch.setenv("VAPSR_VIDEO_WEIGHTS", "VapSR_X2")
    result = vapsr_video(small_png, tmp_path / "default.png", "--quiet")
    assert result.returncode == 0, result.stderr
    monkeypatch.delenv("VAPSR_VIDEO_WEIGHTS")
    assert vapsr_video(small_png, tmp_path / "explicit.png", "--weights", "VapSR_X2", "--quiet").returncode == 0
    # The bundled x2 gives other pixels, so equality means the variable was used.
    assert np.array_equal(read_image(tmp_path / "default.png").rgb, read_image(tmp_path / "explicit.png").rgb)


def test_environment_default_of_another_scale_falls_back_to_the_bundled_model(
    cache: Path, reference_weights_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    placed = place_by_hand(reference_weights_dir, "VapSR_X4")
    monkeypatch.setenv("VAPSR_VIDEO_WEIGHTS", "VapSR_X4")
    assert default_weights_path() == placed
    assert default_weights_path("vapsr", 4) == placed
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        assert default_weights_path("vapsr", 2) == bundled_weights_path("vapsr", 2)
    assert "VAPSR_VIDEO_WEIGHTS=VapSR_X4 is a vapsr x4 model but vapsr x2 was asked for" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # asking for VapSR-S explicitly is not answered with VapSR x4
        assert default_weights_path("vapsr-s", 4) == bundled_weights_path("vapsr-s", 4)
    assert "using the bundled vapsr-s x4" in caplog.text
    # A file works as well as a name.
    monkeypatch.setenv("VAPSR_VIDEO_WEIGHTS", str(reference_weights_dir / "VapSR-S.pth"))
    assert load_model(variant="vapsr-s").config.variant == "vapsr-s"
    assert load_model(scale=2).config == load_model(bundled_weights_path("vapsr", 2)).config


def test_environment_default_that_is_not_fetched_is_a_clear_error(cache: Path, small_png: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAPSR_VIDEO_WEIGHTS", "VapSR_X2")
    result = vapsr_video(small_png, tmp_path / "out.png")
    assert result.returncode == 5
    line = one_error_line(result)
    assert "VAPSR_VIDEO_WEIGHTS=VapSR_X2" in line and "vapsr-video weights fetch VapSR_X2" in line
    monkeypatch.setenv("VAPSR_VIDEO_WEIGHTS", "nonsense")
    assert "no such weights file, nor a known model name" in one_error_line(vapsr_video(small_png, tmp_path / "o.png"))


# --- VapourSynth ----------------------------------------------------------------------------------------


def test_vapoursynth_accepts_a_cached_name_and_the_environment_default(
    cache: Path, reference_weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vs = pytest.importorskip("vapoursynth")
    from vapoursynth_support import build_plugin_in_place, frame_array, noise_clip

    from vapsr_video.vapoursynth import load_plugin, upscale

    build_plugin_in_place()
    load_plugin(vs.core)
    place_by_hand(reference_weights_dir, "VapSR_X2")
    clip = noise_clip(width=32, height=24, length=2)
    upscaler = Upscaler(weights=reference_weights_dir / "VapSR_X2.pth", device="cpu")
    expected = upscaler(torch.from_numpy(frame_array(clip.get_frame(1)))).numpy()
    native = vs.core.vapsr.Upscale(clip, weights="VapSR_X2", device="cpu")
    twin = upscale(clip, weights="VapSR_X2", device="cpu")
    assert (native.width, native.height) == (64, 48)
    np.testing.assert_array_equal(frame_array(native.get_frame(1)), expected)
    np.testing.assert_array_equal(frame_array(twin.get_frame(1)), expected)
    monkeypatch.setenv("VAPSR_VIDEO_WEIGHTS", "VapSR_X2")
    np.testing.assert_array_equal(frame_array(upscale(clip, device="cpu").get_frame(1)), expected)
    monkeypatch.delenv("VAPSR_VIDEO_WEIGHTS")
    with pytest.raises(vs.Error, match="vapsr-video weights fetch VapSR_X3"):
        vs.core.vapsr.Upscale(clip, weights="VapSR_X3", device="cpu").get_frame(0)

