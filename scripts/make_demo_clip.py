#!/usr/bin/env python3
"""Write a short synthetic test clip with audio (default: 2 s, 320x180, 25 fps, H.264 + AAC).

Used by ``make demo``; needs only PyAV (no ffmpeg binary). The picture has smooth
colour gradients, fine stripes and sharp-edged shapes moving over time, which is
what makes an upscaler's work visible; the audio is a two-tone chime.

    python scripts/make_demo_clip.py demo/input.mp4 [--seconds 2] [--size 320x180] [--fps 25]
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def picture(index: int, width: int, height: int, fps: int) -> np.ndarray:
    """One RGB frame (H x W x 3, uint8)."""
    t = index / fps
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 0.5 + 0.5 * np.sin(x / width * 6.28 + t)
    green = 0.5 + 0.5 * np.sin(y / height * 6.28 - 0.7 * t)
    blue = 0.5 + 0.5 * np.cos((x + y) / (width + height) * 6.28 + 1.3 * t)
    image = np.stack([red, green, blue], axis=-1)
    stripes = (np.sin(x * 0.9 + 4 * t) > 0) & (y > height * 0.7)  # fine detail at the bottom
    image[stripes] *= 0.35
    centre_x = width * (0.5 + 0.3 * np.sin(t * 1.5))
    disc = (x - centre_x) ** 2 + (y - height * 0.35) ** 2 < (height * 0.18) ** 2
    image[disc] = (0.95, 0.95, 0.9)
    square = (np.abs(x - width * 0.2) < height * 0.1) & (np.abs(y - height * (0.3 + 0.1 * np.cos(t))) < height * 0.1)
    image[square] = (0.1, 0.1, 0.15)
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def chime(seconds: float, rate: int) -> np.ndarray:
    """Stereo float samples (2 x N) of two soft tones."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.exp(-3 * (t % 1.0))
    tone = 0.2 * envelope * (np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 660 * t))
    return np.stack([tone, tone]).astype(np.float32)


def write_clip(path: Path, seconds: float, width: int, height: int, fps: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = round(seconds * fps)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.options = {"crf": "18", "preset": "fast"}
        video.codec_context.colorspace = 1  # BT.709, as the conversion below uses
        video.codec_context.color_range = 1
        audio = container.add_stream("aac", rate=48000, layout="stereo")
        samples = chime(seconds, 48000)
        step = 1024
        for start in range(0, samples.shape[1], step):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + step]),
                                               format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts, chunk.time_base = 48000, start, Fraction(1, 48000)
            container.mux(audio.encode(chunk))
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(picture(index, width, height, fps), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--size", default="320x180", help="WIDTHxHEIGHT (even numbers)")
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args(argv)
    width, height = (int(part) for part in args.size.lower().split("x"))
    write_clip(args.output, args.seconds, width, height, args.fps)
    print(f"wrote {args.output} ({args.seconds:g} s, {width}x{height}, {args.fps} fps, H.264 + AAC)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
