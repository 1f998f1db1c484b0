"""After a real, non-editable ``pip install`` of the project's wheel, VapourSynth autoloads
the plugin: ``core.vapsr`` exists with no LoadPlugin call and no environment variable.

To stay fast the fresh virtual environment does not download torch again: it
gets its own copy of the installed ``vapoursynth`` distribution (VapourSynth
autoloads from the plugin folder next to its own library, so the wheel must land
beside that copy), and reaches the other dependencies through a ``.pth`` line
pointing at this environment's site-packages (where ``.pth`` files, such as the
editable install's, are not processed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import vapoursynth
from vapoursynth_support import REPO, save_tiny_weights

from vapsr_video.vapoursynth.plugin import LIBRARY_NAME

CHECK_AUTOLOAD = textwrap.dedent("""
    import sys
    import numpy as np
    import vapoursynth as vs
    import vapsr_video

    core = vs.core
    print("vapoursynth", vs.__file__)
    print("vapsr_video", vapsr_video.__file__)
    print("plugin", core.vapsr.plugin_path)
    clip = core.std.BlankClip(width=24, height=16, format=vs.RGBS, length=2, color=[0.2, 0.5, 0.8])
    out = core.vapsr.Upscale(clip, weights=sys.argv[1], device="cpu")
    frame = out.get_frame(1)
    print("frame", frame.width, frame.height, float(np.asarray(frame[0]).mean()))
""")


def _copy_distribution(site_packages: Path, target: Path, package: str) -> None:
    # Not its plugins folder: other plugins would come without their libraries, and `make setup`'s link to
    # the source tree's library would let the wheel's install write through it.
    shutil.copytree(Path(vapoursynth.__file__).parent, target / package, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "plugins"))
    for info in site_packages.glob(f"{package}-*.dist-info"):
        shutil.copytree(info, target / info.name)


@pytest.mark.slow
def test_wheel_install_makes_core_vapsr_exist_without_loadplugin(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(wheels), str(REPO)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("vapsr_video-*.whl")

    venv = tmp_path / "fresh-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    fresh_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True, check=True).stdout.strip())
    our_site = Path(sysconfig.get_paths()["purelib"])
    _copy_distribution(our_site, fresh_site, "vapoursynth")
    (fresh_site / "zz_project_dependencies.pth").write_text(f"{our_site}\n")

    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                                "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    library = fresh_site / "vapoursynth" / "plugins" / "vapsr" / LIBRARY_NAME
    assert library.is_file()

    weights = save_tiny_weights(tmp_path / "tiny.safetensors")
    env = {key: value for key, value in os.environ.items()
           if key not in ("VAPOURSYNTH_EXTRA_PLUGIN_PATH", "PYTHONPATH", "PYTHONHOME")}
    checked = subprocess.run([str(python), "-c", CHECK_AUTOLOAD, str(weights)], capture_output=True, text=True,
                             cwd=tmp_path, env=env, timeout=300)
    assert checked.returncode == 0, checked.stderr
    report = dict(line.split(" ", 1) for line in checked.stdout.splitlines())
    assert Path(report["vapoursynth"]).is_relative_to(fresh_site)
    assert Path(report["vapsr_video"]).is_relative_to(fresh_site)  # the wheel's copy, not the source tree
    assert Path(report["plugin"]).resolve() == library.resolve()
    width, height, mean = report["frame"].split()
    assert (width, height) == ("48", "32") and 0.0 <= float(mean) <= 1.0
