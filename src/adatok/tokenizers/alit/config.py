"""ALIT architecture configuration (frozen dataclass; YAML is only for training runs).

Spec: specs/alit.md §2 (sizes), §4 (modules), §6 (halting), §7 (1D quantisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...errors import ConfigError
from ...layers.init import check_init
from ...pixel.maskgit_vqgan import MaskGITVQGANConfig
from ..titok.config import ViTConfig

HALTING_RULES = ("bernoulli", "threshold", "off")

# The official latent-distillation sizes (encoder = decoder). Note: alit_small is 1024 wide with
# 8 heads of 128 (the official builder's choice); the 512-wide model is alit_tiny.
ALIT_SIZES = {
    "tiny": ViTConfig(512, 8, 8),
    "small": ViTConfig(1024, 8, 8),
    "base": ViTConfig(768, 12, 12),
    "semilarge": ViTConfig(1024, 16, 16),
}


@dataclass(frozen=True)
class ALITConfig:
    """An ALIT tokenizer over a MaskGIT-architecture VQGAN (``base``).

    Every iteration k = 0..max_iters-1 appends ``tokens_per_iter`` latent tokens, re-encodes all of
    them with the image tokens, and decodes the ``tokens_per_iter * (k+1)`` 1D tokens to logits over
    the base tokenizer's codes at each 2D position.

    quantized:     1D tokens are vector-quantized (``codebook_size`` x ``token_dim``, l2-normalised
                   codes) — the released "quantized latents" models; False = "continuous latents"
                   (the decoder reads the ``token_dim`` factorised latents unquantized).
    halting:       dynamic halting of well-reconstructed 2D tokens after each iteration:
                   "bernoulli" — the official rule: mask slot i with probability p_gt(i) when
                   p_gt(i) >= ``halting_threshold`` (random, also at inference; seed it with a
                   ``torch.Generator``); "threshold" — deterministic: mask iff p_gt(i) >= threshold
                   (our default at inference: reproducible per image, batch-independent);
                   "off" — never mask.
    decoder_max_tokens: rows of the decoder's latent position table (official: 256); 0 (default)
                   means ``tokens_per_iter * max_iters``.
    restart_dead_codes: re-seed unused 1D codes while training (for training from scratch).
    init:          weight init when training from scratch: "official" (trunc-normal 0.02) or
                   "fan_in" (std fan_in^-1/2; for small widths, see layers/init.py).
    """

    image_size: int = 256
    width: int = 1024
    depth: int = 8
    heads: int = 8
    mlp_ratio: float = 4.0
    tokens_per_iter: int = 32
    max_iters: int = 8
    token_dim: int = 12
    quantized: bool = True
    codebook_size: int = 4096
    commitment_cost: float = 0.25
    halting: str = "threshold"
    halting_threshold: float = 0.55
    decoder_max_tokens: int = 0
    restart_dead_codes: bool = False
    init: str = "official"
    base: MaskGITVQGANConfig = field(default_factory=MaskGITVQGANConfig)

    def __post_init__(self):
        check_init(self.init, "ALITConfig")
        for name in ("image_size", "width", "depth", "heads", "tokens_per_iter", "max_iters", "token_dim",
                     "codebook_size"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                raise ConfigError(f"ALITConfig.{name}={v!r}: must be a positive int")
        if self.width % self.heads:
            raise ConfigError(f"ALITConfig: width {self.width} is not divisible by heads {self.heads}")
        if self.halting not in HALTING_RULES:
            raise ConfigError(f"ALITConfig.halting={self.halting!r}: choose one of {HALTING_RULES}")
        t = self.halting_threshold
        if not (isinstance(t, (int, float)) and math.isfinite(t) and 0 <= t <= 1):
            raise ConfigError(f"ALITConfig.halting_threshold={t!r}: must be a probability in [0, 1]")
        if self.base.image_size != self.image_size:
            object.__setattr__(self, "base", _with_image_size(self.base, self.image_size))
        if self.width <= self.base.z_channels:
            raise ConfigError(f"ALITConfig: width {self.width} must exceed the base tokenizer's z_channels "
                              f"{self.base.z_channels} (the patch embedding fills the remaining channels)")
        if self.decoder_max_tokens and self.decoder_max_tokens < self.max_tokens:
            raise ConfigError(f"ALITConfig.decoder_max_tokens={self.decoder_max_tokens} < max tokens {self.max_tokens}")

    @property
    def patch_size(self) -> int:
        return self.base.downsample_factor

    @property
    def grid_size(self) -> int:
        return self.base.latent_size

    @property
    def num_image_tokens(self) -> int:
        return self.grid_size**2

    @property
    def decoder_positions(self) -> int:
        return self.decoder_max_tokens or self.max_tokens

    @property
    def max_tokens(self) -> int:
        return self.tokens_per_iter * self.max_iters

    @property
    def token_counts(self) -> list[int]:
        """Token count after each iteration: ``[n0, 2 n0, ..., T n0]``."""
        return [self.tokens_per_iter * (k + 1) for k in range(self.max_iters)]

    @property
    def token_range(self) -> str:
        return f"{self.tokens_per_iter}..{self.max_tokens}"

    @property
    def vit(self) -> ViTConfig:
        return ViTConfig(self.width, self.depth, self.heads, self.mlp_ratio)

    def quantizer_summary(self) -> str:
        q = f"VQ {self.codebook_size}x{self.token_dim}" if self.quantized else f"continuous {self.token_dim}-d"
        return f"{q}, {self.token_counts[0]}..{self.max_tokens} tokens"


def _with_image_size(base: MaskGITVQGANConfig, size: int) -> MaskGITVQGANConfig:
    from dataclasses import replace

    return replace(base, image_size=size)
