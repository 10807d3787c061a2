"""TiTok's two ways from decoder outputs to pixels, each chosen once when the model is built.

* ``PixelOutput`` — single-stage models: the decoder's ``PixelHead`` emits RGB directly.
* ``ProxyCodeOutput`` — the two-stage design (Yu et al. 2024): the decoder's ``ProxyCodeHead``
  predicts logits over the MaskGIT-VQGAN codebook at every 2D position; soft codes (the softmax
  mix of codebook rows) go through the MaskGIT-VQGAN pixel decoder.

An output path is a plain object, not a module: the modules it drives are registered on the
``TiTok`` (keys ``decoder.head.*``, ``pixel_codebook.*``, ``pixel_decoder.*``, as the official
checkpoints), so choosing a path changes no state-dict key.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ...pixel.maskgit_vqgan import PixelDecoder, soft_codes


class PixelHead(nn.Module):
    """Single-stage head: Linear(W -> P*P*3) per 2D position, depth-to-space, then a 3x3 conv.
    Channel ``(p1*P + p2)*3 + c`` of cell (row, col) becomes pixel (row*P + p1, col*P + p2), colour c.
    Shapes: ``B x G^2 x W`` -> ``B x 3 x G*P x G*P``."""

    def __init__(self, width: int, patch: int):
        super().__init__()
        self.patch = patch
        self.to_patches = nn.Linear(width, patch * patch * 3)
        self.conv_out = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        g, p = int(round(n**0.5)), self.patch
        x = self.to_patches(x).view(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(b, 3, g * p, g * p)
        return self.conv_out(x)


class PixelOutput:
    """The decoder output is the image ``B x 3 x H x W``; there are no proxy logits."""

    has_logits = False

    def __init__(self, head: PixelHead):
        self.head = head

    def logits(self, out: torch.Tensor) -> Optional[torch.Tensor]:
        return None

    def pixels(self, out: torch.Tensor, logits: Optional[torch.Tensor]) -> torch.Tensor:
        return out

    def last_layer(self) -> torch.Tensor:
        return self.head.conv_out.weight


class ProxyCodeOutput:
    """Decoder output ``B x G^2 x V`` -> logits ``B x V x G x G`` -> soft codes -> pixels."""

    has_logits = True

    def __init__(self, codebook: nn.Embedding, pixel_decoder: PixelDecoder, grid: int):
        self.codebook, self.pixel_decoder, self.grid = codebook, pixel_decoder, grid

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        return out.transpose(1, 2).unflatten(2, (self.grid, self.grid))

    def pixels(self, out: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return self.pixel_decoder(soft_codes(logits.softmax(dim=1), self.codebook.weight))

    def last_layer(self) -> torch.Tensor:
        return self.pixel_decoder.conv_out.weight


__all__ = ["PixelHead", "PixelOutput", "ProxyCodeOutput"]
