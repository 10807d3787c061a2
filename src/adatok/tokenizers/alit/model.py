"""ALIT: adaptive-length 1D tokens by recurrent allocation (Duggal et al., ICLR 2025).

A MaskGIT-architecture VQGAN (``base``) turns the image into a G x G grid of 2D tokens; the
latent-distillation encoder adds 32 (``tokens_per_iter``) 1D tokens per iteration and re-encodes all
of them; the decoder predicts the base codes from the 1D tokens; soft codes go through the base
pixel decoder. What we add to the official code: per-image length selection with early exit
(``select``), a decoder from ids (``decode_ids``), a deterministic halting rule (``halting.py``).

With the KL-16 VAE base (``config.base_kind == "vae"``; presets ``alit_small_vae``,
``alit_small_vae_continuous``) the 2D tokens are the VAE's scaled latents (a posterior sample or
its mean, ``config.vae_sampling``), the decoder regresses them, and the predicted latents go
through the VAE decoder — as the official code, without dividing by the scale first
(``config.vae_rescale_decode``). There are no base codes, so no dynamic halting (the official
VAE rule is a no-op) and no token-space ``confidence`` criterion: use the pixel criteria. What
differs between the two bases is one adapter (``base_tokenizer.py``), chosen in ``__init__``.

Images are ``B x 3 x H x W`` float in [0, 1]. Ids are padded to ``B x max_tokens`` with
``PAD_ID`` (-1) beyond each image's ``lengths``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ...errors import InputError
from ...hub_mixin import HubMixin
from ...layers.block import TransformerBlock
from ...layers.init import trunc_normal_init_
from ...pixel.kl_vae import KLVAE
from ...pixel.maskgit_vqgan import MaskGITVQGAN
from ...quantizers import VectorQuantizer
from ...checks import check_ids, check_ids_in_range, check_images, check_lengths
from ...interface import PAD_ID, AdaptiveTokenizer
from ...types import RateSweep, Selection, Tokens
from ..selection import TokenConfidence, calibrate_confidence, get_criterion
from .config import ALITConfig
from .base_tokenizer import base_adapter
from .halting import halting_mask, halts
from .modules import ALITDecoder, ALITEncoder
from .rollout import Rollout, RolloutParts, adaptive_rollout, decode, full_rollout


class ALIT(HubMixin, AdaptiveTokenizer):
    def __init__(self, config: Optional[ALITConfig] = None):
        super().__init__()
        config = config if config is not None else ALITConfig()
        self.config = config
        self.base = KLVAE(config.base) if config.is_vae else MaskGITVQGAN(config.base)
        self.base_adapter = base_adapter(self.base, config)
        self.encoder = ALITEncoder(config)
        self.decoder = ALITDecoder(config)
        self.quantizer = (VectorQuantizer(config.codebook_size, config.token_dim, beta=config.commitment_cost,
                                          l2_norm=True, restart_dead_codes=config.restart_dead_codes)
                          if config.quantized else None)
        self.apply(lambda m: _init_linear(m, config.init))
        for module in self.modules():  # nn.MultiheadAttention's packed projection keeps its default init
            if isinstance(module, TransformerBlock):
                nn.init.xavier_uniform_(module.attn.qkv.weight)

    # -- properties shared with the other tokenizers -----------------------------------------
    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def max_tokens(self) -> int:
        """The maximum length (ids are padded to it)."""
        return self.config.max_tokens

    @property
    def codebook_size(self) -> Optional[int]:
        return self.config.codebook_size if self.config.quantized else None

    @property
    def allowed_lengths(self) -> tuple[int, ...]:
        """One length per recurrent iteration: tokens_per_iter, 2 * tokens_per_iter, ..."""
        return tuple(self.config.token_counts)

    # -- building blocks the rollout uses -----------------------------------------------------
    def base_pixels(self, grid: torch.Tensor) -> torch.Tensor:
        """What the decoder made of the 2D tokens, B x C x G x G (soft codes, or VAE latents) ->
        images B x 3 x H x W, unclamped, through the base tokenizer's pixel decoder."""
        return self.base_adapter.to_pixels(grid)

    def quantize(self, latents: torch.Tensor):
        """Factorised latents B x n x d -> (codes the decoder reads, ids or None, quantizer loss)."""
        if self.quantizer is None:
            return latents, None, latents.new_zeros(())
        q = self.quantizer(latents)
        return q.codes, q.ids, q.loss

    def rollout_parts(self) -> RolloutParts:
        """The parts the rollouts run, read from this model now (its mode, its current methods)."""
        cfg = self.config
        halt = None
        if halts(cfg.halting):
            def halt(p_gt, generator=None):
                return halting_mask(p_gt, cfg.halting, cfg.halting_threshold, generator)
        return RolloutParts(self.encoder, self.decoder, self.quantize, self.base_adapter, self.base_pixels, halt,
                            self.training, cfg.max_iters, cfg.max_tokens, cfg.token_dim, cfg.quantized)

    # -- public API ---------------------------------------------------------------------------
    def rollout(self, images: torch.Tensor, iters: Optional[int] = None, pixels="all", decode_at=None,
                generator: Optional[torch.Generator] = None) -> Rollout:
        """All iterations for the whole batch (every length), with pixel decodes at ``pixels``
        (``"all"``, or a collection of iteration indices). ``generator`` seeds the random parts:
        Bernoulli halting (VQGAN base), the posterior sample (VAE base)."""
        images = check_images(images, self.image_size, self)
        return full_rollout(self.rollout_parts(), images, iters, decode_at, pixels, generator)

    def select(self, images: torch.Tensor, criterion="l1", threshold: Optional[float] = None,
               max_tokens: Optional[int] = None, generator: Optional[torch.Generator] = None,
               return_images: bool = True) -> Selection:
        """Per-image adaptive length: tokens (padded ids + lengths), reconstructions at the chosen
        lengths, and each iteration's error. ``criterion``: a name (``l1`` — the paper's, ``mse``,
        ``psnr``, ``confidence`` — token space, no pixel decode per iteration, ``budget``: default
        the full length) with its ``threshold``, or a ``Criterion``. ``max_tokens`` caps every image's length.
        VAE base: no ``confidence`` (there are no base codes to be confident about)."""
        images = check_images(images, self.image_size, self)
        if criterion == "budget" and threshold is None:  # no budget given: this model's full length
            threshold = max_tokens or self.config.max_tokens
        crit = get_criterion(criterion, threshold, max_tokens)
        if not self.base_adapter.has_codes and isinstance(crit, TokenConfidence):
            raise InputError(_NO_CONFIDENCE)
        return adaptive_rollout(self.rollout_parts(), images, crit, generator, return_images)

    def encode(self, images: torch.Tensor, criterion="budget", threshold: Optional[float] = None,
               max_tokens: Optional[int] = None, generator: Optional[torch.Generator] = None) -> Tokens:
        """Images -> ``Tokens`` (padded, with per-image ``lengths``). The default is the full
        length (``budget`` of ``max_tokens``); pass a criterion for adaptive lengths."""
        return self.select(images, criterion, threshold, max_tokens, generator, return_images=False).tokens

    def decode(self, tokens: Tokens, clamp: bool = True) -> torch.Tensor:
        """``Tokens`` (padded codes + lengths) -> images B x 3 x H x W."""
        return self.decode_codes(tokens.codes, tokens.lengths, clamp)

    def decode_ids(self, ids: torch.Tensor, lengths: Optional[torch.Tensor] = None, clamp: bool = True) -> torch.Tensor:
        """Padded ids B x L (L <= max_tokens) + lengths B -> images. Without ``lengths`` every id
        is used (L must then be a multiple of ``tokens_per_iter``)."""
        if self.quantizer is None:
            raise InputError("this ALIT has continuous latents (no ids): use decode(tokens) or decode_codes")
        ids = check_ids(ids)
        lengths = self._check_lengths(ids, lengths)
        v = self.config.codebook_size
        valid = check_ids_in_range(ids, lengths, v)
        codes = self.quantizer.lookup(ids.clamp(0, v - 1)) * valid[..., None]
        return self.decode_codes(codes, lengths, clamp)

    def decode_codes(self, codes: torch.Tensor, lengths: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Padded codes B x L x d + lengths -> images. Images of equal length decode together (at
        most ``max_iters`` groups: the decoder's sequence length depends on the token count)."""
        lengths = self._check_lengths(codes[..., 0], lengths)
        parts = self.rollout_parts()
        out = codes.new_zeros(codes.shape[0], 3, self.image_size, self.image_size, dtype=torch.float32)
        for n in lengths.unique().tolist():
            rows = torch.nonzero(lengths == n)[:, 0]
            out[rows] = parts.to_pixels(decode(parts, codes[rows, :n])[1]).float()
        return out.clamp_(0, 1) if clamp else out

    def sweep(self, images: torch.Tensor, lengths: Optional[tuple[int, ...]] = None,
              generator: Optional[torch.Generator] = None) -> RateSweep:
        """Reconstructions at each of ``lengths`` (default every iteration's): one rollout of the
        iterations up to the longest, pixel-decoding only the iterations asked for."""
        allowed = self.allowed_lengths
        lengths = self.sweep_lengths(lengths)
        at = sorted({allowed.index(n) for n in lengths})
        r = self.rollout(images, iters=at[-1] + 1, pixels=at, generator=generator)
        images_out = torch.stack([r.iterations[allowed.index(n)].images.float().clamp(0, 1) for n in lengths])
        return RateSweep(lengths, images_out)

    def reconstruct(self, images: torch.Tensor, criterion="budget", threshold=None, max_tokens=None) -> torch.Tensor:
        return self.select(images, criterion, threshold, max_tokens).images

    @torch.no_grad()
    def calibrate_confidence(self, images: torch.Tensor, l1_threshold: float = 0.07) -> tuple[float, float]:
        """The ``confidence`` threshold that best reproduces the pixel-L1 criterion at
        ``l1_threshold`` on these (held-out) images: ``(threshold, agreement)``, see
        ``selection.calibrate_confidence``. Runs full rollouts with every pixel decode once."""
        if not self.base_adapter.has_codes:
            raise InputError(_NO_CONFIDENCE)
        r = self.rollout(images, pixels="all")
        conf = torch.stack([it.p_gt.float().mean(1) for it in r.iterations], 1)
        l1 = torch.stack([(it.images.float() - images.float()).abs().mean(dim=(1, 2, 3)) for it in r.iterations], 1)
        return calibrate_confidence(conf, l1, l1_threshold)

    def last_layer(self) -> torch.Tensor:
        return self.base.last_layer()

    def forward(self, images: torch.Tensor, iters: Optional[int] = None, decode_at=None, pixels_at=(),
                generator: Optional[torch.Generator] = None) -> Rollout:
        """Training path (no input checks beyond shapes): the rollout with decoder outputs at
        ``decode_at`` (default all) and pixel decodes at ``pixels_at``."""
        return full_rollout(self.rollout_parts(), images, iters, decode_at, pixels_at, generator)

    def _check_lengths(self, ids: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        cfg, (b, width) = self.config, ids.shape[:2]
        if width > cfg.max_tokens:
            raise InputError(f"got {width} tokens per row; this model reads at most {cfg.max_tokens}")
        return check_lengths(lengths, b, width, cfg.token_counts, ids.device)


_NO_CONFIDENCE = ("the confidence criterion reads the decoder's probability of the base codes; this ALIT has a "
                  "VAE base (it regresses latents, no codes): use a pixel criterion (l1, mse, psnr) or budget")


def _init_linear(module: nn.Module, scheme: str) -> None:
    # Init of the latent-distillation linears: trunc-normal (official: std 0.02; layers/init.py),
    # zero bias. (The base VQGAN / VAE keeps PyTorch's conv defaults; it is usually loaded from a checkpoint.)
    if isinstance(module, ALITEncoder):
        trunc_normal_init_(module.patch_embed, scheme)
    elif isinstance(module, nn.Linear):
        trunc_normal_init_(module, scheme)


__all__ = ["ALIT", "PAD_ID"]
