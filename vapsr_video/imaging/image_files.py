"""Still images on disk: read and write PNG, JPEG, WebP and TIFF with PyAV alone.

Pixels travel as H x W x 3 RGB arrays, uint8 or uint16 (16-bit PNG and TIFF keep
their depth). Grayscale inputs become RGB, because the network is an RGB model;
an alpha channel is kept (upscaled with plain bicubic interpolation, since the
network was never trained on it) and written back where the format can hold it.

A picture whose header declares more than ``max_pixels`` is refused before it is
decoded, so a tiny crafted file cannot make the reader allocate gigabytes.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import torch
from torch.nn import functional as F

from vapsr_video.choices import DEFAULT_MAX_PIXELS
from vapsr_video.errors import InputError, OutputError
from vapsr_video.safe_output import atomic_output, check_output_path

if TYPE_CHECKING:
    from vapsr_video.inference.upscaler import Upscaler


@dataclass(frozen=True)
class ImageFormat:
    """How one output file type is encoded."""

    name: str
    codec: str
    pix_fmt_8bit: str
    pix_fmt_16bit: str | None  # None: the format holds 8 bits per channel only
    pix_fmt_alpha: str | None  # None: the format cannot hold an alpha channel
    pix_fmt_alpha_16bit: str | None
    options: tuple[tuple[str, str], ...] = ()


# Every file name ending this package reads as a still image (training, evaluation and the CLI use this list).
IMAGE_SUFFIXES = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"})

_PNG = ImageFormat("PNG", "png", "rgb24", "rgb48be", "rgba", "rgba64be")
# Fixed quantiser 2 (the best mjpeg offers in practice) and no chroma subsampling:
# an upscaler should not throw away the detail it just made.
_JPEG = ImageFormat("JPEG", "mjpeg", "yuvj444p", None, None, None, (("qmin", "2"), ("qmax", "2")))
_WEBP = ImageFormat("WebP", "libwebp", "bgra", None, "bgra", None, (("quality", "95"),))
_TIFF = ImageFormat("TIFF", "tiff", "rgb24", "rgb48le", "rgba", "rgba64le", (("compression_algo", "deflate"),))

OUTPUT_FORMATS: dict[str, ImageFormat] = {
    ".png": _PNG,
    ".jpg": _JPEG,
    ".jpeg": _JPEG,
    ".webp": _WEBP,
    ".tif": _TIFF,
    ".tiff": _TIFF,
}


@dataclass
class StillImage:
    """An RGB image and, if it had one, its alpha channel (same size and dtype)."""

    rgb: np.ndarray  # H x W x 3, uint8 or uint16
    alpha: np.ndarray | None = None  # H x W

    @property
    def bit_depth(self) -> int:
        return 16 if self.rgb.dtype == np.uint16 else 8

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return self.rgb.shape[1], self.rgb.shape[0]


def output_format(path: str | Path) -> ImageFormat:
    """The format an output path asks for, from its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        known = ", ".join(sorted(OUTPUT_FORMATS))
        raise OutputError(f"{path}: cannot write images of type '{suffix or '(no extension)'}'; use one of {known}")
    return OUTPUT_FORMATS[suffix]


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if size == 0:
        raise InputError(f"{path}: empty file, not an image")


def _decode_single_frame(path: Path, max_pixels: int) -> av.VideoFrame:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: not an image (no picture in it)")
            stream = container.streams.video[0]
            context = stream.codec_context
            if context.width * context.height > max_pixels:
                raise InputError(f"{path}: the image is {context.width}x{context.height} "
                                 f"({context.width * context.height:,} pixels), more than the limit of "
                                 f"{max_pixels:,}; raise --max-pixels if the file is genuine")
            # FFmpeg's own check too, for formats whose header the demuxer does not read.
            context.options = {**context.options, "max_pixels": str(max_pixels)}
            frames = container.decode(stream)
            frame = next(frames, None)
            if frame is None:
                raise InputError(f"{path}: not a readable image (no picture could be decoded)")
            if next(frames, None) is not None:
                raise InputError(f"{path}: holds more than one picture (a video or an animation), not a still image")
            return frame
    except av.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise InputError(f"{path}: not a readable image ({reason})") from None


def _has_alpha(pix_fmt: av.VideoFormat) -> bool:
    return pix_fmt.has_palette or any(component.is_alpha for component in pix_fmt.components)


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> StillImage:
    """Decode an image file into RGB (uint8, or uint16 for sources deeper than 8 bits).

    Raises :class:`InputError` for unreadable files and for pictures larger than ``max_pixels``.
    """
    path = Path(path)
    _check_readable(path)
    frame = _decode_single_frame(path, max_pixels)
    source = frame.format
    deep = any(component.bits > 8 for component in source.components)
    try:
        if _has_alpha(source):
            rgba = frame.to_ndarray(format="rgba64le" if deep else "rgba")
            rgb, alpha = np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
            # A palette without transparency, or an alpha plane that is opaque everywhere,
            # carries nothing worth the cost of upscaling it.
            if alpha.min() == np.iinfo(alpha.dtype).max:
                alpha = None
        else:
            rgb, alpha = frame.to_ndarray(format="rgb48le" if deep else "rgb24"), None
    except (av.FFmpegError, ValueError) as exc:
        raise InputError(f"{path}: cannot convert its pixels ({source.name}) to RGB ({exc})") from None
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputError(f"{path}: the image has no pixels")
    return StillImage(rgb=rgb, alpha=alpha)


