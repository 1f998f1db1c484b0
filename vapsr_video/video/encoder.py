"""Choosing and configuring the video encoder: codec, pixel format, quality, colour tags."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction

import av

from vapsr_video.choices import CRF_LIMITS
from vapsr_video.errors import UsageError
from vapsr_video.video.colour import (
    ColourSpec,
    alpha_twin,
    has_alpha,
    is_native_format,
    native_fallback,
    plane_layout,
)
from vapsr_video.video.containers import codec_id_name, container_holds

log = logging.getLogger(__name__)

# Input codec (FFmpeg's codec id name, never a decoder's name such as libdav1d or h264_cuvid) -> the
# encoder that writes the same format (so the output is what the input was, only bigger).
ENCODER_FOR_CODEC: dict[str, str] = {
    "h264": "libx264",
    "hevc": "libx265",
    "av1": "libsvtav1",
    "vp9": "libvpx-vp9",
    "prores": "prores_ks",
    "ffv1": "ffv1",
    "gif": "gif",
}
FALLBACK_ENCODERS = ("libx264", "libsvtav1", "libvpx-vp9", "mpeg4")

# Quality defaults a little above the encoders' own, because an upscale is meant to keep detail.
DEFAULT_CRF: dict[str, int] = {"libx264": 18, "libx265": 20, "libsvtav1": 30, "libvpx-vp9": 24}
CRF_ENCODERS = frozenset({"libx264", "libx265", "libsvtav1", "libvpx-vp9", "libaom-av1", "librav1e"})
# Each encoder's --crf scale (FFmpeg's option ranges); any other encoder in CRF_ENCODERS: 0-63.
CRF_RANGES: dict[str, tuple[int, int]] = {"libx264": (0, 51), "libx265": (0, 51), "libsvtav1": (0, 63),
                                          "libvpx-vp9": (0, 63), "libaom-av1": (0, 63), "librav1e": (0, 255)}

PRESET_ENCODERS = frozenset({"libx264", "libx265", "libsvtav1"})
# Encoders that take palette frames: the pipeline writes planar RGB and a filter graph makes the palettes.
PALETTE_ENCODERS = frozenset({"gif"})
# Encoders whose alpha is a second bitstream in packet side data (only Matroska/WebM store it).
SIDE_DATA_ALPHA_ENCODERS = frozenset({"libvpx-vp9", "libvpx"})
# Lossy encoders whose 4:4:4 and RGB profiles many players and devices cannot decode; RGB sources get 4:2:0.
DELIVERY_ENCODERS = frozenset({"libx264", "libx265", "libsvtav1", "libvpx-vp9", "libvpx", "mpeg4",
                               "libaom-av1", "mpeg2video"})


@dataclass
class EncodeOptions:
    """Encoder settings, named as in FFmpeg's command line; ``None`` means "choose for me"."""

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    bitrate: str | None = None
    encoder_options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EncoderChoice:
    codec: str
    pix_fmt: str  # the planes the pipeline produces (a native format)
    options: dict[str, str]
    bit_rate: int | None
    encoder_pix_fmt: str = ""  # what the encoder is opened with, when not pix_fmt (alpha, palette, packed)
    keeps_alpha: bool = False  # the source's alpha plane is written beside the picture
    palette: bool = False  # frames go through the palette filter graph (GIF)

    @property
    def opened_pix_fmt(self) -> str:
        return self.encoder_pix_fmt or self.pix_fmt


def parse_bitrate(text: str) -> int:
    """``"8M"``, ``"2500k"`` or ``"1200000"`` -> bits per second."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*(?:b(?:ps)?|bit/s)?\s*", text)
    if not match:
        raise UsageError(f"bitrate {text!r} is not a number like 8M, 2500k or 1200000")
    factor = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}[match[2].lower()]
    return int(float(match[1]) * factor)


def encoder_exists(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except (ValueError, av.FFmpegError):
        return False
    return True


def choose_codec(input_codec: str, container: av.container.OutputContainer, requested: str | None) -> str:
    """The user's codec, else the one matching the input, else one the output container can hold."""
    if requested:
        if not encoder_exists(requested):
            raise UsageError(f"video encoder {requested!r} is not available in this FFmpeg build")
        if not container_holds(container, requested):
            raise UsageError(f"a {container.format.name} file cannot hold {requested} video; "
                             "choose another --codec or output extension")
        return requested
    preferred = ENCODER_FOR_CODEC.get(codec_id_name(input_codec))
    candidates = ([preferred] if preferred else []) + list(FALLBACK_ENCODERS)
    for candidate in candidates:
        if encoder_exists(candidate) and container_holds(container, candidate):
            if preferred and candidate != preferred:
                log.warning("a %s file cannot hold %s video; encoding with %s instead",
                            container.format.name, preferred, candidate)
            return candidate
    raise UsageError(f"no available video encoder can write a {container.format.name} file")


