"""What an output container can hold, where FFmpeg's own answer is wrong or missing.

PyAV's ``supported_codecs`` asks libavformat, which answers from the muxer's codec
tag table. The MPEG-TS muxer has no such table (streams are typed in the PMT), so
FFmpeg reports only its default codecs (MPEG-2 video, MP2 audio) and would refuse
H.264 in a ``.ts`` file. For such muxers the list below is the codecs their writer
accepts (libavformat's ``mpegtsenc.c`` stream types); ``.ts``, ``.m2ts`` and ``.mts``
all open that muxer.
"""

from __future__ import annotations

import av

# Muxer name -> codec id names (as ``av.codec.Codec.canonical_name`` spells them) it writes.
MUXER_CODECS: dict[str, frozenset[str]] = {
    "mpegts": frozenset({
        # video
        "h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4", "vvc", "cavs", "dirac", "vc1",
        # audio
        "mp2", "mp3", "aac", "aac_latm", "ac3", "eac3", "dts", "truehd", "opus", "s302m",
        # subtitles and data
        "dvb_subtitle", "dvb_teletext", "arib_caption", "smpte_klv", "timed_id3",
    }),
}


def container_holds(container: av.container.OutputContainer, codec_name: str) -> bool:
    """Whether ``container`` can store a stream of ``codec_name`` (a codec id or a coder's name)."""
    known = MUXER_CODECS.get(container.format.name)
    if known is not None:
        return codec_name in known or codec_id_name(codec_name) in known
    supported = container.supported_codecs
    return codec_name in supported or codec_id_name(codec_name) in supported


def codec_id_name(name: str) -> str:
    """The codec a decoder or encoder name stands for: ``libdav1d`` -> ``av1``, ``h264_cuvid`` -> ``h264``.

    PyAV may pick any decoder FFmpeg offers for a stream (dav1d or libaom for AV1, a hardware
    variant, ...); the rule "codec follows the input" is about the format, not about that choice.
    A name FFmpeg does not know is returned as it is.
    """
    for mode in ("r", "w"):
        try:
            return av.codec.Codec(name, mode).canonical_name
        except (ValueError, av.FFmpegError):
            continue
    return name


def keep_stream_id(source: av.stream.Stream, target: av.stream.Stream) -> None:
    """Give ``target`` the stream id (the PID in MPEG-TS) of ``source`` when both files use ids that way.

    Broadcast and camera workflows address streams by PID; FFmpeg would otherwise number them from 0x100.
    """
    both = {source.container.format.name, target.container.format.name}
    if both == {"mpegts"} and 0x10 <= source.id < 0x1FFF:
        target.id = source.id
