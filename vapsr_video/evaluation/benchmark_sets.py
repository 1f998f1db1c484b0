"""Finding the ground-truth images of the standard SR benchmark sets on disk.

A data folder holds one folder per set, with the HR images either in ``HR/``
(the layout of ``../shared/data/benchmarks``) or directly inside.
"""

from __future__ import annotations

from pathlib import Path

from vapsr_video.errors import InputError

STANDARD_SETS = ("Set5", "Set14", "B100")
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
# The developers' checkout keeps the benchmarks beside the repository.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "benchmarks"


def default_data_dir() -> Path:
    return DEFAULT_DATA_DIR


def benchmark_images(set_name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The HR images of ``set_name`` under ``data_dir``, sorted by name."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if not root.is_dir():
        raise InputError(
            f"{root}: no benchmark data folder; pass --data DIR (a folder holding Set5/HR/*.png, Set14/HR/*.png, ...)"
        )
    set_dir = root / set_name
    if not set_dir.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise InputError(f"{set_dir}: no such benchmark set (found: {', '.join(present) or 'nothing'})")
    image_dir = set_dir / "HR" if (set_dir / "HR").is_dir() else set_dir
    images = sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InputError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in the {set_name} folder")
    return images
