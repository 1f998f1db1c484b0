"""A quick validation PSNR during training (Set5 under the evaluation protocol)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vapsr_video.imaging.bicubic import imresize, modcrop
from vapsr_video.imaging.image_files import read_rgb8
from vapsr_video.model.vapsr import VapSR
from vapsr_video.training.data import find_images


class ValidationSet:
    def __init__(self, folder: str | Path, scale: int) -> None:
        self.scale = scale
        self.pairs = []
        for path in find_images([folder]):
            hr = modcrop(read_rgb8(path), scale)
            self.pairs.append((imresize(hr, 1 / scale), hr))

    @torch.no_grad()
    def psnr(self, model: VapSR, device: torch.device) -> float:
        from vapsr_video.evaluation.metrics import psnr_y

        was_training = model.training
        model.eval()
        scores = []
        for lr, hr in self.pairs:
            x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().div(255).to(device)
            sr = model(x).clamp(0, 1).mul(255).round().byte()[0].permute(1, 2, 0).cpu().numpy()
            scores.append(psnr_y(sr, hr, self.scale))
        model.train(was_training)
        return float(np.mean(scores))
