"""MATLAB's ``imresize(img, scale, 'bicubic')`` on uint8 images, bit for bit.

Super-resolution papers make their low-resolution inputs with MATLAB, so matching
their numbers needs MATLAB's exact arithmetic: the a = -0.5 cubic kernel,
widened by 1/scale when shrinking (antialiasing), mirror padding, one pass per
axis (height first) and a round-half-away-from-zero to uint8 after each pass.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2
    ) * ((absx > 1) & (absx <= 2))


@lru_cache(maxsize=64)
def resize_matrix(in_length: int, out_length: int, scale: float) -> np.ndarray:
    """The (out_length, in_length) matrix of one MATLAB bicubic pass along an axis."""
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale
    positions = np.arange(1, out_length + 1, dtype=np.float64)
    centres = positions / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(centres - kernel_width / 2)
    taps = int(np.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based, as in MATLAB
    distance = centres[:, None] - indices
    weights = scale * _cubic(scale * distance) if antialias else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric padding: index 0 maps to 1, in_length + 1 to in_length, and so on.
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    columns = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.repeat(np.arange(out_length), taps)
    np.add.at(matrix, (rows, columns.ravel()), weights.ravel())
    return matrix


def _round_uint8(values: np.ndarray) -> np.ndarray:
    # MATLAB rounds half away from zero; the values are non-negative after clipping.
    return np.floor(np.clip(values, 0, 255) + 0.5).astype(np.uint8)


def imresize(
    image: np.ndarray, scale: float | None = None, *, output_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Resize a uint8 H x W (x C) image like MATLAB's bicubic ``imresize``.

    Give either ``scale`` (e.g. 1/4 to shrink) or ``output_shape`` (height, width).
    Float images are resized without rounding and returned as float64.
    """
    height, width = image.shape[:2]
    if output_shape is None:
        if scale is None:
            raise ValueError("give scale or output_shape")
        output_shape = (int(np.ceil(height * scale)), int(np.ceil(width * scale)))
        scale_h = scale_w = float(scale)
    else:
        scale_h, scale_w = output_shape[0] / height, output_shape[1] / width
    is_uint8 = image.dtype == np.uint8
    if not is_uint8 and image.dtype.kind != "f":
        raise TypeError(f"imresize takes uint8 or float images, not {image.dtype}")
    result = image.astype(np.float64)
    rows = resize_matrix(height, output_shape[0], scale_h)
    result = np.tensordot(rows, result, axes=(1, 0))
    if is_uint8:
        result = _round_uint8(result).astype(np.float64)
    columns = resize_matrix(width, output_shape[1], scale_w)
    result = np.moveaxis(np.tensordot(columns, result, axes=(1, 1)), 0, 1)
    return _round_uint8(result) if is_uint8 else result


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop so that height and width are multiples of ``scale``."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]
