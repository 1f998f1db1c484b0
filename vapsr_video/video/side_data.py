"""HDR10 static metadata and other per-frame side data: carried where the encoder can write it, said
at run time where it cannot.

* **Mastering display and content light level** (HDR10): read from the stream's side data
  (MP4 ``mdcv``/``clli`` boxes, Matroska colour elements) or, failing that, from the first
  frame (HEVC/AV1 SEI and metadata OBUs). PyAV cannot attach side data to the frames we
  encode, so they are handed to the encoders that take them as options: libx265
  (``master-display``, ``max-cll``) and SVT-AV1 (``mastering-display``, ``content-light``),
  which write them into the bitstream (and the muxer copies them to the container).
  Other encoders: a warning.
* **A/53 closed captions, HDR10+ and Dolby Vision dynamic metadata** live in each frame's
  side data and PyAV cannot attach them to new frames: the first time one is seen, a
  warning says it is not carried.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.sidedata.sidedata import Type

log = logging.getLogger(__name__)

HDR_TRANSFERS = frozenset({16, 18})  # AVColorTransferCharacteristic: SMPTE ST 2084 (PQ), ARIB STD-B67 (HLG)


@dataclass(frozen=True)
class MasteringDisplay:
    """CIE 1931 xy chromaticities of the mastering display's primaries and white point, luminance in cd/m²."""

    red: tuple[Fraction, Fraction]
    green: tuple[Fraction, Fraction]
    blue: tuple[Fraction, Fraction]
    white: tuple[Fraction, Fraction]
    min_luminance: Fraction
    max_luminance: Fraction


@dataclass(frozen=True)
class LightLevel:
    max_cll: int  # maximum content light level, cd/m²
    max_fall: int  # maximum frame-average light level, cd/m²


@dataclass(frozen=True)
class StaticHdr:
    mastering: MasteringDisplay | None = None
    light: LightLevel | None = None

    def __bool__(self) -> bool:
        return self.mastering is not None or self.light is not None


def parse_mastering_display(data: bytes) -> MasteringDisplay | None:
    """libavutil's ``AVMasteringDisplayMetadata``: 10 rationals (R, G, B, white xy; min, max) and two flags."""
    if len(data) < 88:
        return None
    values = struct.unpack("<20i2i", data[:88])
    rationals = [Fraction(values[i], values[i + 1]) if values[i + 1] else Fraction(0) for i in range(0, 20, 2)]
    has_primaries, has_luminance = values[20], values[21]
    if not (has_primaries and has_luminance):
        return None
    red, green, blue, white = ((rationals[i], rationals[i + 1]) for i in range(0, 8, 2))
    return MasteringDisplay(red, green, blue, white, rationals[8], rationals[9])


def parse_light_level(data: bytes) -> LightLevel | None:
    if len(data) < 8:
        return None
    max_cll, max_fall = struct.unpack("<2I", data[:8])
    return LightLevel(max_cll, max_fall)


def read_static_hdr(stream: av.video.stream.VideoStream, path: Path | None) -> StaticHdr:
    """The stream's HDR10 static metadata: from the stream's side data, else from the first frame of ``path``
    (read in a separate pass; ``None`` for a pipe, which can be read only once)."""
    coded = stream.codec_context.coded_side_data or {}
    mastering = coded.get("mastering_display_metadata")
    light = coded.get("content_light_level")
    found = StaticHdr(parse_mastering_display(bytes(mastering)) if mastering else None,
                      parse_light_level(bytes(light)) if light else None)
    if found or path is None or stream.codec_context.color_trc not in HDR_TRANSFERS:
        return found  # (the first-frame pass is only worth it for PQ / HLG video)
    with contextlib.suppress(av.FFmpegError, OSError, StopIteration), av.open(str(path)) as container:
        frame = next(container.decode(container.streams[stream.index]))
        data = frame.side_data
        mastering_data = data.get(Type.MASTERING_DISPLAY_METADATA)
        light_data = data.get(Type.CONTENT_LIGHT_LEVEL)
        return StaticHdr(parse_mastering_display(bytes(mastering_data)) if mastering_data else None,
                         parse_light_level(bytes(light_data)) if light_data else None)
    return found


def _x265_master_display(m: MasteringDisplay) -> str:
    # x265 units: chromaticity in 0.00002 steps, luminance in 0.0001 cd/m²; order G, B, R, white point.
    def xy(point: tuple[Fraction, Fraction]) -> str:
        return f"({round(point[0] * 50000)},{round(point[1] * 50000)})"

    return (f"G{xy(m.green)}B{xy(m.blue)}R{xy(m.red)}WP{xy(m.white)}"
            f"L({round(m.max_luminance * 10000)},{round(m.min_luminance * 10000)})")


def _svt_master_display(m: MasteringDisplay) -> str:
    def xy(point: tuple[Fraction, Fraction]) -> str:
        return f"({float(point[0]):.5f},{float(point[1]):.5f})"

    return (f"G{xy(m.green)}B{xy(m.blue)}R{xy(m.red)}WP{xy(m.white)}"
            f"L({float(m.max_luminance):.4f},{float(m.min_luminance):.4f})")


def _append_params(options: dict[str, str], key: str, extra: list[str]) -> None:
    current = [part for part in options.get(key, "").split(":") if part]
    given = {part.split("=", 1)[0] for part in current}
    current += [part for part in extra if part.split("=", 1)[0] not in given]  # the user's own values win
    options[key] = ":".join(current)


def add_hdr_options(encoder: str, options: dict[str, str], hdr: StaticHdr, source: Path) -> None:
    """Put ``hdr`` into the encoder's options where it has a way to write them; else warn once."""
    if not hdr:
        return
    if encoder == "libx265":
        extra = ["hdr10=1"]
        if hdr.mastering:
            extra.append(f"master-display={_x265_master_display(hdr.mastering)}")
        if hdr.light:
            extra.append(f"max-cll={hdr.light.max_cll},{hdr.light.max_fall}")
        _append_params(options, "x265-params", extra)
    elif encoder == "libsvtav1":
        extra = []
        if hdr.mastering:
            extra.append(f"mastering-display={_svt_master_display(hdr.mastering)}")
        if hdr.light:
            extra.append(f"content-light={hdr.light.max_cll},{hdr.light.max_fall}")
        _append_params(options, "svtav1-params", extra)
    else:
        log.warning("%s: the HDR10 mastering display / content light level metadata is not carried: %s has no "
                    "way to write it; use --codec libx265 or libsvtav1 to keep it", source, encoder)


# Per-frame side data this tool cannot put on the frames it encodes, and how to name it.
UNCARRIED_FRAME_DATA = {
    Type.A53_CC: "closed captions (ATSC A/53, CEA-608/708)",
    Type.DYNAMIC_HDR_PLUS: "HDR10+ dynamic metadata",
    Type.DOVI_RPU_BUFFER: "Dolby Vision metadata",
    Type.DOVI_METADATA: "Dolby Vision metadata",
}


class FrameSideDataWatch:
    """Warns once per kind of per-frame side data that the output will not have."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.seen: set[str] = set()

    def check(self, frame: av.VideoFrame) -> None:
        if len(self.seen) == len(set(UNCARRIED_FRAME_DATA.values())):
            return
        for kind in frame.side_data:
            name = UNCARRIED_FRAME_DATA.get(kind)
            if name and name not in self.seen:
                self.seen.add(name)
                log.warning("%s: the video carries %s; they are not carried into the output", self.source, name)