def _depth_and_chroma(pix_fmt: str) -> tuple[int, tuple[int, int], str]:
    layout = plane_layout(pix_fmt, 64, 64)
    return layout.bit_depth, layout.chroma_shift, layout.family


def choose_pix_fmt(source_fmt: str, encoder: str, requested: str | None, *,
                   among: list[str] | None = None) -> str:
    """Keep the source's bit depth and chroma layout where the encoder allows; never lose depth silently.

    ``among``: choose only from these native formats (those the encoder can also store with alpha).
    """
    offered = [fmt.name for fmt in (av.codec.Codec(encoder, "w").video_formats or ())]
    usable = among if among is not None else [name for name in offered
                                              if is_native_format(name) and not name.startswith("yuvj")]
    if requested:
        if offered and requested not in offered:
            raise UsageError(f"{encoder} cannot write pixel format {requested}; it offers {', '.join(offered)}")
        if not is_native_format(requested):
            raise UsageError(f"pixel format {requested} is not supported for output; use a planar YUV, "
                             "grey or gbrp format (e.g. yuv420p, yuv420p10le, yuv444p)")
        return requested
    source = source_fmt.replace("yuvj", "yuv")  # the range travels as a tag, not in the format name
    depth, chroma, family = _depth_and_chroma(source)
    if family == "rgb" and encoder in DELIVERY_ENCODERS:
        # RGB and palette sources (GIF, screen captures, PNG sequences) would become 4:4:4 or RGB
        # profiles that many players cannot play; 4:2:0 at the source's depth is what plays everywhere.
        playable = "yuv420p" if depth <= 8 else "yuv420p10le"
        if playable in usable:
            log.warning("the video is RGB (%s); writing %s so that common players can play it "
                        "(--pix-fmt yuv444p keeps full colour resolution)", source_fmt, playable)
            return playable
    if not offered or source in usable:
        return source

    def preference(name: str) -> tuple:
        cand_depth, cand_chroma, cand_family = _depth_and_chroma(name)
        # Order: same family, no loss of depth (smallest sufficient), no loss of chroma, then closeness.
        return (cand_family != family and not (family == "gray" and cand_family == "yuv"),
                cand_depth < depth, abs(cand_depth - depth),
                cand_chroma[0] > chroma[0] or cand_chroma[1] > chroma[1], cand_chroma != chroma)

    if not usable:
        raise UsageError(f"{encoder} offers no pixel format this tool writes ({', '.join(offered)})")
    chosen = min(usable, key=preference)
    chosen_depth, chosen_chroma, _ = _depth_and_chroma(chosen)
    if chosen_depth < depth or chosen_chroma[0] > chroma[0] or chosen_chroma[1] > chroma[1]:
        log.warning("%s cannot write %s; writing %s (less precision); pick another --codec to keep it",
                    encoder, source_fmt, chosen)
    return chosen


def encoder_settings(encoder: str, options: EncodeOptions) -> tuple[dict[str, str], int | None]:
    """The codec options (as FFmpeg's ``-key value`` pairs) and bit rate for these choices."""
    settings: dict[str, str] = {}
    bit_rate = parse_bitrate(options.bitrate) if options.bitrate else None
    if options.crf is not None:
        if encoder not in CRF_ENCODERS:
            raise UsageError(f"--crf does not apply to {encoder}; use --bitrate or --encoder-option")
        low, high = CRF_RANGES.get(encoder, CRF_LIMITS)
        if not low <= options.crf <= high:
            raise UsageError(f"--crf {options.crf} is outside {encoder}'s range {low}-{high}")
        settings["crf"] = str(options.crf)
    elif bit_rate is None and encoder in DEFAULT_CRF:
        settings["crf"] = str(DEFAULT_CRF[encoder])
    if "crf" in settings and encoder == "libvpx-vp9" and bit_rate is None:
        settings["b"] = "0"  # constant quality mode in libvpx needs the bit rate set to zero
    if options.preset is not None:
        if encoder not in PRESET_ENCODERS:
            raise UsageError(f"--preset does not apply to {encoder}; use --encoder-option")
        settings["preset"] = options.preset
    if encoder == "libx265":
        settings.setdefault("x265-params", "log-level=error")
    check_encoder_options(encoder, options.encoder_options)
    settings.update(options.encoder_options)
    return settings, bit_rate


