"""Nearest-code vector quantization (van den Oord et al., 2017) with optional l2-normalised codes
(Yu et al., "Vector-quantized image modeling with improved VQGAN", 2022), as TiTok and ALIT use it.

Everything runs in float32 even under autocast: a code index is an argmin over distances whose
best-vs-second-best gap can be ~1e-3, far below bf16 resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..types import QuantizerOutput


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row for each row of ``z`` (squared Euclidean distance).

    Shapes: z ``N x C``, codebook ``V x C`` -> ``N`` int64. Ties go to the first index.
    The distance is expanded as ``|z|^2 + |e|^2 - 2 z.e`` (one matmul, no N x V x C tensor).
    """
    dist = (z.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1)).addmm_(z, codebook.t(), alpha=-2.0)
    return dist.argmin(dim=1)


class VectorQuantizer(nn.Module):
    """Shapes: z ``B x L x C`` -> codes ``B x L x C``, ids ``B x L``.

    Loss = ``beta * mean((sg(zq) - z)^2) + mean((zq - sg(z))^2)`` (commitment + codebook), computed
    on the normalised vectors when ``l2_norm`` is on. Codes returned straight-through.
    """

    def __init__(self, codebook_size: int, dim: int, beta: float = 0.25, l2_norm: bool = True):
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.beta = beta
        self.l2_norm = l2_norm
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def codebook(self) -> torch.Tensor:
        w = self.embedding.weight.float()
        return F.normalize(w, dim=-1) if self.l2_norm else w

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            if self.l2_norm:
                z = F.normalize(z, dim=-1)
            codebook = self.codebook()
            b, l, c = z.shape
            ids = nearest_code(z.reshape(b * l, c), codebook).view(b, l)
            zq = F.embedding(ids, codebook)
            commitment = self.beta * (zq.detach() - z).pow(2).mean()
            codebook_loss = (zq - z.detach()).pow(2).mean()
            # Straight-through only where a gradient can flow: otherwise return the code vectors
            # themselves, so decoding Tokens equals decoding their ids bit for bit.
            codes = z + (zq - z).detach() if z.requires_grad else zq
        return QuantizerOutput(
            codes=codes,
            ids=ids,
            loss=commitment + codebook_loss,
            stats={"commitment_loss": commitment.detach(), "codebook_loss": codebook_loss.detach()},
        )

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors of ``ids`` (``B x L`` -> ``B x L x C``), normalised when ``l2_norm``."""
        if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise InputError(f"token ids must be an integer tensor, got {ids.dtype}")
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.codebook_size:
                raise InputError(
                    f"token ids must lie in [0, {self.codebook_size}); got values in [{lo}, {hi}]"
                    " — were they made by a tokenizer with another codebook?"
                )
        return F.embedding(ids.long(), self.codebook())
