"""``vapsr-video``: the command-line front end.

``vapsr-video IN OUT [options]`` upscales a video or an image; the subcommands
``eval``, ``batch`` and ``train`` live in their own modules and are imported
only when used, so a plain upscale starts fast; ``--version`` imports nothing
else at all.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from vapsr_video.errors import ExitCode, VapsrError

SUBCOMMANDS: dict[str, str] = {
    "eval": "vapsr_video.cli.evaluate",
    "batch": "vapsr_video.cli.batch",
    "train": "vapsr_video.cli.train",
    "weights": "vapsr_video.cli.weights",
    "export": "vapsr_video.cli.export",
}
PROG = "vapsr-video"


def report_error(message: str) -> None:
    """One line on stderr, the way every front end reports a user-facing error."""
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def run_guarded(command: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    """Run ``command``, turning expected failures into a message and an exit code."""
    try:
        return command(argv)
    except VapsrError as exc:
        report_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        report_error("interrupted")
        return ExitCode.INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        from vapsr_video import __version__

        print(f"{PROG} {__version__}")
        return ExitCode.OK
    if args and args[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[args[0]])
        return run_guarded(module.main, args[1:])
    from vapsr_video.cli import upscale

    return run_guarded(upscale.main, args)


if __name__ == "__main__":
    sys.exit(main())
