"""The names every front end offers (variants, precisions, engines) and the tile and size defaults.

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
# Largest input picture (width x height) read by default: 8K (8192x4320, 35.4 MP) fits with room
# to spare; a header declaring more is refused before any frame buffer is made (--max-pixels).
DEFAULT_MAX_PIXELS = 50_000_000
# Decoder threads per input: FFmpeg's "auto" means one per core, and each thread holds frames.
MAX_DECODER_THREADS = 16
# The widest --crf scale among the usual encoders (SVT-AV1, VP9: 0-63); each encoder's own range
# is checked once it is chosen (video/encoder.py).
CRF_LIMITS = (0, 63)
