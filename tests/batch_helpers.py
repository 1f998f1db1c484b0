"""Trees of tiny clips and checks for the batch tests (``vapsr-video batch``).

Clips are 64x48 at 10 frames/s, 1-3 s, made with Debian's ffmpeg; outputs are
checked with ffprobe/ffmpeg, a client independent of the PyAV build we write with.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from video_helpers import FFMPEG, default_sigint, ffmpeg, ffprobe_json

from vapsr_video.model.vapsr import ModelConfig, VapSR
from vapsr_video.model.weights import save_weights

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE = ".vapsr-batch"


def save_tiny_weights(path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    save_weights(VapSR(ModelConfig(scale=2, num_feat=8, num_blocks=1)), path)
    return path


def make_clip(path: Path, *, seconds: float = 1.0, gop: int = 10, audio: bool = True, extra: tuple = ()) -> Path:
    """H.264 (+ AAC) at 10 frames/s, a keyframe every ``gop`` frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = ["-f", "lavfi", "-i", f"testsrc2=size=64x48:rate=10:duration={seconds}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}"]
    codecs = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop),
              "-sc_threshold", "0"]
    if audio:
        codecs += ["-c:a", "aac", "-b:a", "32k"]
    ffmpeg(*inputs, *codecs, *extra, path)
    return path


def make_long_clip_with_extras(path: Path, seconds: float = 3.0) -> Path:
    """MKV: H.264 with a keyframe every 0.5 s, AAC (eng, titled), SRT subtitles, two chapters, a title."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    subtitles = folder / "long.srt"
    subtitles.write_text("1\n00:00:00,000 --> 00:00:01,000\nHello\n\n2\n00:00:01,500 --> 00:00:02,500\nWorld\n\n")
    meta = folder / "long.meta"
    meta.write_text(";FFMETADATA1\ntitle=A long film\n"
                    "[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1500\ntitle=Opening\n"
                    f"[CHAPTER]\nTIMEBASE=1/1000\nSTART=1500\nEND={int(seconds * 1000)}\ntitle=Ending\n")
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=64x48:rate=10:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=16000:duration={seconds}",
           "-i", subtitles, "-i", meta, "-map", "0:v", "-map", "1:a", "-map", "2:s",
           "-map_metadata", "3", "-map_chapters", "3",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5", "-keyint_min", "5", "-sc_threshold", "0",
           "-c:a", "aac", "-b:a", "32k", "-c:s", "srt",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=Commentary", path)
    subtitles.unlink()
    meta.unlink()
    return path


def make_archive(src: Path) -> dict[str, list[str]]:
    """A tree like a real archive: nested folders, spaces and non-ASCII names, and bad files.

    Returns the relative paths of the good clips, the ones that must fail and the ones to skip.
    """
    good = ["a clip.mp4", "nested/deeper/ünïcode ✓.mkv", "nested/disguised.bin"]
    make_clip(src / good[0])
    make_clip(src / good[1], audio=False)
    make_clip(src / good[2], seconds=1.5, extra=("-f", "mp4"))
    (src / "corrupt.mp4").write_bytes(os.urandom(4000))
    (src / "nested" / "empty.mp4").write_bytes(b"")
    whole = (src / good[0]).read_bytes()
    (src / "nested" / "truncated.mov").write_bytes(whole[: len(whole) // 3])
    (src / "notes.txt").write_text("not a video\n")
    return {"good": good, "failed": ["corrupt.mp4", "nested/empty.mp4", "nested/truncated.mov"],
            "skipped": ["notes.txt"]}


def output_for(dst: Path, rel_path: str) -> Path:
    if rel_path.endswith(".bin"):
        return dst / (rel_path + ".mkv")
    return dst / rel_path


def batch_command(src: Path, dst: Path, weights: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vapsr_video", "batch", str(src), str(dst), "--weights", str(weights),
            "--quiet", *extra]


def run_batch(src: Path, dst: Path, weights: Path, *extra: str, timeout: float = 300
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batch_command(src, dst, weights, *extra), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def start_batch(src: Path, dst: Path, weights: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(batch_command(src, dst, weights, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, preexec_fn=default_sigint)


def kill_hard(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)


def db_rows(dst: Path, query: str, args: tuple = ()) -> list[tuple]:
    path = dst / STATE / "jobs.sqlite"
    if not path.exists():
        return []
    for _ in range(50):
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
                return db.execute(query, args).fetchall()
        except sqlite3.OperationalError:
            time.sleep(0.1)  # the schema may be half-created at the very start
    return []


def wait_for(condition, timeout: float = 120, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def frame_count(path: Path) -> int:
    data = ffprobe_json(path, "-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets")
    return int(data["streams"][0]["nb_read_packets"])


def video_size(path: Path) -> tuple[int, int]:
    data = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "stream=width,height")
    stream = data["streams"][0]
    return stream["width"], stream["height"]


def decodes_cleanly(path: Path) -> bool:
    result = subprocess.run([FFMPEG or "ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                            capture_output=True, text=True)
    return result.returncode == 0 and not result.stderr.strip()


def frame_md5s(path: Path) -> list[str]:
    """MD5 of each decoded video frame (ffmpeg's framemd5)."""
    result = subprocess.run([FFMPEG or "ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0",
                             "-f", "framemd5", "-"], capture_output=True, text=True, check=True)
    return [line.rsplit(",", 1)[-1].strip() for line in result.stdout.splitlines() if not line.startswith("#")]


def leftovers(dst: Path) -> list[Path]:
    """Temporary or partial files anywhere under DST (the state folder's own files excepted)."""
    found = [path for path in dst.rglob("*") if ".vapsr-partial" in path.name or path.suffix == ".tmp"]
    work = dst / STATE / "work"
    if work.exists():
        found.append(work)
    return found


def report(dst: Path) -> dict:
    return json.loads((dst / STATE / "last-report.json").read_text())