def is_image_path(path: str | Path) -> bool:
    """Whether ``path``'s name ends in one of :data:`IMAGE_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_rgb(path: str | Path) -> np.ndarray:
    """The RGB pixels of an image file (alpha, if any, dropped), uint8 or uint16."""
    return read_image(path).rgb


def read_rgb8(path: str | Path) -> np.ndarray:
    """The RGB pixels of an 8-bit image file; a deeper one is refused.

    Training and evaluation work on 8-bit images, as the published benchmarks
    and the evaluation protocol do; reducing a 16-bit image quietly would change
    what is measured or learnt, so the user converts it knowingly instead.
    """
    rgb = read_rgb(path)
    if rgb.dtype != np.uint8:
        raise InputError(f"{path}: a 16-bit image; training and evaluation read 8-bit images only "
                         "(convert it first, e.g. ffmpeg -i IN -pix_fmt rgb24 OUT.png)")
    return rgb


def _encode(image: StillImage, fmt: ImageFormat, path: Path) -> bytes:
    deep = image.bit_depth == 16 and fmt.pix_fmt_16bit is not None
    rgb = image.rgb if deep or image.bit_depth == 8 else _to_8bit(image.rgb)
    alpha = image.alpha
    if alpha is not None and fmt.pix_fmt_alpha is None:
        raise OutputError(
            f"{path}: {fmt.name} cannot hold the input's transparency (alpha channel); write .png, .webp or .tiff"
        )
    if alpha is not None:
        alpha = alpha if deep or alpha.dtype == np.uint8 else _to_8bit(alpha)
        pixels = np.ascontiguousarray(np.dstack([rgb, alpha]))
        source_format = "rgba64le" if deep else "rgba"
        target_format = fmt.pix_fmt_alpha_16bit if deep else fmt.pix_fmt_alpha
    else:
        pixels = np.ascontiguousarray(rgb)
        source_format = "rgb48le" if deep else "rgb24"
        target_format = fmt.pix_fmt_16bit if deep else fmt.pix_fmt_8bit
    assert target_format is not None
    frame = av.VideoFrame.from_ndarray(pixels, format=source_format).reformat(format=target_format)
    codec = av.CodecContext.create(fmt.codec, "w")
    codec.width, codec.height = image.size
    codec.pix_fmt = target_format
    codec.time_base = fractions.Fraction(1, 1)
    codec.options = dict(fmt.options)
    packets = codec.encode(frame) + codec.encode(None)
    return b"".join(bytes(packet) for packet in packets)


def _to_8bit(values: np.ndarray) -> np.ndarray:
    return np.rint(values.astype(np.float32) / 257.0).astype(np.uint8)


def write_image(path: str | Path, image: StillImage, *, file_format: ImageFormat | None = None,
                shown_as: str | Path | None = None) -> None:
    """Encode ``image`` into ``path`` (format from the extension unless given).

    ``shown_as``: the name errors give (the final output when ``path`` is its hidden temporary file).
    """
    path = Path(path)
    name = shown_as if shown_as is not None else path
    fmt = file_format or output_format(path)
    try:
        data = _encode(image, fmt, Path(name))
    except av.FFmpegError as exc:
        raise OutputError(f"{name}: the {fmt.name} encoder failed ({exc})") from None
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise OutputError(f"{name}: cannot write ({exc.strerror or exc})") from None


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic enlargement of an alpha plane, same dtype back."""
    peak = float(np.iinfo(alpha.dtype).max)
    plane = torch.from_numpy(alpha.astype(np.float32) / peak)[None, None]
    with torch.inference_mode():
        bigger = F.interpolate(plane, scale_factor=scale, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
    return np.rint(bigger[0, 0].numpy() * peak).astype(alpha.dtype)


def upscale_image(image: StillImage, upscaler: Upscaler) -> StillImage:
    """The image upscaled by ``upscaler`` (alpha, if any, by bicubic interpolation)."""
    rgb = upscaler.upscale_array(image.rgb)
    alpha = upscale_alpha(image.alpha, upscaler.scale) if image.alpha is not None else None
    return StillImage(rgb=rgb, alpha=alpha)


def upscale_image_file(input_path: str | Path, output_path: str | Path, upscaler: Upscaler, *,
                       overwrite: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> Path:
    """Upscale one still image file into ``output_path``; returns the path written.

    The output appears only when complete; nothing is left behind on failure.
    Inputs larger than ``max_pixels`` are refused before they are decoded.
    """
    target = check_output_path(input_path, output_path, overwrite=overwrite)
    fmt = output_format(target)
    image = read_image(input_path, max_pixels=max_pixels)
    if image.alpha is not None and fmt.pix_fmt_alpha is None:
        # Refuse before spending time on the network.
        raise OutputError(
            f"{target}: {fmt.name} cannot hold the transparency (alpha channel) of {input_path}; "
            "write .png, .webp or .tiff"
        )
    result = upscale_image(image, upscaler)
    with atomic_output(target, overwrite=overwrite) as temporary:
        write_image(temporary, result, file_format=fmt, shown_as=target)
    return target


__all__ = [
    "IMAGE_SUFFIXES",
    "OUTPUT_FORMATS",
    "ImageFormat",
    "StillImage",
    "is_image_path",
    "output_format",
    "read_image",
    "read_rgb",
    "read_rgb8",
    "upscale_alpha",
    "upscale_image",
    "upscale_image_file",
    "write_image",
]
