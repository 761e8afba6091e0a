"""A plain 3D UNet that returns full-resolution logits and a stride-4 feature map.

Alignment convention: a stride-2 convolution (kernel 3, padding 1) centres its output voxel ``f`` on
input voxel ``2 f``, so voxel ``f`` of the stride-4 map sits on full-resolution voxel ``4 f``;
:func:`~vesseltree.deformcl.geometry.sample_at` uses the same convention.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import DeformCLConfig

__all__ = ["UNet3D"]


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class UNet3D(nn.Module):
    """3D UNet: ``levels`` stride-2 encoder steps, trilinear up-sampling and skip concatenation.

    Parameters
    ----------
    config : DeformCLConfig
        Uses ``in_channels``, ``base_channels``, ``levels`` and ``feat_channels``.

    Forward
    -------
    x : (B, C, I, J, K) float tensor, each of I, J, K a multiple of ``2**levels``.
    returns ``(logits, feat)``: (B, 1, I, J, K) vessel logits and (B, feat_channels, I/4, J/4, K/4).
    """

    def __init__(self, config: DeformCLConfig):
        super().__init__()
        self.config = config
        b = config.base_channels
        ch = [b * min(2**level, 8) for level in range(config.levels + 1)]
        self.stem = _block(config.in_channels, ch[0])
        self.down = nn.ModuleList(_block(ch[i], ch[i + 1], stride=2) for i in range(config.levels))
        self.up = nn.ModuleList(_block(ch[i + 1] + ch[i], ch[i]) for i in range(config.levels))
        self.head = nn.Conv3d(ch[0], 1, 1)
        self.feat_head = nn.Sequential(
            nn.Conv3d(ch[2], ch[2], 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv3d(ch[2], config.feat_channels, 1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips[-1]
        feat = None
        for level in range(self.config.levels - 1, -1, -1):
            skip = skips[level]
            y = F.interpolate(y, size=skip.shape[2:], mode="trilinear", align_corners=True)
            y = self.up[level](torch.cat([y, skip], dim=1))
            if level == 2:
                feat = self.feat_head(y)
        if feat is None:  # levels == 2: the stride-4 level is the bottleneck
            feat = self.feat_head(skips[2])
        return self.head(y), feat
