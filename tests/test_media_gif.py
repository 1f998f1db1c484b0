"""Issue #11 item 2 (GIF): GIF in and out with real palettes and the frame delays kept; RGB sources to
playable 4:2:0 in MP4."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from video_helpers import ffmpeg, ffprobe_json, nearest_neighbour_vapsr, needs_ffmpeg, rgb_frames, streams

from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.video.encoder import EncodeOptions
from vapsr_video.video.pipeline import upscale_video

pytestmark = needs_ffmpeg

# A colour GIF whose frames last 0.1, 0.1, 0.2, 0.1, 0.3 s (delays as GIF editors write them).
COLOUR = ("testsrc=s=64x48:r=10:d=0.5,setpts='(N*10+if(gte(N,3),10,0)+if(gte(N,4),10,0))/100/TB',"
          "split[a][b];[a]palettegen[p];[b][p]paletteuse")


def make_colour_gif(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", COLOUR, "-fps_mode", "vfr", path)
    return path


def packet_times(path: Path) -> list[tuple[str, str]]:
    data = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "packet=pts,duration")
    return [(packet["pts"], packet.get("duration")) for packet in data["packets"]]


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    return Upscaler(model=nearest_neighbour_vapsr(2), device="cpu", precision="fp32")


def colourfulness(frames: np.ndarray) -> float:
    return float(np.abs(frames - frames.mean(axis=-1, keepdims=True)).mean())


def test_gif_to_gif_keeps_colour_and_delays(tmp_path: Path, upscaler: Upscaler) -> None:
    source = make_colour_gif(tmp_path / "in.gif")
    target = tmp_path / "out.gif"
    upscale_video(source, target, upscaler)
    (video,) = streams(target)
    assert (video["codec_name"], video["width"], video["height"]) == ("gif", 128, 96)
    assert [pts for pts, _ in packet_times(target)] == [pts for pts, _ in packet_times(source)]
    assert packet_times(target) == packet_times(source)  # each frame's delay, the last one too
    original = rgb_frames(source)
    back = rgb_frames(target, 64, 48)
    assert colourfulness(back) > 0.9 * colourfulness(original)  # colour, not grey
    assert np.abs(back - original).mean() < 0.03  # palette and dither error only


def test_explicit_gif_codec_from_a_colour_video(tmp_path: Path, upscaler: Upscaler) -> None:
    source = tmp_path / "in.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=10:d=0.3", "-c:v", "libx264", "-pix_fmt", "yuv420p", source)
    target = tmp_path / "out.gif"
    upscale_video(source, target, upscaler, EncodeOptions(codec="gif"))
    back = rgb_frames(target, 64, 48)
    assert len(back) == 3 and colourfulness(back) > 0.9 * colourfulness(rgb_frames(source))


def test_gif_to_mp4_is_playable_420_without_an_alpha_warning(tmp_path: Path, upscaler: Upscaler,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    source = make_colour_gif(tmp_path / "in.gif")
    target = tmp_path / "out.mp4"
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(source, target, upscaler)
    (video,) = streams(target)
    assert (video["codec_name"], video["pix_fmt"], video["profile"]) == ("h264", "yuv420p", "High")
    assert "alpha" not in caplog.text and "writing yuv420p so that common players can play it" in caplog.text
    keep_444 = tmp_path / "full.mp4"
    upscale_video(source, keep_444, upscaler, EncodeOptions(pix_fmt="yuv444p"))  # the user asks otherwise
    assert streams(keep_444)[0]["pix_fmt"] == "yuv444p"


def test_transparent_gif_to_mp4_warns_once(tmp_path: Path, upscaler: Upscaler,
                                           caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "transparent.gif"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=10:d=0.3,format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':"
           "a='if(lt(X,32),0,255)',split[a][b];[a]palettegen[p];[b][p]paletteuse", source)
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(source, tmp_path / "out.mp4", upscaler)
    assert caplog.text.count("alpha channel (transparency) is dropped") == 1
