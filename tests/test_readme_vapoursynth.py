"""The README's VapourSynth example, exactly as written, in the environment the quick start creates.

``make`` installs the package in editable mode and links the native plugin into
the venv's VapourSynth plugin folder; this test takes the README's script and
its ``vspipe ... | ffmpeg ...`` line verbatim, runs them in a shell with the
venv's tools first on PATH and no ``VAPOURSYNTH_EXTRA_PLUGIN_PATH``, on a small
generated clip, and checks the file a user gets: the size, every frame, the
picture (not a blank or shifted one) and the BT.709 colour tags.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
WIDTH, HEIGHT, FRAMES = 64, 48, 5

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="Debian's ffmpeg/ffprobe are not installed (apt-get install ffmpeg)")


def readme_vapoursynth_example() -> tuple[str, str]:
    """The ``python`` and the ``sh`` block of the README's "VapourSynth" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## VapourSynth\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    script = next(body for language, body in blocks if language == "python")
    command = next(body for language, body in blocks if language == "sh")
    return script, command.strip()


def test_the_readme_documents_a_script_and_a_tagged_encode() -> None:
    script, command = readme_vapoursynth_example()
    assert "core.vapsr.Upscale(" in script and "LoadPlugin" not in script
    assert command.startswith("vspipe ") and "| ffmpeg " in command
    for tag in ("-colorspace bt709", "-color_primaries bt709", "-color_trc bt709"):
        assert tag in command


def mean_luma(path: Path) -> list[float]:
    """Each frame's mean Y, as a fraction of the format's peak."""
    means = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            deep = "10" in frame.format.name  # converted to gray16le, the 10-bit range stretched to 16 bits
            y = frame.to_ndarray(format="gray16le" if deep else "gray").astype(np.float64)
            means.append(float(y.mean()) / (65535.0 if deep else 255.0))
    return means


@pytest.mark.slow
def test_readme_vapoursynth_example_runs_as_written(tmp_path: Path) -> None:
    import vapoursynth as vs

    library = Path(vs.get_plugin_dir()) / "vapsr" / "libvapsr.so"
    assert library.exists(), f"{library} is missing: the quick start's `make setup` links the plugin there"
    script, command = readme_vapoursynth_example()
    source = tmp_path / "input.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate=25",
                    "-frames:v", str(FRAMES), "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv420p",
                    "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", str(source)],
                   check=True, timeout=120)
    (tmp_path / "upscale.vpy").write_text(script)
    env = {key: value for key, value in os.environ.items() if key != "VAPOURSYNTH_EXTRA_PLUGIN_PATH"}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = str(REPO)  # this checkout's package (the venv's editable install may be another's)
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    output = tmp_path / "output.mp4"
    probed = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_streams", "-of", "json",
         str(output)], capture_output=True, text=True, check=True, timeout=120).stdout)["streams"][0]
    assert (probed["width"], probed["height"]) == (2 * WIDTH, 2 * HEIGHT)
    assert int(probed["nb_read_frames"]) == FRAMES
    assert probed["pix_fmt"] == "yuv420p10le"
    # Without the tags a player guesses BT.601 at this size and shifts the colours.
    assert (probed.get("color_space"), probed.get("color_primaries"), probed.get("color_transfer")) == \
        ("bt709", "bt709", "bt709")
    # The same picture, upscaled: overall brightness frame by frame within 2 % of the source's.
    np.testing.assert_allclose(mean_luma(output), mean_luma(source), atol=0.02)
