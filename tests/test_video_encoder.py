"""Encoder choices: the input's codec where possible, bit depth kept, options mapped as FFmpeg users expect."""

from __future__ import annotations

import io

import av
import pytest

from vapsr_video.errors import UsageError
from vapsr_video.video.encoder import (
    EncodeOptions,
    choose_codec,
    choose_pix_fmt,
    encoder_settings,
    parse_bitrate,
)


def output_container(format_name: str) -> av.container.OutputContainer:
    return av.open(io.BytesIO(), "w", format=format_name)


@pytest.mark.parametrize("source, encoder, expected", [
    ("yuv420p10le", "libx264", "yuv420p10le"),  # 10-bit in, 10-bit out
    ("yuv420p10le", "libx265", "yuv420p10le"),
    ("yuvj420p", "libx264", "yuv420p"),  # full range travels as a tag
    ("yuv444p", "prores_ks", "yuv444p10le"),  # more depth rather than less chroma
    ("yuv422p10le", "libsvtav1", "yuv420p10le"),  # SVT-AV1 has only 4:2:0: keep the depth
    ("gray", "libx264", "gray"),
    ("yuv444p16le", "ffv1", "yuv444p16le"),
])
def test_pixel_format_keeps_depth_and_chroma_where_the_encoder_allows(source: str, encoder: str,
                                                                      expected: str) -> None:
    assert choose_pix_fmt(source, encoder, None) == expected


def test_losing_precision_is_announced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        assert choose_pix_fmt("yuv420p10le", "libvpx-vp9", None) == "yuv420p"
    assert "less precision" in caplog.text and "libvpx-vp9" in caplog.text


def test_a_requested_pixel_format_must_exist_for_the_encoder() -> None:
    assert choose_pix_fmt("yuv420p", "libx264", "yuv444p") == "yuv444p"
    with pytest.raises(UsageError, match="prores_ks cannot write pixel format yuv420p"):
        choose_pix_fmt("yuv420p", "prores_ks", "yuv420p")


@pytest.mark.parametrize("input_codec, container, expected", [
    ("h264", "mp4", "libx264"), ("hevc", "matroska", "libx265"), ("prores", "mov", "prores_ks"),
    ("ffv1", "matroska", "ffv1"), ("vp9", "webm", "libvpx-vp9"), ("mpeg2video", "mp4", "libx264"),
])
def test_codec_follows_the_input(input_codec: str, container: str, expected: str) -> None:
    assert choose_codec(input_codec, output_container(container), None) == expected


def test_codec_falls_back_when_the_container_cannot_hold_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        assert choose_codec("prores", output_container("mp4"), None) == "libx264"
        assert choose_codec("h264", output_container("webm"), None) in ("libsvtav1", "libvpx-vp9")
    assert "cannot hold prores_ks" in caplog.text
    with pytest.raises(UsageError, match="cannot hold libx264"):
        choose_codec("h264", output_container("webm"), "libx264")
    with pytest.raises(UsageError, match="not available"):
        choose_codec("h264", output_container("mp4"), "no-such-encoder")


def test_quality_options() -> None:
    assert encoder_settings("libx264", EncodeOptions()) == ({"crf": "18"}, None)
    assert encoder_settings("libx264", EncodeOptions(crf=23, preset="slow")) == (
        {"crf": "23", "preset": "slow"}, None)
    assert encoder_settings("libx264", EncodeOptions(bitrate="8M")) == ({}, 8_000_000)
    assert encoder_settings("libvpx-vp9", EncodeOptions(crf=30))[0] == {"crf": "30", "b": "0"}
    options, _ = encoder_settings("libx264", EncodeOptions(encoder_options={"tune": "film", "crf": "12"}))
    assert options == {"crf": "12", "tune": "film"}  # free-form options have the last word
    with pytest.raises(UsageError, match="--crf does not apply to ffv1"):
        encoder_settings("ffv1", EncodeOptions(crf=10))
    with pytest.raises(UsageError, match="--preset does not apply to prores_ks"):
        encoder_settings("prores_ks", EncodeOptions(preset="fast"))


def test_bitrates() -> None:
    assert parse_bitrate("2500k") == 2_500_000
    assert parse_bitrate("1.5M") == 1_500_000
    assert parse_bitrate("900000") == 900_000
    with pytest.raises(UsageError):
        parse_bitrate("fast")
