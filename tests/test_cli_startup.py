"""What ``vapsr-video`` costs before it does anything: ``--version`` and ``--help`` start without torch."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "av", "numpy", "vapoursynth")


def modules_after(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the CLI's entry point in a fresh interpreter; its output and the modules it imported."""
    code = ("import sys\nfrom vapsr_video.cli.main import main\n"
            "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
            "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)\nsys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES "))
    return result, set(line.split()[1:])


def test_version_prints_the_package_version_without_importing_torch() -> None:
    result = subprocess.run([sys.executable, "-m", "vapsr_video", "--version"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout == "vapsr-video 0.1.0\n"
    result, modules = modules_after("--version")
    assert not modules & set(HEAVY)


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, vapsr_video; print('torch' in sys.modules); print(vapsr_video.Upscaler.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "Upscaler"]  # and still there on first use


def test_help_does_not_import_torch() -> None:
    result, modules = modules_after("--help")
    assert result.returncode == 0 and "usage: vapsr-video" in result.stdout
    assert "torch" not in modules
