"""Small test clips made with Debian's ``ffmpeg`` (lavfi sources), and ``ffprobe`` readers.

The clips are tiny (64x48-ish, about 12 frames) so that a whole upscale runs in
well under a second with the small random model; Debian's ffmpeg is a separate
client from the PyAV build the project uses, so it also checks our outputs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from vapsr_video.model.vapsr import ModelConfig, VapSR

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None or FFPROBE is None,
                                  reason="Debian's ffmpeg/ffprobe are not installed (apt-get install ffmpeg)")



def default_sigint() -> None:
    """``preexec_fn`` for a child that the test will Ctrl-C: a shell that runs the suite
    in the background starts it with SIGINT ignored, and Python then never raises
    KeyboardInterrupt, so restore the default before the child's Python starts."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)

def ffmpeg(*args: str | Path) -> None:
    command = [FFMPEG or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise AssertionError(f"ffmpeg failed: {' '.join(command)}\n{result.stderr}")


def ffprobe_json(path: Path, *args: str) -> dict:
    command = [FFPROBE or "ffprobe", "-v", "error", "-of", "json", *args, str(path)]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def streams(path: Path) -> list[dict]:
    return ffprobe_json(path, "-show_streams")["streams"]


def format_info(path: Path) -> dict:
    return ffprobe_json(path, "-show_format")["format"]


def chapters(path: Path) -> list[dict]:
    return ffprobe_json(path, "-show_chapters")["chapters"]


def frame_times(path: Path, stream: str = "v:0") -> list[str]:
    """Each decoded frame's presentation time in seconds, as ffprobe prints it."""
    data = ffprobe_json(path, "-select_streams", stream, "-show_entries", "frame=pts_time")
    return [frame["pts_time"] for frame in data["frames"]]


def frame_side_data(path: Path) -> list[dict]:
    data = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "stream_side_data")
    return data["streams"][0].get("side_data_list", [])


def stream_md5(path: Path, selector: str) -> str:
    """MD5 of the packets of one stream, copied as they are (so bit-identity is checked)."""
    result = subprocess.run(
        [FFMPEG or "ffmpeg", "-v", "error", "-i", str(path), "-map", selector, "-c", "copy", "-f", "md5", "-"],
        capture_output=True, text=True, check=True)
    return result.stdout.strip()


def rgb_frames(path: Path, width: int | None = None, height: int | None = None) -> np.ndarray:
    """All frames of the first video stream as float RGB (N, H, W, 3), optionally resized (area)."""
    info = next(s for s in streams(path) if s["codec_type"] == "video")
    width = width or info["width"]
    height = height or info["height"]
    # -noautorotate: compare the stored pixels, not the displayed orientation
    command = [FFMPEG or "ffmpeg", "-v", "error", "-noautorotate", "-i", str(path), "-map", "0:v:0",
               "-vf", f"scale={width}:{height}:flags=area+full_chroma_int+accurate_rnd",
               "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb48le", "-"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, dtype="<u2").reshape(-1, height, width, 3)
    return frames.astype(np.float32) / 65535.0


FRAMES = 12
# Smooth moving colour waves (deterministic, unlike lavfi's "gradients"): chroma detail that a 4:2:0
# round trip keeps, so colour errors stand out against codec losses.
SOURCE = ("color=black:size={size}:rate={rate},format=rgb24,"
          "geq=r='128+90*sin(X/20+T*3)':g='128+90*cos(Y/15-T*2)':b='128+90*sin((X+Y)/25+T)'")
AUDIO = "sine=frequency={freq}:sample_rate=48000:duration=1"


def video_source(size: str = "64x48", rate: int = 25) -> list[str]:
    return ["-f", "lavfi", "-i", SOURCE.format(size=size, rate=rate)]


def audio_source(freq: int = 440) -> list[str]:
    return ["-f", "lavfi", "-i", AUDIO.format(freq=freq)]


def make_vfr_h264_aac_mp4(path: Path) -> Path:
    """VFR H.264 + AAC in MP4; the first video timestamp is 0.5 s, frame gaps vary."""
    ffmpeg(*video_source(), *audio_source(),
           "-vf", f"trim=end_frame={FRAMES},setpts='(N*0.04+if(gt(N,5),0.03*N,0)+0.5)/TB'",
           "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", path)
    return path


def make_mkv_with_extras(path: Path) -> Path:
    """MKV: H.264, two audio tracks (AAC eng, FLAC fre), SRT subtitles, two chapters, a title, a font attachment."""
    folder = path.parent
    subtitles = folder / "subs.srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:00,200\nHello\n\n2\n00:00:00,250 --> 00:00:00,400\nWorld\n\n")
    chapter_file = folder / "chapters.txt"
    chapter_file.write_text(";FFMETADATA1\ntitle=A tiny film\n"
                            "[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=200\ntitle=Opening\n"
                            "[CHAPTER]\nTIMEBASE=1/1000\nSTART=200\nEND=480\ntitle=Ending\n")
    font = folder / "font.ttf"
    font.write_bytes(b"\x00\x01\x00\x00 not really a font " * 8)
    ffmpeg(*video_source(), *audio_source(440), *audio_source(880), "-i", subtitles, "-i", chapter_file,
           "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s", "-map_metadata", "4", "-map_chapters", "4",
           "-vf", f"trim=end_frame={FRAMES}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-c:a:0", "aac", "-c:a:1", "flac", "-c:s", "srt",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fre",
           "-metadata:s:s:0", "language=eng", "-metadata:s:s:0", "title=English subtitles",
           "-attach", font, "-metadata:s:t", "mimetype=application/x-truetype-font", path)
    return path


