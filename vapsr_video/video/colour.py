"""YUV <-> RGB on the device, with the stream's own matrix, range, bit depth and chroma layout.

Frames travel from the decoder to the device as the decoder's own planes
(8 or 16-bit integers, packed one plane after another in a flat buffer), so no
CPU-side colour conversion sits in the hot path; the conversion to RGB and back
is a handful of tensor operations next to the model.

Conventions (documented in docs/video.md):
- chroma is resampled where the stream says its samples sit (left, centre,
  top-left, ...; MPEG-2 "left" when untagged, centre for JPEG-range yuvj):
  linear interpolation up, a tent filter centred on each chroma site down;
- an untagged matrix is BT.709 for HD sizes and BT.601 below (what players assume),
  and the output is tagged with the matrix actually used, so a player does not
  guess differently at the larger output size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import av
import numpy as np
import torch

# FFmpeg's AVColorSpace values (matrix coefficients) -> (Kr, Kb)
_BT601 = (0.299, 0.114)
_BT709 = (0.2126, 0.0722)
_BT2020 = (0.2627, 0.0593)
MATRIX_COEFFICIENTS: dict[int, tuple[float, float]] = {
    1: _BT709,  # BT709
    4: (0.30, 0.11),  # FCC
    5: _BT601,  # BT470BG
    6: _BT601,  # SMPTE170M
    7: (0.212, 0.087),  # SMPTE240M
    9: _BT2020,  # BT2020_NCL
    10: _BT2020,  # BT2020_CL, approximated by the non-constant-luminance matrix
}
MATRIX_NAMES = {1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc", 10: "bt2020c"}
UNSPECIFIED = 2
RANGE_LIMITED = 1  # AVCOL_RANGE_MPEG
RANGE_FULL = 2  # AVCOL_RANGE_JPEG

_NATIVE = re.compile(r"^(?P<family>yuvj?(?P<sub>420|422|444|440|411|410)p|gray|gbrp)(?P<bits>\d+)?(le)?$")


def is_native_format(pix_fmt: str) -> bool:
    """Planar YUV, grey or planar RGB, little-endian: formats the device path reads directly."""
    match = _NATIVE.match(pix_fmt)
    return bool(match) and (match["bits"] is None or pix_fmt.endswith("le"))


def native_fallback(pix_fmt: str) -> str | None:
    """The planar format a non-native decoder format is converted to (once, by swscale), or None."""
    try:
        fmt = av.VideoFormat(pix_fmt, 64, 64)
    except (ValueError, av.FFmpegError):
        return None
    if fmt.is_bayer or fmt.is_bit_stream:
        return None
    colour = [c for c in fmt.components if not c.is_alpha]
    bits = max((c.bits for c in colour), default=8)
    if fmt.is_rgb or fmt.has_palette:
        return "gbrp" if bits <= 8 else "gbrp10le" if bits <= 10 else "gbrp16le"
    if len(colour) == 1:
        return "gray" if bits <= 8 else "gray16le"
    if len(colour) == 3:
        ratio = (64 // max(fmt.chroma_width(), 1), 64 // max(fmt.chroma_height(), 1))
        sub = {(2, 2): "420", (2, 1): "422", (1, 1): "444", (1, 2): "440"}.get(ratio, "444")
        depth = "" if bits <= 8 else "10le" if bits <= 10 else "12le" if bits <= 12 else "16le"
        return f"yuv{sub}p{depth}"
    return None


@dataclass(frozen=True)
class PlaneLayout:
    """Where each plane of one frame sits in a flat buffer of samples (no line padding)."""

    pix_fmt: str
    width: int
    height: int
    bit_depth: int
    family: str  # "yuv", "gray" or "rgb"
    chroma_shift: tuple[int, int]  # (horizontal, vertical) log2 subsampling
    plane_shapes: tuple[tuple[int, int], ...]  # (rows, columns) per plane, in the format's order

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bit_depth <= 8 else np.uint16)

    @property
    def torch_dtype(self) -> torch.dtype:
        # 16-bit samples travel as int16 bit patterns: unsigned 16-bit tensors have only partial
        # operator support in PyTorch (notably on CUDA), int16 has all of it.
        return torch.uint8 if self.bit_depth <= 8 else torch.int16

    @property
    def plane_sizes(self) -> tuple[int, ...]:
        return tuple(rows * columns for rows, columns in self.plane_shapes)

    @property
    def samples(self) -> int:
        return sum(self.plane_sizes)

    @property
    def peak(self) -> int:
        return (1 << self.bit_depth) - 1


def plane_layout(pix_fmt: str, width: int, height: int) -> PlaneLayout:
    match = _NATIVE.match(pix_fmt)
    if not match or not is_native_format(pix_fmt):
        raise ValueError(f"pixel format {pix_fmt} is not read directly; convert it first")
    family = match["family"]
    bits = int(match["bits"] or 8)
    if family == "gray":
        return PlaneLayout(pix_fmt, width, height, bits, "gray", (0, 0), ((height, width),))
    if family == "gbrp":
        shape = (height, width)
        return PlaneLayout(pix_fmt, width, height, bits, "rgb", (0, 0), (shape, shape, shape))
    shift_x, shift_y = {"420": (1, 1), "422": (1, 0), "444": (0, 0), "440": (0, 1), "411": (2, 0),
                        "410": (2, 2)}[match["sub"]]
    chroma = (-(-height >> shift_y), -(-width >> shift_x))  # ceil division, as FFmpeg sizes chroma planes
    return PlaneLayout(pix_fmt, width, height, bits, "yuv", (shift_x, shift_y), ((height, width), chroma, chroma))


def samples_to_tensor(samples: np.ndarray) -> torch.Tensor:
    """A host sample buffer (uint8 or uint16) as a tensor of the matching transport dtype, without a copy."""
    return torch.from_numpy(samples.view(np.int16) if samples.dtype == np.uint16 else samples)


def tensor_to_samples(tensor: torch.Tensor) -> np.ndarray:
    """The inverse of :func:`samples_to_tensor` for a host tensor, without a copy."""
    array = tensor.numpy()
    return array.view(np.uint16) if array.dtype == np.int16 else array


def planes_of(frame: av.VideoFrame, layout: PlaneLayout) -> list[np.ndarray]:
    """Views (no copy) of a decoded frame's planes, cropped to the visible samples."""
    views = []
    itemsize = layout.numpy_dtype.itemsize
    for plane, (rows, columns) in zip(frame.planes, layout.plane_shapes, strict=False):
        flat = np.frombuffer(plane, dtype=layout.numpy_dtype)
        views.append(flat.reshape(-1, plane.line_size // itemsize)[:rows, :columns])
    return views


def copy_frame_into(frame: av.VideoFrame, layout: PlaneLayout, buffer: np.ndarray) -> None:
    """Copy a decoded frame's planes into ``buffer`` (flat, ``layout.samples`` long), dropping line padding."""
    offset = 0
    for view, size, (rows, columns) in zip(planes_of(frame, layout), layout.plane_sizes, layout.plane_shapes,
                                            strict=True):
        np.copyto(buffer[offset:offset + size].reshape(rows, columns), view)
        offset += size


def frame_from_buffer(buffer: np.ndarray, layout: PlaneLayout) -> av.VideoFrame:
    """A new VideoFrame whose planes are filled from a flat sample buffer."""
    frame = av.VideoFrame(layout.width, layout.height, layout.pix_fmt)
    offset = 0
    for view, size, (rows, columns) in zip(planes_of(frame, layout), layout.plane_sizes, layout.plane_shapes,
                                           strict=True):
        np.copyto(view, buffer[offset:offset + size].reshape(rows, columns))
        offset += size
    return frame


@dataclass(frozen=True)
class ColourSpec:
    """How a stream's samples map to RGB: matrix (AVColorSpace), range, and the tags to carry over."""

    matrix: int
    full_range: bool
    primaries: int = UNSPECIFIED
    transfer: int = UNSPECIFIED
    chroma_location: int = 1  # AVChromaLocation used for resampling (left unless the stream says otherwise)
    chroma_location_tag: int = 0  # what the stream said (0: unspecified), carried over as is

    @property
    def coefficients(self) -> tuple[float, float]:
        return MATRIX_COEFFICIENTS.get(self.matrix, _BT709)

    @property
    def range_tag(self) -> int:
        return RANGE_FULL if self.full_range else RANGE_LIMITED


def default_matrix(width: int, height: int) -> int:
    """What players assume for untagged video: BT.709 at HD sizes, BT.601 below."""
    return 1 if width >= 1280 or height > 576 else 6


def colour_spec(decoder: av.video.codeccontext.VideoCodecContext, pix_fmt: str) -> ColourSpec:
    """The colour description of a decoder's pictures (its tags, or the usual defaults when untagged)."""
    matrix = decoder.colorspace if decoder.colorspace in MATRIX_COEFFICIENTS else default_matrix(decoder.width,
                                                                                                  decoder.height)
    full = decoder.color_range == RANGE_FULL or pix_fmt.startswith("yuvj") or pix_fmt.startswith("gbrp")
    tag = int(getattr(decoder, "chroma_location", None) or getattr(decoder, "chroma_sample_location", 0) or 0)
    location = tag if tag in CHROMA_SITING else default_chroma_location(pix_fmt)
    return ColourSpec(matrix=matrix, full_range=full, primaries=decoder.color_primaries, transfer=decoder.color_trc,
                      chroma_location=location, chroma_location_tag=tag)


_RGB_MATRICES: dict[tuple[float, float, str], torch.Tensor] = {}


def _rgb_from_yuv_matrix(kr: float, kb: float, device: torch.device) -> torch.Tensor:
    """Cached per device: building it per batch would mean a host->device copy that synchronizes the stream."""
    key = (kr, kb, str(device))
    if key not in _RGB_MATRICES:
        _RGB_MATRICES[key] = _build_rgb_from_yuv_matrix(kr, kb).to(device)
    return _RGB_MATRICES[key]


def _build_rgb_from_yuv_matrix(kr: float, kb: float) -> torch.Tensor:
    kg = 1.0 - kr - kb
    return torch.tensor([
        [1.0, 0.0, 2.0 * (1.0 - kr)],
        [1.0, -2.0 * kb * (1.0 - kb) / kg, -2.0 * kr * (1.0 - kr) / kg],
        [1.0, 2.0 * (1.0 - kb), 0.0],
    ], dtype=torch.float32)


def _levels(layout: PlaneLayout, full_range: bool) -> tuple[float, float, float, float]:
    """(luma offset, luma scale, chroma offset, chroma scale) in code values of this bit depth."""
    if full_range or layout.family == "rgb":
        return 0.0, float(layout.peak), float(1 << (layout.bit_depth - 1)), float(layout.peak)
    step = float(1 << (layout.bit_depth - 8))
    return 16.0 * step, 219.0 * step, 128.0 * step, 224.0 * step


def _split_planes(samples: torch.Tensor, layout: PlaneLayout) -> list[torch.Tensor]:
    """(N, samples) integers -> list of (N, rows, columns) float planes."""
    planes, offset = [], 0
    for size, (rows, columns) in zip(layout.plane_sizes, layout.plane_shapes, strict=True):
        plane = samples[:, offset:offset + size].reshape(-1, rows, columns)
        if plane.dtype == torch.int16:  # 16-bit transport: reinterpret as unsigned
            plane = plane.to(torch.int32) & 0xFFFF
        planes.append(plane.float())
        offset += size
    return planes


# AVChromaLocation -> position of the first chroma sample in luma pixels, as a fraction of the
# subsampling step (0: co-sited with the first luma sample, 0.5: centred between two, 1: on the second).
CHROMA_SITING: dict[int, tuple[float, float]] = {
    1: (0.0, 0.5),  # left (MPEG-2, H.264, HEVC default for 4:2:0)
    2: (0.5, 0.5),  # center (MPEG-1, JPEG)
    3: (0.0, 0.0),  # top-left (BT.2020 / UHD masters)
    4: (0.5, 0.0),  # top
    5: (0.0, 1.0),  # bottom-left
    6: (0.5, 1.0),  # bottom
}
CHROMA_LEFT, CHROMA_CENTER = 1, 2


def default_chroma_location(pix_fmt: str) -> int:
    """What decoders assume when a stream does not say: JPEG-style centre for yuvj, else MPEG-2 left."""
    return CHROMA_CENTER if pix_fmt.startswith("yuvj") else CHROMA_LEFT


def _along(dim: int, ndim: int, part: slice) -> tuple[slice, ...]:
    """An index that takes ``part`` along ``dim`` and everything along the other dimensions."""
    index = [slice(None)] * ndim
    index[dim] = part
    return tuple(index)


@dataclass(frozen=True)
class LinearUpsampler:
    """Linear interpolation from ``reduced`` to ``full`` samples along one axis, in O(samples).

    Output sample ``factor * m + p`` lies between input samples ``m + start[p] - 1`` and
    ``m + start[p]`` with the same weights for every ``m``, so each phase ``p`` is two shifted
    slices of the input (edges repeat the outermost sample, which is what clamping the
    position gives) and the phases interleave into the output.
    """

    full: int
    factor: int
    phases: tuple[tuple[int, float], ...]  # per phase: (slice start in the padded input, upper weight)

    def apply(self, planes: torch.Tensor, dim: int) -> torch.Tensor:
        reduced = planes.shape[dim]
        padded = torch.cat([planes.narrow(dim, 0, 1), planes, planes.narrow(dim, reduced - 1, 1)], dim=dim)
        phases = []
        for start, upper in self.phases:
            lower = padded.narrow(dim, start, reduced)
            higher = padded.narrow(dim, start + 1, reduced)
            phases.append(torch.lerp(lower, higher, upper))
        stacked = torch.stack(phases, dim=dim % planes.dim() + 1)  # (..., reduced, factor, ...)
        shape = list(planes.shape)
        shape[dim] = reduced * self.factor
        return stacked.reshape(shape).narrow(dim, 0, self.full)


@dataclass(frozen=True)
class TentDownsampler:
    """A tent filter of half-width ``factor`` centred on each chroma site, ``full`` -> ``reduced``
    samples along one axis, in O(samples): every output sees the same ``weights`` at a stride of
    ``factor`` in the zero-padded input; outputs near an edge, whose tent reaches outside the plane,
    are divided by the part of the tent inside it (``norm``)."""

    full: int
    reduced: int
    factor: int
    pad_before: int
    weights: tuple[float, ...]
    norm: torch.Tensor  # (reduced,) sum of the weights that fall inside the plane

    def apply(self, planes: torch.Tensor, dim: int) -> torch.Tensor:
        dim %= planes.dim()
        width = (self.reduced + 1) * self.factor
        pad_after = width - self.pad_before - self.full
        padding = [0, 0] * (planes.dim() - 1 - dim) + [self.pad_before, pad_after]
        padded = torch.nn.functional.pad(planes, padding)
        result = None
        for tap, weight in enumerate(self.weights):
            if weight == 0.0:
                continue
            term = padded[_along(dim, planes.dim(), slice(tap, tap + self.reduced * self.factor, self.factor))]
            result = term * weight if result is None else result.add_(term, alpha=weight)
        assert result is not None
        shape = [1] * planes.dim()
        shape[dim] = self.reduced
        return result.div_(self.norm.reshape(shape))


def _resampling_filters(full: int, reduced: int, factor: int, siting: float,
                        device: torch.device) -> tuple[LinearUpsampler, TentDownsampler]:
    """(up, down): linear interpolation and its tent-filter counterpart for chroma samples that sit
    at ``factor * i + siting * (factor - 1)`` luma pixels."""
    offset = siting * (factor - 1)
    phases = []
    for phase in range(factor):
        position = (phase - offset) / factor  # relative to m; between -1 and 1
        below = math.floor(position)
        phases.append((below + 1, position - below))  # +1: the padded input starts one sample early
    up = LinearUpsampler(full, factor, tuple(phases))
    # Output i's tent covers luma samples floor(centre_i) - factor + 1 ... floor(centre_i) + factor,
    # with centre_i = factor * i + offset; padding the start by factor - 1 - floor(offset) puts the first
    # of them at factor * i.
    whole = math.floor(offset)
    pad_before = factor - 1 - whole
    weights = tuple(max(0.0, 1 - abs(whole - factor + 1 + tap - offset) / factor) for tap in range(2 * factor))
    first = torch.arange(reduced, dtype=torch.float64) * factor - pad_before
    positions = first[:, None] + torch.arange(2 * factor, dtype=torch.float64)[None, :]
    inside = (positions >= 0) & (positions < full)
    norm = (torch.tensor(weights, dtype=torch.float64)[None, :] * inside).sum(dim=1)
    down = TentDownsampler(full, reduced, factor, pad_before, weights, norm.float().to(device))
    return up, down


_FILTERS: dict[tuple, tuple[LinearUpsampler, TentDownsampler]] = {}


def _chroma_filters(layout: PlaneLayout, location: int, axis: int,
                    device: torch.device) -> tuple[LinearUpsampler, TentDownsampler] | None:
    """Cached per device (building them per batch would mean a host->device copy that synchronizes)."""
    shift = layout.chroma_shift[axis]
    if shift == 0:
        return None
    full = layout.width if axis == 0 else layout.height
    reduced = layout.plane_shapes[1][1 - axis]
    siting = CHROMA_SITING.get(location, CHROMA_SITING[CHROMA_LEFT])[axis]
    key = (full, reduced, shift, siting, str(device))
    if key not in _FILTERS:
        _FILTERS[key] = _resampling_filters(full, reduced, 1 << shift, siting, device)
    return _FILTERS[key]


def _resample_chroma(chroma: torch.Tensor, layout: PlaneLayout, location: int, which: int) -> torch.Tensor:
    """Apply the siting-aware chroma filters of ``layout``: ``which`` 0 upsamples (linear
    interpolation), 1 downsamples (a tent filter centred on each chroma site)."""
    horizontal = _chroma_filters(layout, location, 0, chroma.device)
    vertical = _chroma_filters(layout, location, 1, chroma.device)
    if horizontal is not None:
        chroma = horizontal[which].apply(chroma, -1)
    if vertical is not None:
        chroma = vertical[which].apply(chroma, -2)
    return chroma


def _upsample_chroma(chroma: torch.Tensor, layout: PlaneLayout, location: int) -> torch.Tensor:
    """(N, 2, rows, columns) chroma -> (N, 2, H, W)."""
    return _resample_chroma(chroma, layout, location, 0)


def _downsample_chroma(chroma: torch.Tensor, layout: PlaneLayout, location: int) -> torch.Tensor:
    """(N, 2, H, W) chroma -> the plane size of ``layout``."""
    return _resample_chroma(chroma, layout, location, 1)


def yuv_to_rgb(samples: torch.Tensor, layout: PlaneLayout, spec: ColourSpec) -> torch.Tensor:
    """(N, layout.samples) planes (uint8, or int16 carrying 16-bit patterns) -> (N, 3, H, W) float RGB
    in [0, 1] (not clamped)."""
    planes = _split_planes(samples, layout)
    y_offset, y_scale, c_offset, c_scale = _levels(layout, spec.full_range)
    if layout.family == "gray":
        luma = (planes[0] - y_offset) / y_scale
        return luma.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    if layout.family == "rgb":
        green, blue, red = planes  # gbrp stores G, B, R
        return torch.stack([red, green, blue], dim=1) / float(layout.peak)
    luma = (planes[0] - y_offset) / y_scale
    chroma = (torch.stack(planes[1:], dim=1) - c_offset) / c_scale
    chroma = _upsample_chroma(chroma, layout, spec.chroma_location)
    yuv = torch.cat([luma.unsqueeze(1), chroma], dim=1)
    matrix = _rgb_from_yuv_matrix(*spec.coefficients, samples.device)
    return torch.einsum("ij,njhw->nihw", matrix, yuv)


def _quantize(values: torch.Tensor, layout: PlaneLayout) -> torch.Tensor:
    return values.round_().clamp_(0, layout.peak).to(torch.int32).flatten(1)


def _to_transport(codes: torch.Tensor, layout: PlaneLayout) -> torch.Tensor:
    """int32 codes -> uint8, or int16 holding the unsigned 16-bit pattern (two's complement wrap)."""
    if layout.torch_dtype == torch.int16:
        codes = torch.where(codes > 32767, codes - 65536, codes)
    return codes.to(layout.torch_dtype)


def rgb_to_yuv(rgb: torch.Tensor, layout: PlaneLayout, spec: ColourSpec) -> torch.Tensor:
    """(N, 3, H, W) float RGB in [0, 1] -> (N, layout.samples) planes in ``layout.torch_dtype``, rounded
    and clamped."""
    y_offset, y_scale, c_offset, c_scale = _levels(layout, spec.full_range)
    rgb = rgb.float()
    if layout.family == "rgb":
        scaled = rgb * float(layout.peak)
        return _to_transport(torch.cat([_quantize(scaled[:, channel], layout) for channel in (1, 2, 0)], dim=1),
                             layout)
    kr, kb = spec.coefficients
    luma = kr * rgb[:, 0] + (1.0 - kr - kb) * rgb[:, 1] + kb * rgb[:, 2]
    luma_codes = _quantize(luma * y_scale + y_offset, layout)
    if layout.family == "gray":
        return _to_transport(luma_codes, layout)
    chroma = torch.stack([(rgb[:, 2] - luma) / (2.0 * (1.0 - kb)), (rgb[:, 0] - luma) / (2.0 * (1.0 - kr))], dim=1)
    chroma = _downsample_chroma(chroma, layout, spec.chroma_location) * c_scale + c_offset
    codes = torch.cat([luma_codes, _quantize(chroma[:, 0], layout), _quantize(chroma[:, 1], layout)], dim=1)
    return _to_transport(codes, layout)


# ----------------------------------------------------------------------------- alpha planes
# The picture goes through the model; the alpha plane (transparency) does not: it is resized on the
# CPU with a plain bicubic resampler and stored beside the upscaled picture where the codec allows.


def has_alpha(pix_fmt: str) -> bool:
    """Whether frames of ``pix_fmt`` carry an alpha (transparency) component."""
    try:
        return any(component.is_alpha for component in av.VideoFormat(pix_fmt, 16, 16).components)
    except (ValueError, av.FFmpegError):
        return False


def alpha_twin(pix_fmt: str) -> str | None:
    """The planar format that is ``pix_fmt`` (native, without alpha) plus an alpha plane, if FFmpeg has one.

    ``yuv420p`` -> ``yuva420p``, ``yuv444p10le`` -> ``yuva444p10le``, ``gbrp`` -> ``gbrap``; grey has none.
    """
    match = _NATIVE.match(pix_fmt)
    if not match or match["family"] == "gray":
        return None
    twin = "gbrap" + pix_fmt[4:] if match["family"] == "gbrp" else "yuva" + pix_fmt[3:]
    try:
        av.VideoFormat(twin, 16, 16)
    except (ValueError, av.FFmpegError):
        return None
    return twin


def _alpha_bits(pix_fmt: str) -> int:
    return next(c.bits for c in av.VideoFormat(pix_fmt, 16, 16).components if c.is_alpha)


def alpha_plane(frame: av.VideoFrame) -> tuple[np.ndarray, int]:
    """A copy of the frame's alpha samples (rows x columns) and their bit depth."""
    name = frame.format.name
    if not name.startswith(("yuva", "gbrap")):  # packed (rgba, bgra, ya8, pal8, ...): make it planar first
        deep = _alpha_bits(name) > 8 if has_alpha(name) else False
        frame = frame.reformat(format="gbrap16le" if deep else "gbrap")
        name = frame.format.name
    bits = _alpha_bits(name)
    dtype = np.dtype(np.uint8 if bits <= 8 else np.uint16)
    plane = frame.planes[-1]
    rows = np.frombuffer(plane, dtype=dtype).reshape(-1, plane.line_size // dtype.itemsize)
    return rows[:frame.height, :frame.width].copy(), bits


def is_opaque(alpha: np.ndarray, bits: int) -> bool:
    return bool(alpha.min() == (1 << bits) - 1)


def resize_alpha(alpha: np.ndarray, bits: int, width: int, height: int, out_bits: int) -> np.ndarray:
    """``alpha`` resized to ``width`` x ``height`` (bicubic, PyTorch ``align_corners=False``, clamped),
    rescaled from ``bits`` to ``out_bits`` per sample."""
    values = torch.from_numpy(alpha.astype(np.float32))[None, None] / ((1 << bits) - 1)
    resized = torch.nn.functional.interpolate(values, size=(height, width), mode="bicubic", align_corners=False)
    codes = (resized[0, 0].clamp_(0.0, 1.0) * ((1 << out_bits) - 1)).round_()
    return codes.numpy().astype(np.uint8 if out_bits <= 8 else np.uint16)


def attach_alpha(frame: av.VideoFrame, layout: PlaneLayout, alpha: np.ndarray, alpha_bits: int) -> av.VideoFrame:
    """A new frame in :func:`alpha_twin` of ``layout``: ``frame``'s planes and ``alpha`` (any size and depth,
    resized to the frame)."""
    twin = alpha_twin(layout.pix_fmt)
    if twin is None:
        raise ValueError(f"{layout.pix_fmt} has no planar format with alpha")
    combined = av.VideoFrame(layout.width, layout.height, twin)
    for source, target in zip(planes_of(frame, layout), planes_of(combined, layout), strict=True):
        np.copyto(target, source)
    sized = resize_alpha(alpha, alpha_bits, layout.width, layout.height, layout.bit_depth)
    plane = combined.planes[-1]
    rows = np.frombuffer(plane, dtype=layout.numpy_dtype).reshape(-1, plane.line_size // layout.numpy_dtype.itemsize)
    np.copyto(rows[:layout.height, :layout.width], sized)
    return combined
