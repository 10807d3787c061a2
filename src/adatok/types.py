"""Typed results of the public forwards.

Conventions (README, "Python API"): images are float ``B x 3 x H x W`` in [0, 1]; token ids are ``B x L``
int64; variable length is a padded tensor plus ``lengths`` (``B``), never a list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class Tokens:
    """What a tokenizer's ``encode`` returns.

    Shapes:
        ids:       B x L int64 code indices (``None`` for continuous/KL tokenizers)
        lengths:   B int64, the number of valid tokens per image (= L for fixed-length models)
        codes:     B x L x C the vectors the decoder reads (quantized codes, straight-through in
                   training; for KL models the posterior mean, or a sample when asked)
        latents:   B x L x C' the encoder output before quantization (C' = 2C for KL: mean ‖ logvar)
    """

    ids: Optional[torch.Tensor]
    lengths: torch.Tensor
    codes: torch.Tensor
    latents: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return self.codes.shape[1]

    def to(self, *args, **kwargs) -> "Tokens":
        return Tokens(
            ids=None if self.ids is None else self.ids.to(*args, **kwargs),
            lengths=self.lengths.to(*args, **kwargs),
            codes=self.codes.to(*args, **kwargs),
            latents=self.latents.to(*args, **kwargs),
        )


@dataclass
class QuantizerOutput:
    """Result of a quantizer (VQ or KL) on ``B x L x C`` latents.

    ``codes`` carries gradients to the encoder (straight-through for VQ, reparameterised for KL).
    ``loss`` is the term to add to the training objective (commitment + codebook, or KL).
    """

    codes: torch.Tensor
    ids: Optional[torch.Tensor]
    loss: torch.Tensor
    stats: dict = field(default_factory=dict)


@dataclass
class TokenizerOutput:
    """Result of a tokenizer's training forward (``model(images)``).

    Shapes:
        images:  B x 3 x H x W reconstruction (unclamped), or ``None`` when the model only
                 predicts proxy codes (two-stage TiTok in stage 1)
        logits:  B x V x h x w proxy-code logits of two-stage models, else ``None``
        tokens:  the ``Tokens`` of the batch
        quantizer_loss: scalar, already weighted by the quantizer's own coefficients
    """

    images: Optional[torch.Tensor]
    logits: Optional[torch.Tensor]
    tokens: Tokens
    quantizer_loss: torch.Tensor
    stats: dict = field(default_factory=dict)


@dataclass
class Selection:
    """What an adaptive tokenizer's ``select`` returns.

    Shapes:
        tokens:  ``Tokens`` padded to ``max_tokens`` (ids ``PAD_ID`` beyond each image's length)
        images:  B x 3 x H x W in [0, 1] at the chosen lengths (``None`` when not asked for)
        errors:  B x T the criterion's error at each allowed length (T = len(allowed_lengths));
                 NaN where it was not evaluated for that image (early exit, or a search skipped it)
        iterations_run: how many batched length steps (iterations or decodes) ran
    """

    tokens: Tokens
    images: Optional[torch.Tensor]
    errors: torch.Tensor
    iterations_run: int


@dataclass
class RateSweep:
    """Reconstructions at several lengths: ``images[t]`` (B x 3 x H x W in [0, 1]) at
    ``lengths[t]`` tokens, for t in range(T). ``images`` is T x B x 3 x H x W."""

    lengths: tuple[int, ...]
    images: torch.Tensor
