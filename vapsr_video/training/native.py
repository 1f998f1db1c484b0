"""The C kernel for depthwise weight gradients, compiled on first use and cached.

It is a plain C file with no Python or PyTorch headers, so compiling takes well
under a second; it is built for this CPU (``-march=native``) and cached under a
name that includes the source, the flags and the CPU's feature flags. Without a
C compiler training still works, with PyTorch's slower backward.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from vapsr_video.user_cache import cache_dir

log = logging.getLogger("vapsr_video.train")

SOURCE = Path(__file__).with_name("depthwise_grad.c")
FLAGS = ("-O3", "-march=native", "-std=c11", "-ffp-contract=fast", "-shared", "-fPIC", "-pthread")


def _cpu_features() -> str:
    # -march=native output runs only on CPUs with the same features: key the cache on them.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _library_path(compiler: str) -> Path:
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), compiler.encode(), " ".join(FLAGS).encode(),
                                     platform.machine().encode(), _cpu_features().encode()])).hexdigest()[:16]
    return cache_dir() / "kernels" / f"depthwise_grad-{key}.so"


def find_compiler() -> str | None:
    """``$CC``, else the system's ``cc``, ``gcc`` or ``clang``."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def compile_kernel(compiler: str, target: Path, extra_flags: tuple[str, ...] = ()) -> None:
    """Build ``depthwise_grad.c`` into ``target`` (``extra_flags`` such as ``-DLANES=16`` for benchmarks)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile beside the target and rename: concurrent trainers never load a half-written library.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        subprocess.run([compiler, *FLAGS, *extra_flags, str(SOURCE), "-o", str(built)], check=True,
                       capture_output=True, text=True, timeout=120)
        os.replace(built, target)


def load_kernel(path: Path) -> ctypes.CDLL:
    """Load a built kernel with its function's C signature declared."""
    library = ctypes.CDLL(str(path))
    function = library.vapsr_depthwise_grad_weight
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 8
    return library


@cache
def depthwise_kernel() -> ctypes.CDLL | None:
    """The compiled kernel, or ``None`` (logged once) when it cannot be built or loaded."""
    compiler = find_compiler()
    if compiler is None:
        log.warning("no C compiler found: training uses PyTorch's slower depthwise backward")
        return None
    path = _library_path(compiler)
    try:
        if not path.is_file():
            compile_kernel(compiler, path)
        return load_kernel(path)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        log.warning("could not build the depthwise kernel (%s): training uses PyTorch's slower backward",
                    str(detail).strip().splitlines()[-1] if str(detail).strip() else type(exc).__name__)
        return None
