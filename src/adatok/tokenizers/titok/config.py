"""TiTok architecture configuration (frozen dataclasses; YAML is only for training runs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import ConfigError
from ...layers.init import check_init
from ...layers.vit import ViTConfig
from ...pixel.maskgit_vqgan import MaskGITVQGANConfig


VIT_SIZES = {
    "small": ViTConfig(512, 8, 8),
    "base": ViTConfig(768, 12, 12),
    "large": ViTConfig(1024, 24, 16),
}


@dataclass(frozen=True)
class TiTokConfig:
    """A TiTok tokenizer.

    quantizer:   "vq" (nearest code, ``codebook_size`` x ``token_dim``) or "kl" (continuous,
                 diagonal Gaussian with ``token_dim`` channels; the encoder emits 2x that).
    decoder_head: "proxy" — the two-stage design of the paper: the decoder predicts logits over
                 the MaskGIT-VQGAN's 1024 codes at every 2D position; soft codes go through the
                 MaskGIT-VQGAN pixel decoder (``pixel``). "pixels" — a linear patch head to RGB
                 followed by a 3x3 conv (the later single-stage models).
    legacy_reshape: the official s128/b64/l32 encoders *reshape* (not transpose) the B x K x W
                 latent outputs to B x W x K before the 1x1 projection (official code). True for those
                 checkpoints; new models should leave it False.
    init:        weight init when training from scratch: "official" (trunc-normal 0.02) or
                 "fan_in" (std fan_in^-1/2; for small widths, see layers/init.py).
    """

    image_size: int = 256
    patch_size: int = 16
    decoder_patch_size: int = 16
    num_tokens: int = 32
    encoder: ViTConfig = field(default_factory=lambda: VIT_SIZES["large"])
    decoder: ViTConfig = field(default_factory=lambda: VIT_SIZES["large"])
    quantizer: str = "vq"
    codebook_size: int = 4096
    token_dim: int = 12
    l2_norm: bool = True
    commitment_cost: float = 0.25
    restart_dead_codes: bool = False  # re-seed unused codes while training (VQ from scratch)
    kl_weight: float = 1e-6
    decoder_head: str = "proxy"
    legacy_reshape: bool = False
    init: str = "official"
    pixel: MaskGITVQGANConfig = field(default_factory=MaskGITVQGANConfig)

    def __post_init__(self):
        check_init(self.init, "TiTokConfig")
        if self.quantizer not in ("vq", "kl"):
            raise ConfigError(f"quantizer must be 'vq' or 'kl', got {self.quantizer!r}")
        if self.decoder_head not in ("proxy", "pixels"):
            raise ConfigError(f"decoder_head must be 'proxy' or 'pixels', got {self.decoder_head!r}")
        for name in ("patch_size", "decoder_patch_size"):
            p = getattr(self, name)
            if p < 1 or self.image_size % p:
                raise ConfigError(f"image_size {self.image_size} is not divisible by {name} {p}")
        if self.num_tokens < 1 or self.token_dim < 1 or self.codebook_size < 2:
            raise ConfigError("num_tokens, token_dim must be >= 1 and codebook_size >= 2")
        if self.decoder_head == "proxy":
            factor = 2 ** (len(self.pixel.channel_mult) - 1)
            if self.image_size // self.decoder_patch_size * factor != self.image_size:
                raise ConfigError(
                    f"the proxy-code head needs decoder_patch_size ({self.decoder_patch_size}) equal to the "
                    f"pixel decoder's upsampling factor ({factor})"
                )
            if self.pixel.image_size != self.image_size:
                raise ConfigError(
                    f"pixel.image_size {self.pixel.image_size} differs from image_size {self.image_size}"
                )

    def quantizer_summary(self) -> str:
        if self.quantizer == "kl":
            return f"KL {self.token_dim}ch"
        return f"VQ {self.codebook_size}x{self.token_dim}" + (", l2" if self.l2_norm else "")

    @property
    def latent_channels(self) -> int:
        """Channels the encoder emits per token: ``token_dim`` (VQ), or mean ‖ logvar (KL)."""
        return self.token_dim * (2 if self.quantizer == "kl" else 1)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def decoder_grid_size(self) -> int:
        return self.image_size // self.decoder_patch_size
