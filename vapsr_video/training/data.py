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
from vapsr_video.imaging.image_files import is_image_path, read_rgb8


def find_images(folders: Sequence[str | Path]) -> list[Path]:
    """Every image file under ``folders`` (recursively), sorted."""
    paths = sorted(p for folder in folders for p in Path(folder).rglob("*") if is_image_path(p) and p.is_file())
    if not paths:
        raise FileNotFoundError(f"no training images under {', '.join(map(str, folders))}")
    return paths


# Natural photographs rarely hold large flat areas of saturated or extreme colour, and a
# network trained on them alone shifts such areas by tens of code values. Three cheap
# augmentations that commute with the per-channel bicubic (exactly for permutation and flat
# patches, up to rounding ties for inversion) cover that part of colour space.
CHANNEL_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
INVERT_PROBABILITY = 0.25
FLAT_PATCH_PROBABILITY = 1 / 16
EXTREME_LEVELS = np.array([0, 255], np.uint8)


def flat_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour whose channels are mostly at 0 or 255 (the hardest cases), sometimes anywhere."""
    extreme = EXTREME_LEVELS[rng.integers(2, size=3)]
    anywhere = rng.integers(256, size=3).astype(np.uint8)
    return np.where(rng.random(3) < 0.7, extreme, anywhere)


class PairedPatches:
    """All HR/LR pairs in memory (the 291-image set is ~60 MB) and a patch sampler.

    ``colour_augment`` adds random channel orders, colour inversion and a few flat patches
    of saturated colour, so flat areas keep their colour after upscaling.
    """

    def __init__(self, folders: Sequence[str | Path], scale: int, lr_patch: int = 48,
                 colour_augment: bool = True) -> None:
        self.scale, self.lr_patch = scale, lr_patch
        self.colour_augment = colour_augment
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
            if self.colour_augment:
                self._augment_colour(rng, lr_batch[i], hr_batch[i])
        to_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255)  # noqa: E731
        return to_tensor(lr_batch), to_tensor(hr_batch)

    @staticmethod
    def _augment_colour(rng: np.random.Generator, lr: np.ndarray, hr: np.ndarray) -> None:
        """In place: the same colour change on both halves of a pair."""
        order, invert, flat = rng.integers(len(CHANNEL_ORDERS)), rng.random(), rng.random()
        if flat < FLAT_PATCH_PROBABILITY:
            colour = flat_colour(rng)
            lr[...] = colour
            hr[...] = colour
            return
        lr[...] = lr[..., CHANNEL_ORDERS[order]]
        hr[...] = hr[..., CHANNEL_ORDERS[order]]
        if invert < INVERT_PROBABILITY:
            np.subtract(255, lr, out=lr)
            np.subtract(255, hr, out=hr)

    def batches(self, seed: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(seed)
        while True:
            yield self.sample(rng, batch_size)
