"""Training losses: reconstruction, proxy-code cross-entropy, KL, perceptual (LPIPS / ConvNeXt-S)
and adversarial (TiTok's patch discriminator, hinge, LeCam, adaptive weight).

Images are ``B x 3 x H x W`` in [0, 1] everywhere; every loss returns float32.
"""

from .gan import (
    BlurPool,
    GANLoss,
    LeCam,
    PatchDiscriminator,
    TamingPatchDiscriminator,
    adaptive_gan_weight,
    generator_adv_loss,
    hinge_d_loss,
)
from .kl import kl_loss
from .perceptual import LPIPS, ConvNeXtPerceptual, PerceptualLoss, WeightsNotFoundError
from .reconstruction import proxy_code_loss, reconstruction_loss

__all__ = [
    "reconstruction_loss",
    "proxy_code_loss",
    "kl_loss",
    "BlurPool",
    "PatchDiscriminator",
    "TamingPatchDiscriminator",
    "hinge_d_loss",
    "generator_adv_loss",
    "LeCam",
    "adaptive_gan_weight",
    "GANLoss",
    "LPIPS",
    "ConvNeXtPerceptual",
    "PerceptualLoss",
    "WeightsNotFoundError",
]
