"""Build hook for the native VapourSynth shim (see plugins/vapoursynth/).

The shim is compiled as an extension whose dotted name puts it at
``<site-packages>/vapoursynth/plugins/vapsr/libvapsr.so``, the folder VapourSynth
autoloads plugins from, so a plain ``pip install`` makes ``core.vapsr`` exist.
It is a VapourSynth plugin, not a Python module: it gets a plain library name
and is not linked to libpython (its Python symbols resolve in the host process).

An editable install (and ``python setup.py build_ext --inplace``) leaves the
library at ``plugins/vapoursynth/libvapsr.so`` instead, which is where
``vapsr_video.vapoursynth.plugin_path()`` finds it in a source checkout.
"""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PLUGIN = "vapoursynth.plugins.vapsr.libvapsr"
SOURCE_DIR = "plugins/vapoursynth"
LIBRARY_SUFFIX = {"win32": ".dll", "darwin": ".dylib"}.get(sys.platform, ".so")


def vapoursynth_include_dir() -> str:
    try:
        import vapoursynth
    except ImportError as exc:  # pragma: no cover - pyproject's build requirements install it
        raise SystemExit(f"building the VapourSynth plugin needs the vapoursynth package ({exc})") from None
    return vapoursynth.get_include()


class BuildVapourSynthPlugin(build_ext):
    """build_ext that names and links the shim as a VapourSynth plugin."""

    def get_ext_filename(self, fullname: str) -> str:
        # Called with the full dotted name and, by distutils, with the last part alone.
        if fullname in (PLUGIN, PLUGIN.rsplit(".", 1)[1]):
            return fullname.replace(".", "/") + LIBRARY_SUFFIX
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext: Extension) -> list[str]:
        # No PyInit_ function: VapourSynth looks for VapourSynthPluginInit2.
        return ext.export_symbols if ext.name == PLUGIN else super().get_export_symbols(ext)

    def get_libraries(self, ext: Extension) -> list[str]:
        # Never link libpython (Windows builds would otherwise add pythonXY.lib).
        return ext.libraries if ext.name == PLUGIN else super().get_libraries(ext)


plugin = Extension(
    PLUGIN,
    sources=[f"{SOURCE_DIR}/vapsr_plugin.c"],
    include_dirs=[vapoursynth_include_dir()],
    extra_compile_args=[] if sys.platform == "win32" else ["-std=c11", "-fvisibility=hidden"],
    libraries=[] if sys.platform == "win32" else ["dl", "pthread"],
    export_symbols=["VapourSynthPluginInit2"],
)

setup(
    ext_modules=[plugin],
    cmdclass={"build_ext": BuildVapourSynthPlugin},
    # Only consulted for in-place builds: the plugin's "package" is this folder.
    package_dir={"vapoursynth.plugins.vapsr": SOURCE_DIR},
)
