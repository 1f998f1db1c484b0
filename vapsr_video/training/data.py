"""Training pairs: random HR crops with their MATLAB-bicubic LR counterparts.

Each HR image is shrunk once, whole, with the same MATLAB bicubic as the
evaluation protocol; training crops aligned patches from the pair, so the LR
the network learns from is exactly what it is tested on, and no resizing sits
in the training loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from vapsr_video.imaging.bicubic import imresize, modcrop

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}


def find_images(folders: Sequence[str | Path]) -> list[Path]:
    paths = sorted(p for folder in folders for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no training images under {', '.join(map(str, folders))}")
    return paths


def read_rgb8(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


class PairedPatches:
    """All HR/LR pairs in memory (the 291-image set is ~60 MB) and a patch sampler."""

    def __init__(self, folders: Sequence[str | Path], scale: int, lr_patch: int = 48) -> None:
        self.scale, self.lr_patch = scale, lr_patch
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        for path in find_images(folders):
            hr = modcrop(read_rgb8(path), scale)
            if min(hr.shape[:2]) < lr_patch * scale:
                continue  # too small for one patch
            self.pairs.append((hr, imresize(hr, 1 / scale)))
        if not self.pairs:
            raise ValueError(f"no training image is at least {lr_patch * scale} pixels on each side")

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of (LR, HR) float tensors in [0, 1], NCHW, randomly flipped and rotated."""
        p, s = self.lr_patch, self.scale
        lr_batch = np.empty((batch_size, p, p, 3), np.uint8)
        hr_batch = np.empty((batch_size, p * s, p * s, 3), np.uint8)
        for i in range(batch_size):
            hr, lr = self.pairs[rng.integers(len(self.pairs))]
            top, left = rng.integers(lr.shape[0] - p + 1), rng.integers(lr.shape[1] - p + 1)
            lr_patch = lr[top:top + p, left:left + p]
            hr_patch = hr[top * s:(top + p) * s, left * s:(left + p) * s]
            flip, turns = rng.integers(2), rng.integers(4)
            if flip:
                lr_patch, hr_patch = lr_patch[:, ::-1], hr_patch[:, ::-1]
            lr_batch[i] = np.rot90(lr_patch, turns)
            hr_batch[i] = np.rot90(hr_patch, turns)
        to_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255)  # noqa: E731
        return to_tensor(lr_batch), to_tensor(hr_batch)

    def batches(self, seed: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(seed)
        while True:
            yield self.sample(rng, batch_size)
