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
from ..tracing import is_tracing
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
    The MaskGIT-VQGAN uses it too (``l2_norm=False``, ``init="normal"``).
    """

    def __init__(self, codebook_size: int, dim: int, beta: float = 0.25, l2_norm: bool = True,
                 restart_dead_codes: bool = False, usage_decay: float = 0.99, init: str = "uniform"):
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.beta = beta
        self.l2_norm = l2_norm
        self.restart_dead_codes = restart_dead_codes
        self.usage_decay = usage_decay
        self.embedding = nn.Embedding(codebook_size, dim)  # "normal": nn.Embedding's N(0, 1) (MaskGIT-VQGAN)
        if init == "uniform":  # U(-1/V, 1/V), as the official TiTok
            nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        if restart_dead_codes:
            # EMA of how often each code is picked per batch (starts "used" so nothing restarts at once)
            self.register_buffer("usage", torch.ones(codebook_size))

    def nearest(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids and code vectors of the nearest codes, in float32 (no loss, no normalisation of ``z``).
        Shapes: z ``... x C`` -> ids ``...`` int64, codes ``... x C`` float32."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            codebook = self.codebook()
            ids = nearest_code(z.reshape(-1, z.shape[-1]).float(), codebook).view(z.shape[:-1])
            return ids, F.embedding(ids, codebook)

    def codebook(self) -> torch.Tensor:
        w = self.embedding.weight.float()
        return F.normalize(w, dim=-1) if self.l2_norm else w

    def forward(self, z: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> QuantizerOutput:
        """``sample`` and ``generator`` are accepted for the signature every quantizer shares
        (``DiagonalGaussian`` samples with them); nearest-code lookup is deterministic."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            if self.l2_norm:
                z = F.normalize(z, dim=-1)
            ids, zq = self.nearest(z)
            commitment = self.beta * (zq.detach() - z).pow(2).mean()
            codebook_loss = (zq - z.detach()).pow(2).mean()
            # Straight-through only where a gradient can flow: otherwise return the code vectors
            # themselves, so decoding Tokens equals decoding their ids bit for bit.
            codes = z + (zq - z).detach() if z.requires_grad else zq
        if self.restart_dead_codes and self.training:
            self._restart_dead_codes(ids, z)
        return QuantizerOutput(
            codes=codes,
            ids=ids,
            loss=commitment + codebook_loss,
            stats={"commitment_loss": commitment.detach(), "codebook_loss": codebook_loss.detach()},
        )

    def _restart_dead_codes(self, ids: torch.Tensor, z: torch.Tensor) -> None:
        restart_dead_codes_(self.embedding.weight, self.usage, ids, z, self.usage_decay)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors of ``ids`` (``B x L`` -> ``B x L x C``), normalised when ``l2_norm``."""
        if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise InputError(f"token ids must be an integer tensor, got {ids.dtype}")
        if ids.numel() and not is_tracing():  # a host sync: eager only (adatok/tracing.py)
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.codebook_size:
                raise InputError(
                    f"token ids must lie in [0, {self.codebook_size}); got values in [{lo}, {hi}]"
                    " — were they made by a tokenizer with another codebook?"
                )
        return F.embedding(ids.long(), self.codebook())


@torch.no_grad()
def restart_dead_codes_(weight: torch.Tensor, usage: torch.Tensor, ids: torch.Tensor, z: torch.Tensor,
                        decay: float = 0.99, dead_below: float = 0.01) -> None:
    """Codebook collapse remedy for training from scratch (as in Dhariwal et al.'s Jukebox and many
    VQ trainers; the official TiTok has it as an off-by-default option), in place: ``usage`` (V)
    is an EMA of each code's share of the picks relative to a uniform share; codes whose usage fell
    below ``dead_below`` are re-seeded with random encoder outputs ``z`` (``... x C``) of the batch.
    Under DDP the new rows come from rank 0, so every rank keeps the same codebook. No host sync.
    """
    v = weight.shape[0]
    counts = torch.bincount(ids.flatten(), minlength=v).float()
    expected = ids.numel() / v
    usage.mul_(decay).add_(counts / max(expected, 1e-9), alpha=1 - decay)
    dead = usage < dead_below
    flat = z.detach().reshape(-1, z.shape[-1])
    picks = flat[torch.randint(0, flat.shape[0], (v,), device=flat.device)]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast(picks, src=0)
        torch.distributed.broadcast(dead, src=0)
    weight.data.copy_(torch.where(dead[:, None], picks.to(weight.dtype), weight.data))
    usage.masked_fill_(dead, 1.0)


class CodeUsage(nn.Module):
    """The usage EMA of a codebook whose quantizer keeps none (``restart_dead_codes_``'s state), as
    a module so that training checkpoints (and exact resume) carry it: the MaskGIT-VQGAN trainer
    uses it, since the official VQGAN state dict has no usage buffer. It starts at ``start``: 0 (the
    codes the first batch does not pick are seeded with its encoder outputs, a data init) or 1
    (nothing restarts at once, as ``VectorQuantizer``'s own buffer)."""

    def __init__(self, codebook_size: int, start: float = 0.0):
        super().__init__()
        self.register_buffer("usage", torch.full((codebook_size,), float(start)))

    def restart_(self, weight: torch.Tensor, ids: torch.Tensor, z: torch.Tensor, decay: float = 0.99) -> None:
        """``restart_dead_codes_`` with this usage: ``weight`` V x C, ids ``...``, z ``... x C``."""
        restart_dead_codes_(weight, self.usage, ids, z, decay)
