"""ALIT architecture configuration (frozen dataclass; YAML is only for training runs). The sizes,
modules, halting rule and 1D quantisation follow the paper (Duggal et al. 2025) and its official
code (github.com/ShivamDuggal4/adaptive-length-tokenizer)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import ConfigError
from ...layers.init import check_init
from ...pixel.kl_vae import KLVAEConfig
from ...pixel.maskgit_vqgan import MaskGITVQGANConfig
from ...layers.vit import ViTConfig
from .halting import HALTING_RULES, check_halting  # noqa: F401 (HALTING_RULES re-exported)

BASE_KINDS = {"vqgan": MaskGITVQGANConfig, "vae": KLVAEConfig}
VAE_SAMPLING = ("training", "always", "never")

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
    """An ALIT tokenizer over a 2D base tokenizer ``base``: a MaskGIT-architecture VQGAN
    (``base_kind="vqgan"``, ``base`` a ``MaskGITVQGANConfig``) or the KL-16 VAE (``base_kind="vae"``,
    ``base`` a ``KLVAEConfig``).

    Every iteration k = 0..max_iters-1 appends ``tokens_per_iter`` latent tokens, re-encodes all of
    them with the image tokens, and decodes the ``tokens_per_iter * (k+1)`` 1D tokens to logits over
    the base tokenizer's codes at each 2D position (VQGAN), or regresses the base's scaled latents
    there (VAE).

    quantized:     1D tokens are vector-quantized (``codebook_size`` x ``token_dim``, l2-normalised
                   codes) — the released "quantized latents" models; False = "continuous latents"
                   (the decoder reads the ``token_dim`` factorised latents unquantized).
    halting:       dynamic halting of well-reconstructed 2D tokens after each iteration, with
                   ``halting_threshold``: "bernoulli" (the official rule, random), "threshold"
                   (deterministic; our default) or "off"; VAE base: must be "off". See
                   ``halting.py``.
    decoder_max_tokens: rows of the decoder's latent position table (official: 256); 0 (default)
                   means ``tokens_per_iter * max_iters``.
    restart_dead_codes: re-seed unused 1D codes while training (for training from scratch).
    init:          weight init when training from scratch: "official" (trunc-normal 0.02) or
                   "fan_in" (std fan_in^-1/2; for small widths, see layers/init.py).
    base_kind:     "vqgan" (default) or "vae"; says which config ``base`` holds (and lets
                   config.json round-trip it).
    vae_sampling:  VAE base only — when the 2D tokens are a posterior *sample*
                   ``latent_scale * (mean + std * eps)`` rather than ``latent_scale * mean``:
                   "training" (default: sample in training mode, as the official training; the
                   mean in eval mode, so inference is deterministic and batch-independent),
                   "always" (the official code, also at inference; seed it with a
                   ``torch.Generator``), "never".
    vae_rescale_decode: VAE base only — divide the predicted latents by ``latent_scale`` before
                   the VAE decoder. False (default) is the official behaviour: the scaled latents go
                   to the decoder as they are (the released VAE decoders were fine-tuned that way
                   in stage 2); True is the consistent choice for an un-fine-tuned VAE.
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
    base_kind: str = "vqgan"
    vae_sampling: str = "training"
    vae_rescale_decode: bool = False
    base: MaskGITVQGANConfig | KLVAEConfig = field(default_factory=MaskGITVQGANConfig)

    def __post_init__(self):
        check_init(self.init, "ALITConfig")
        for name in ("image_size", "width", "depth", "heads", "tokens_per_iter", "max_iters", "token_dim",
                     "codebook_size"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                raise ConfigError(f"ALITConfig.{name}={v!r}: must be a positive int")
        if self.width % self.heads:
            raise ConfigError(f"ALITConfig: width {self.width} is not divisible by heads {self.heads}")
        check_halting(self.halting, self.halting_threshold)
        self._check_base()
        if self.base.image_size != self.image_size:
            object.__setattr__(self, "base", _with_image_size(self.base, self.image_size))
        if self.width <= self.token_channels:
            raise ConfigError(f"ALITConfig: width {self.width} must exceed the base tokenizer's z_channels "
                              f"{self.token_channels} (the patch embedding fills the remaining channels)")
        if self.decoder_max_tokens and self.decoder_max_tokens < self.max_tokens:
            raise ConfigError(f"ALITConfig.decoder_max_tokens={self.decoder_max_tokens} < max tokens {self.max_tokens}")

    def _check_base(self) -> None:
        from ...config_utils import config_from_dict

        if self.base_kind not in BASE_KINDS:
            raise ConfigError(f"ALITConfig.base_kind={self.base_kind!r}: choose one of {sorted(BASE_KINDS)}")
        cls = BASE_KINDS[self.base_kind]
        if isinstance(self.base, dict):  # from config.json
            object.__setattr__(self, "base", config_from_dict(cls, self.base))
        if not isinstance(self.base, cls):
            raise ConfigError(f"ALITConfig: base_kind={self.base_kind!r} needs base={cls.__name__}(...), got "
                              f"{type(self.base).__name__} (use the alit_*_vae presets for a VAE base)")
        check_halting(self.halting, self.halting_threshold, can_halt=not self.is_vae)
        if self.vae_sampling not in VAE_SAMPLING:
            raise ConfigError(f"ALITConfig.vae_sampling={self.vae_sampling!r}: choose one of {VAE_SAMPLING}")

    @property
    def is_vae(self) -> bool:
        return self.base_kind == "vae"

    @property
    def token_channels(self) -> int:
        """C: channels of the base tokenizer's 2D tokens (VQGAN z_channels, VAE embed_dim)."""
        return self.base.embed_dim if self.is_vae else self.base.z_channels

    @property
    def head_outputs(self) -> int:
        """Outputs of the decoder head per 2D position: base codebook logits, or VAE latents."""
        return self.base.embed_dim if self.is_vae else self.base.codebook_size

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


def _with_image_size(base, size: int):
    from dataclasses import replace

    return replace(base, image_size=size)
