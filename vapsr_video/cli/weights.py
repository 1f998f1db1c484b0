"""``vapsr-video weights list|fetch``: the models vapsr-video knows, and the authors' checkpoints one command away."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from vapsr_video.errors import UsageError
from vapsr_video.model.catalog import (
    AUTHORS_COMMIT,
    AUTHORS_MODELS,
    AUTHORS_REPOSITORY,
    KNOWN_MODELS,
    KnownModel,
    cache_state,
    find_model,
    model_path,
)
from vapsr_video.user_cache import CACHE_DIR_ENV, cache_dir

SETS = ("Set5", "Set14", "B100")
STATE_LABELS = {"bundled": "bundled", "cached": "cached", "missing": "not fetched", "corrupt": "corrupt: re-fetch"}
LICENCE_NOTE = (
    f"note: the VapSR authors' checkpoints carry no licence; vapsr-video does not redistribute them but "
    f"downloads them for you from the authors' own repository ({AUTHORS_REPOSITORY} on GitHub, commit "
    f"{AUTHORS_COMMIT[:12]}): you take them from the authors, on whatever terms they set."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vapsr-video weights",
        description="Models vapsr-video knows by name: the bundled ones and the VapSR authors' four checkpoints. "
                    "A name works wherever a weights file does (--weights VapSR_X2, weights=\"VapSR_X2\").",
        epilog=f"Cache: ${CACHE_DIR_ENV}, else $XDG_CACHE_HOME/vapsr-video, else ~/.cache/vapsr-video. "
               "Mirror: $VAPSR_VIDEO_WEIGHTS_URL (a folder URL holding the files). "
               "Default model when no --weights is given: $VAPSR_VIDEO_WEIGHTS (a name or a file).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,fetch}")
    commands.add_parser("list", help="every known model: where it comes from, whether it is here, its quality, "
                                     "its licence")
    fetch = commands.add_parser("fetch", help="download the authors' checkpoints into the cache (pinned, verified)")
    fetch.add_argument("names", nargs="*", metavar="NAME",
                       help=f"default: all of {', '.join(m.name for m in AUTHORS_MODELS)}")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _quality(model: KnownModel) -> dict[str, tuple[float, float]]:
    """The authors' numbers from the catalog; a bundled model's from its file's metadata."""
    if not model.bundled:
        return model.quality
    from vapsr_video.model.validation import read_safetensors_header

    path = model_path(model)
    try:
        metadata = read_safetensors_header(path, path.stat().st_size).metadata
    except (OSError, ValueError):
        return {}
    quality = {}
    for name in SETS:
        psnr, ssim = metadata.get(f"{name.lower()}_psnr"), metadata.get(f"{name.lower()}_ssim")
        if psnr and ssim:
            quality[name] = (float(psnr), float(ssim))
    return quality


def list_models() -> int:
    header = ("NAME", "FROM", "MODEL", "HERE", *(f"{name} PSNR/SSIM" for name in SETS), "LICENCE")
    rows = [header]
    for model in KNOWN_MODELS:
        quality = _quality(model)
        scores = [f"{quality[name][0]:.2f} / {quality[name][1]:.4f}" if name in quality else "-" for name in SETS]
        rows.append((model.name, "bundled" if model.bundled else "authors", f"{model.variant} x{model.scale}",
                     STATE_LABELS[cache_state(model)], *scores, model.licence))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"\ncache: {cache_dir() / 'weights'}")
    default = os.environ.get("VAPSR_VIDEO_WEIGHTS")
    print(f"default without --weights: {default + ' (VAPSR_VIDEO_WEIGHTS)' if default else 'the bundled model'}")
    print("quality: PSNR dB / SSIM on the Y channel, MATLAB-bicubic LR, border = scale (see the README's Quality)")
    return 0


def _models_to_fetch(names: Sequence[str]) -> list[KnownModel]:
    if not names:
        return list(AUTHORS_MODELS)
    models = []
    for name in names:
        model = find_model(name)
        if model is None:
            known = ", ".join(m.name for m in KNOWN_MODELS)
            raise UsageError(f"{name}: not a known model (known: {known})")
        models.append(model)
    return models


def fetch_models(names: Sequence[str], quiet: bool) -> int:
    from vapsr_video.model.download import fetch_model

    told_licence = False
    for model in _models_to_fetch(names):
        if model.bundled:
            print(f"{model.name}: bundled with vapsr-video, nothing to fetch")
            continue
        with _ProgressBar(model, quiet) as bar:
            path, downloaded = fetch_model(model, progress=bar.update)
        print(f"{model.name}: {'downloaded and verified' if downloaded else 'already cached'}: {path}")
        if downloaded and not told_licence:  # after the download, so a failure stays one line
            print(LICENCE_NOTE, file=sys.stderr)
            told_licence = True
    return 0


class _ProgressBar:
    """A tqdm byte counter that appears with the first bytes, so a refused connection prints alone."""

    def __init__(self, model: KnownModel, quiet: bool) -> None:
        self.model, self.quiet, self.bar = model, quiet, None

    def update(self, size: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            # disable=None: no bar when stderr is not a terminal (cron, logs), as with curl.
            self.bar = tqdm(total=self.model.size, unit="B", unit_scale=True, unit_divisor=1024, disable=None,
                            desc=self.model.file_name, file=sys.stderr, leave=False, dynamic_ncols=True)
        self.bar.update(size)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return list_models()
    return fetch_models(args.names, args.quiet)