def make_hevc_10bit_pq(path: Path) -> Path:
    """10-bit HEVC tagged BT.2020 / PQ (SMPTE 2084), limited range."""
    ffmpeg(*video_source(), "-vf", f"trim=end_frame={FRAMES}", "-c:v", "libx265", "-pix_fmt", "yuv420p10le",
           "-x265-params", "log-level=error", "-color_primaries", "bt2020", "-color_trc", "smpte2084",
           "-colorspace", "bt2020nc", "-color_range", "tv", path)
    return path


def make_odd_444(path: Path) -> Path:
    """Odd frame size (63x47) in 4:4:4, stored losslessly in FFV1/MKV."""
    ffmpeg(*video_source(), "-vf", f"trim=end_frame={FRAMES},scale=63:47", "-c:v", "ffv1", "-pix_fmt", "yuv444p",
           path)
    return path


def make_full_range_709(path: Path) -> Path:
    """Full-range BT.709 H.264 (as cameras and screen recorders write it), anamorphic (SAR 4:3)."""
    ffmpeg(*video_source(), "-vf", f"trim=end_frame={FRAMES},scale=out_color_matrix=bt709:out_range=full,setsar=4/3",
           "-c:v", "libx264", "-pix_fmt", "yuvj420p", "-color_range", "pc", "-colorspace", "bt709",
           "-color_primaries", "bt709", "-color_trc", "bt709", path)
    return path


def make_rotated_phone_clip(path: Path) -> Path:
    """A portrait phone recording: landscape pixels with a 90° display matrix, AAC audio, MOV-style MP4."""
    plain = path.with_name("unrotated.mp4")
    ffmpeg(*video_source(), *audio_source(), "-vf", f"trim=end_frame={FRAMES}",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", plain)
    ffmpeg("-i", plain, "-map", "0", "-c", "copy", "-metadata:s:v:0", "rotate=90", path)
    plain.unlink()
    return path


def make_prores_pcm_mov(path: Path) -> Path:
    """ProRes 422 (10-bit) with 16-bit PCM audio and a timecode track in MOV, as cameras write it."""
    ffmpeg(*video_source(), *audio_source(), "-vf", f"trim=end_frame={FRAMES}",
           "-c:v", "prores_ks", "-profile:v", "0", "-pix_fmt", "yuv422p10le", "-c:a", "pcm_s16le",
           "-timecode", "01:02:03:04", path)
    return path


def make_bayer_nut(path: Path) -> Path:
    """Raw Bayer-mosaic frames (a camera sensor dump): a pixel format this tool does not handle."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "bayer_rggb8"
        for index in range(3):
            frame = av.VideoFrame(64, 48, "bayer_rggb8")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def corrupt_one_packet(source: Path, target: Path, index: int = 5, *, reject: bool = False) -> Path:
    """Copy ``source``'s video packets into an MKV, with packet ``index`` damaged: its last two thirds
    replaced by noise (decoders conceal that), or with ``reject`` a NAL length past the packet's end
    (an H.264 decoder refuses the packet)."""
    import av

    rng = np.random.default_rng(1)
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        video = reader.streams.video[0]
        output = writer.add_stream_from_template(video)
        count = 0
        for packet in reader.demux(video):
            if packet.size == 0:
                continue
            if count == index:
                data = bytearray(bytes(packet))
                cut = len(data) // 3
                data[cut:] = rng.integers(0, 256, len(data) - cut, dtype=np.uint8).tobytes()
                if reject:
                    data[:4] = b"\x7f\xff\xff\xff"
                damaged = av.Packet(bytes(data))
                damaged.pts, damaged.dts, damaged.duration = packet.pts, packet.dts, packet.duration
                damaged.time_base, damaged.is_keyframe = packet.time_base, packet.is_keyframe
                packet = damaged
            packet.stream = output
            writer.mux(packet)
            count += 1
    return target


def nearest_neighbour_vapsr(scale: int = 2) -> VapSR:
    """A VapSR whose weights make it plain pixel replication: a deterministic upscaler whose output,
    area-scaled back down, is its input again (so content checks do not depend on training)."""
    if scale not in (2, 3):
        raise ValueError("the x4 upsampler has a different layout")
    model = VapSR(ModelConfig(scale=scale, num_feat=8, num_blocks=1))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        expand, project = model.upsampler[0], model.upsampler[2]
        for channel in range(3):
            model.conv_first.weight[channel, channel, 1, 1] = 1.0
            expand.weight[channel, channel, 1, 1] = 1.0
            for sub_pixel in range(scale * scale):
                project.weight[channel * scale * scale + sub_pixel, channel, 1, 1] = 1.0
    return model.eval()
