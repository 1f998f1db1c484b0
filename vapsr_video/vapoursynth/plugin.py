"""Where the native plugin library is, and loading it where autoload does not reach.

``pip install vapsr-video`` puts the library in ``vapoursynth/plugins/vapsr/``
next to the installed ``vapoursynth`` package, which VapourSynth autoloads. A
source checkout (editable install, ``python setup.py build_ext --inplace``)
has it in ``plugins/vapoursynth/`` instead: point
``VAPOURSYNTH_EXTRA_PLUGIN_PATH`` at that folder, or call :func:`load_plugin`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vapsr_video.errors import VapsrError

NAMESPACE = "vapsr"
LIBRARY_NAME = "libvapsr" + {"win32": ".dll", "darwin": ".dylib"}.get(sys.platform, ".so")
SOURCE_TREE_DIR = Path(__file__).resolve().parents[2] / "plugins" / "vapoursynth"


class PluginNotFoundError(VapsrError):
    """The native plugin library was not built or installed."""


def _installed_candidates() -> list[Path]:
    import vapoursynth

    dirs = [Path(vapoursynth.get_plugin_dir())]
    dirs += [Path(entry) / "vapoursynth" / "plugins" for entry in sys.path if entry]
    return [d / NAMESPACE / LIBRARY_NAME for d in dirs]


def plugin_path() -> Path:
    """The plugin library: the installed one if any, else the one built in a source checkout."""
    for candidate in [*_installed_candidates(), SOURCE_TREE_DIR / LIBRARY_NAME]:
        if candidate.is_file():
            return candidate
    raise PluginNotFoundError(
        f"{LIBRARY_NAME}: the native vapsr plugin is not built; install the package with pip "
        "(it compiles the plugin, which needs a C compiler), or in a source checkout run "
        "'python setup.py build_ext --inplace'; vapsr_video.vapoursynth.upscale() works without it"
    )


def load_plugin(core: object | None = None) -> None:
    """Make ``core.vapsr`` exist (no-op when autoload already found the plugin)."""
    if core is None:
        import vapoursynth

        core = vapoursynth.core
    if hasattr(core, NAMESPACE):
        return
    core.std.LoadPlugin(str(plugin_path()))  # type: ignore[attr-defined]
