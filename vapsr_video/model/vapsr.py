"""The VapSR network, layer for layer as the authors built it.

Module and parameter names follow the authors' code so that their checkpoints
load with ``strict=True``; see ``ModelConfig`` for the published sizes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from vapsr_video.choices import VARIANTS

D_ATTEN = 64  # width of the attention branch in every published checkpoint


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the shapes of a VapSR network."""

    scale: int
    num_feat: int = 48
    num_blocks: int = 20
    d_atten: int = D_ATTEN
    conv_groups: int = 1

    @property
    def variant(self) -> str:
        """The published name for this configuration, or ``"custom"``."""
        for name in VARIANTS:
            if self.scale in (2, 3, 4) and self == published_config(name, self.scale):
                return name
        return "custom"

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


PUBLISHED_CONFIGS: dict[str, ModelConfig] = {
    "vapsr-x2": ModelConfig(scale=2, num_feat=48, num_blocks=20),
    "vapsr-x3": ModelConfig(scale=3, num_feat=48, num_blocks=20),
    "vapsr-x4": ModelConfig(scale=4, num_feat=48, num_blocks=21),
    "vapsr-s-x4": ModelConfig(scale=4, num_feat=32, num_blocks=11, conv_groups=2),
}



def published_config(variant: str, scale: int) -> ModelConfig:
    """The authors' configuration for ``variant`` at ``scale``.

    VapSR-S was only published at x4; at other scales it keeps its body and takes
    the x2/x3 upsampler, which is how one would train it.
    """
    key = f"{variant}-x{scale}"
    if key in PUBLISHED_CONFIGS:
        return PUBLISHED_CONFIGS[key]
    if variant == "vapsr-s" and scale in (2, 3):
        return ModelConfig(scale=scale, num_feat=32, num_blocks=11, conv_groups=2)
    raise ValueError(f"unknown model {variant!r} at x{scale}; choose from {', '.join(VARIANTS)} at x2, x3 or x4")


class Attention(nn.Module):
    """Large-kernel pixel attention: 1x1, 5x5 depthwise, 5x5 depthwise dilated by 3."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(dim, dim, 1)
        self.depthwise = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.depthwise_dilated = nn.Conv2d(dim, dim, 5, padding=6, groups=dim, dilation=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = self.depthwise_dilated(self.depthwise(self.pointwise(x)))
        return x * attention


class VAB(nn.Module):
    """Vast-receptive-field attention block with a per-pixel LayerNorm after the residual."""

    def __init__(self, num_feat: int, d_atten: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(num_feat, d_atten, 1)
        self.activation = nn.GELU()
        self.atten_branch = Attention(d_atten)
        self.proj_2 = nn.Conv2d(d_atten, num_feat, 1)
        self.pixel_norm = nn.LayerNorm(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj_2(self.atten_branch(self.activation(self.proj_1(x)))) + x
        # LayerNorm over channels at each pixel; permuting keeps it one fused kernel
        # and works for both contiguous and channels-last inputs.
        y = F.layer_norm(y.permute(0, 2, 3, 1), self.pixel_norm.normalized_shape,
                         self.pixel_norm.weight, self.pixel_norm.bias, self.pixel_norm.eps)
        return y.permute(0, 3, 1, 2)


def _upsampler(num_feat: int, scale: int) -> nn.Sequential:
    if scale == 4:
        return nn.Sequential(
            nn.Conv2d(num_feat, 64, 3, padding=1),
            nn.PixelShuffle(2),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(16, 12, 3, padding=1),
            nn.PixelShuffle(2),
        )
    if scale in (2, 3):
        return nn.Sequential(
            nn.Conv2d(num_feat, 56, 3, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(56, 3 * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )
    raise ValueError(f"VapSR has no upsampler for x{scale} (x2, x3 and x4 exist)")


class VapSR(nn.Module):
    """RGB in [0, 1] at H x W -> RGB at scale*H x scale*W (not clamped)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.num_feat
        self.conv_first = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(*(VAB(c, config.d_atten) for _ in range(config.num_blocks)))
        self.conv_body = nn.Conv2d(c, c, 3, padding=1, groups=config.conv_groups)
        self.upsampler = _upsampler(c, config.scale)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv_first(x)
        features = features + self.conv_body(self.body(features))
        return self.upsampler(features)
