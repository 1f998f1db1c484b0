"""Give chosen modules of a model another class in place: variants of a layer for one purpose.

The new class must be a subclass with the same parameters (only ``forward`` or its
backward differs), so parameter names and checkpoints are unchanged: training swaps in
faster backwards, CPU inference a faster dilated convolution.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def swap_class(model: nn.Module, eligible: Callable[[nn.Module], bool], new_class: type[nn.Module]) -> int:
    """Make every module of ``model`` that ``eligible`` accepts a ``new_class``; return how many."""
    count = 0
    for module in model.modules():
        if eligible(module):
            module.__class__ = new_class
            count += 1
    return count
