"""Issue #11 item 1: the output codec follows the input's codec, whichever decoder PyAV picked for it."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from video_helpers import ffmpeg, needs_ffmpeg, streams

from vapsr_video.model.weights import save_weights
from vapsr_video.video.encoder import ENCODER_FOR_CODEC, choose_codec, codec_id_name


def _coders(mode: str) -> list[tuple[str, str]]:
    """(name, codec id name) of every video decoder or encoder this PyAV wheel carries."""
    found = []
    for name in sorted(av.codecs_available):
        try:
            codec = av.codec.Codec(name, mode)
        except (ValueError, av.FFmpegError):
            continue
        if codec.type == "video":
            found.append((name, codec.canonical_name))
    return found


# Every decoder or encoder in the wheel that stands for a codec the map knows: libdav1d, av1_cuvid, h264_qsv,
# hevc_v4l2m2m, libvpx-vp9, ... (the table is built from the wheel, so a new build is checked too).
CODERS_OF_MAPPED_CODECS = sorted({(name, codec) for mode in ("r", "w") for name, codec in _coders(mode)
                                  if codec in ENCODER_FOR_CODEC})


def test_the_table_covers_the_decoders_users_meet() -> None:
    names = {name for name, _ in CODERS_OF_MAPPED_CODECS}
    assert {"libdav1d", "h264", "hevc", "vp9", "prores", "ffv1"} <= names
    assert any(name.endswith(("_cuvid", "_qsv")) for name in names)


@pytest.mark.parametrize("coder, codec", CODERS_OF_MAPPED_CODECS)
def test_codec_follows_the_input_for_every_decoder_name(coder: str, codec: str) -> None:
    container = av.open(io.BytesIO(), "w", format="gif" if codec == "gif" else "matroska")
    assert codec_id_name(coder) == codec
    assert choose_codec(coder, container, None) == ENCODER_FOR_CODEC[codec]


def test_an_unknown_name_is_kept_as_it_is() -> None:
    assert codec_id_name("no-such-codec") == "no-such-codec"


@needs_ffmpeg
def test_av1_in_av1_out_and_svt_av1_is_quiet(tmp_path: Path, tiny_model_factory: Callable,
                                              run_cli: Callable) -> None:
    # As in the issue: AV1 (decoded by PyAV with libdav1d) + Opus in MKV. SVT-AV1 needs 64x64 at least.
    source = tmp_path / "av1.mkv"
    ffmpeg("-f", "lavfi", "-i", "mandelbrot=s=64x64:r=25", "-f", "lavfi", "-i", "sine", "-t", "0.32",
           "-c:v", "libsvtav1", "-c:a", "libopus", source)
    with av.open(str(source)) as container:
        assert container.streams.video[0].codec_context.name == "libdav1d"  # the case the issue is about
    weights = tmp_path / "tiny.safetensors"
    save_weights(tiny_model_factory(scale=2), weights)
    target = tmp_path / "out.mkv"
    result = run_cli(source, target, "--weights", weights)
    assert result.returncode == 0, result.stderr
    video = next(s for s in streams(target) if s["codec_type"] == "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("av1", 128, 128)
    assert "Svt[info]" not in result.stderr and "Svt[" not in result.stdout
