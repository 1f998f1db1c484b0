"""The names every front end offers (variants, precisions, engines) and the tile default.

Kept free of torch so that building an argument parser, and so ``vapsr-video --help``,
starts in a fraction of a second.
"""

from __future__ import annotations

VARIANTS = ("vapsr", "vapsr-s")
SCALES = (2, 3, 4)
PRECISION_NAMES = ("fp32", "fp16", "bf16")
ENGINES = ("eager", "compile", "cuda-graphs")
# Context around each tile, in input pixels. Measured on uniform noise (the worst case)
# with the authors' x4 checkpoint: 32 leaves up to 1.5/255 at tile seams, 40 under 0.12/255.
DEFAULT_TILE_OVERLAP = 40
