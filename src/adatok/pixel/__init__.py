"""Conv autoencoders used as teachers / pixel decoders / base tokenizers (MaskGIT-VQGAN, KL-16 VAE)."""

from adatok.pixel.kl_vae import KLVAE, KLVAEConfig
from adatok.pixel.maskgit_vqgan import (
    Conv2dSame,
    MaskGITVQGAN,
    MaskGITVQGANConfig,
    MaskGITVQGANOutput,
    PixelDecoder,
    PixelEncoder,
    ResnetBlock,
    ids_to_grid,
    same_padding,
    soft_codes,
)

__all__ = [
    "KLVAE",
    "KLVAEConfig",
    "Conv2dSame",
    "MaskGITVQGAN",
    "MaskGITVQGANConfig",
    "MaskGITVQGANOutput",
    "PixelDecoder",
    "PixelEncoder",
    "ResnetBlock",
    "ids_to_grid",
    "same_padding",
    "soft_codes",
]
