"""Conv autoencoders used as teachers / pixel decoders (MaskGIT-VQGAN)."""

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
