"""Issue #11 item 5: HDR10 mastering display and content light level metadata from input to output;
closed captions in the video bitstream, which cannot be carried, named at run time."""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from pathlib import Path

import pytest
from video_helpers import ffmpeg, ffprobe_json, needs_ffmpeg, streams

from vapsr_video.inference.upscaler import Upscaler
from vapsr_video.model.vapsr import VapSR
from vapsr_video.video.encoder import EncodeOptions
from vapsr_video.video.pipeline import upscale_video
from vapsr_video.video.side_data import LightLevel, MasteringDisplay, StaticHdr, add_hdr_options

pytestmark = needs_ffmpeg

# BT.2020 primaries on a 1000-nit mastering display, MaxCLL 1000, MaxFALL 400 (a typical HDR10 grade).
MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
EXPECTED = {"red_x": "34000/50000", "green_y": "34500/50000", "white_point_x": "15635/50000",
            "max_luminance": "10000000/10000", "min_luminance": "1/10000"}


@pytest.fixture(scope="module")
def hdr10_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hdr") / "hdr10.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:r=25:d=0.2", "-c:v", "libx265", "-pix_fmt", "yuv420p10le",
           "-x265-params", f"log-level=error:hdr10=1:master-display={MASTER_DISPLAY}:max-cll=1000,400",
           "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", path)
    return path


@pytest.fixture
def upscaler(tiny_model: VapSR) -> Upscaler:
    return Upscaler(model=tiny_model, device="cpu")


def first_frame_side_data(path: Path) -> dict[str, dict]:
    data = ffprobe_json(path, "-select_streams", "v:0", "-read_intervals", "%+#1", "-show_frames")
    return {entry["side_data_type"]: entry for entry in data["frames"][0].get("side_data_list", [])}


def assert_hdr10(path: Path) -> None:
    side_data = first_frame_side_data(path)
    mastering = side_data["Mastering display metadata"]
    for key, value in EXPECTED.items():  # (AV1 stores chromaticity in 1/65536 steps and luminance in 1/16384)
        assert float(Fraction(mastering[key])) == pytest.approx(float(Fraction(value)), abs=7e-5), key
    light = side_data["Content light level metadata"]
    assert (light["max_content"], light["max_average"]) == (1000, 400)


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_hdr10_metadata_is_carried_by_x265(tmp_path: Path, hdr10_clip: Path, upscaler: Upscaler,
                                           suffix: str) -> None:
    target = tmp_path / f"out{suffix}"
    upscale_video(hdr10_clip, target, upscaler)
    video = streams(target)[0]
    assert (video["codec_name"], video["pix_fmt"], video["color_transfer"]) == ("hevc", "yuv420p10le",
                                                                                "smpte2084")
    assert_hdr10(target)


def test_hdr10_metadata_is_carried_by_svt_av1(tmp_path: Path, hdr10_clip: Path, upscaler: Upscaler) -> None:
    target = tmp_path / "out.mkv"
    upscale_video(hdr10_clip, target, upscaler, EncodeOptions(codec="libsvtav1", preset="12"))
    assert streams(target)[0]["codec_name"] == "av1"
    assert_hdr10(target)


def test_an_encoder_that_cannot_write_it_is_named_at_run_time(tmp_path: Path, hdr10_clip: Path,
                                                              upscaler: Upscaler,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(hdr10_clip, tmp_path / "out.mkv", upscaler, EncodeOptions(codec="libvpx-vp9"))
    assert "HDR10 mastering display / content light level metadata is not carried: libvpx-vp9" in caplog.text


def test_the_users_own_x265_values_win() -> None:
    def xy(x: str, y: str) -> tuple[Fraction, Fraction]:
        return Fraction(x), Fraction(y)

    mastering = MasteringDisplay(red=xy("0.68", "0.32"), green=xy("0.265", "0.69"), blue=xy("0.15", "0.06"),
                                 white=xy("0.3127", "0.329"), min_luminance=Fraction(1, 10000),
                                 max_luminance=Fraction(1000))
    hdr = StaticHdr(mastering, LightLevel(1000, 400))
    options = {"x265-params": "log-level=error:max-cll=500,100"}
    add_hdr_options("libx265", options, hdr, Path("in.mkv"))
    params = options["x265-params"].split(":")
    assert "max-cll=500,100" in params and "max-cll=1000,400" not in params
    assert "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)" in params


def with_a53_captions(annex_b: bytes) -> bytes:
    """An H.264 stream with an ATSC A/53 caption SEI (two CEA-608 byte pairs) before every picture, as a
    broadcast encoder writes it (ITU-T T.35, country 0xB5, provider 0x0031, "GA94", cc_data)."""
    cc_data = bytes([0x03, 0x40 | 2, 0xFF, 0xFC, 0x94, 0x2C, 0xFC, 0x94, 0x2C, 0xFF])
    payload = bytes([0xB5, 0x00, 0x31]) + b"GA94" + cc_data
    sei = b"\x00\x00\x00\x01\x06" + bytes([4, len(payload)]) + payload + b"\x80"
    parts = re.split(b"(\x00\x00\x00\x01|\x00\x00\x01)", annex_b)
    out = bytearray(parts[0])
    for start_code, nal in zip(parts[1::2], parts[2::2], strict=True):
        if nal and nal[0] & 0x1F in (1, 5):  # a coded slice: the picture starts here
            out += sei
        out += start_code + nal
    return bytes(out)


def test_closed_captions_are_named_at_run_time(tmp_path: Path, upscaler: Upscaler,
                                               caplog: pytest.LogCaptureFixture) -> None:
    plain = tmp_path / "plain.h264"
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=25:d=0.2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-f", "h264", plain)
    captioned = tmp_path / "captioned.h264"
    captioned.write_bytes(with_a53_captions(plain.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(captioned, tmp_path / "out.mkv", upscaler)  # a raw H.264 elementary stream
    assert caplog.text.count("closed captions (ATSC A/53, CEA-608/708); they are not carried") == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vapsr_video"):
        upscale_video(plain, tmp_path / "plain-x2.mkv", upscaler)
    assert "captions" not in caplog.text