def alpha_formats(encoder: str) -> dict[str, str]:
    """Native format -> the format with alpha the encoder takes for it (``yuv420p`` -> ``yuva420p`` for VP9,
    ``gbrp`` -> ``rgba`` for PNG); empty when the encoder cannot store alpha."""
    offered = [fmt.name for fmt in (av.codec.Codec(encoder, "w").video_formats or ())]
    found: dict[str, str] = {}
    for name in offered:
        if not has_alpha(name) or re.search(r"f(16|32)", name):  # float formats are not for delivery
            continue
        planar = native_fallback(name)
        # The pipeline builds the planar twin (yuva420p, gbrap); a packed format (rgba) is converted from it.
        # Prefer the twin itself: no conversion.
        if planar and alpha_twin(planar) and (planar not in found or alpha_twin(planar) == name):
            found[planar] = name
    return found


def encoder_option_names(encoder: str) -> frozenset[str]:
    """Every option ``encoder`` takes: its own and FFmpeg's generic codec options."""
    supported = av.CodecContext.create(encoder, "w").supported_options
    return frozenset(option.name for option in (*supported.generic, *supported.private))


def check_encoder_options(encoder: str, options: dict[str, str]) -> None:
    """Refuse options the encoder does not know, as ffmpeg does (FFmpeg itself would ignore them silently)."""
    unknown = sorted(set(options) - encoder_option_names(encoder))
    if unknown:
        raise UsageError(f"{encoder} has no option {', '.join(map(repr, unknown))} "
                         f"(see 'ffmpeg -h encoder={encoder}')")


def choose_encoder(input_codec: str, source_fmt: str, container: av.container.OutputContainer,
                   options: EncodeOptions, *, alpha: bool = False) -> EncoderChoice:
    """Codec, pixel formats and settings; ``alpha``: the source has an alpha plane to keep if the codec can."""
    codec = choose_codec(input_codec, container, options.codec)
    settings, bit_rate = encoder_settings(codec, options)
    if codec in PALETTE_ENCODERS and options.pix_fmt in (None, "pal8"):
        return EncoderChoice(codec=codec, pix_fmt="gbrp", options=settings, bit_rate=bit_rate,
                             encoder_pix_fmt="pal8", palette=True)
    with_alpha = alpha_formats(codec) if alpha and not options.pix_fmt else {}
    if codec in SIDE_DATA_ALPHA_ENCODERS and container.format.name not in ("matroska", "webm"):
        with_alpha = {}  # VP8/VP9 alpha travels in Matroska BlockAdditional side data, which only MKV/WebM store
    if with_alpha:
        pix_fmt = choose_pix_fmt(source_fmt, codec, None, among=sorted(with_alpha))
        return EncoderChoice(codec=codec, pix_fmt=pix_fmt, options=settings, bit_rate=bit_rate,
                             encoder_pix_fmt=with_alpha[pix_fmt], keeps_alpha=True)
    pix_fmt = choose_pix_fmt(source_fmt, codec, options.pix_fmt)
    return EncoderChoice(codec=codec, pix_fmt=pix_fmt, options=settings, bit_rate=bit_rate)


def configure_video_stream(stream: av.video.stream.VideoStream, choice: EncoderChoice, *, width: int, height: int,
                           time_base: Fraction, frame_rate: Fraction | None, sample_aspect_ratio: Fraction | None,
                           colour: ColourSpec) -> None:
    """Set size, format, time base and colour tags before the encoder opens."""
    context = stream.codec_context
    context.width, context.height = width, height
    context.pix_fmt = choice.opened_pix_fmt
    context.time_base = time_base
    stream.time_base = time_base
    if frame_rate:
        context.framerate = frame_rate
    if sample_aspect_ratio:
        context.sample_aspect_ratio = sample_aspect_ratio
    context.colorspace = colour.matrix
    context.color_range = colour.range_tag
    context.color_primaries = colour.primaries
    context.color_trc = colour.transfer
    context.thread_count = 0  # let the encoder pick its thread count
    if choice.codec == "libsvtav1":
        # SVT-AV1 prints its whole configuration (~20 "Svt[info]" lines) to stderr on every open; errors
        # only, unless the user set SVT_LOG themselves. Read by the library when the encoder opens.
        os.environ.setdefault("SVT_LOG", "1")
    if choice.bit_rate:
        context.bit_rate = choice.bit_rate
    context.options = dict(choice.options)
