"""KL-16 VAE: the LDM-style KL autoencoder as released by MAR ("kl16"), ALIT's alternative base.

Architecture (Rombach et al. 2022, the LDM ``AutoencoderKL``): convolutional
encoder ``ch`` 128, ``ch_mult`` (1, 1, 2, 2, 4), ``num_res_blocks`` residual blocks per level in the
encoder and ``num_res_blocks + 1`` in the decoder, single-head self-attention in both mid blocks and
after each residual block of the levels in ``encoder_attn_levels`` / ``decoder_attn_levels`` (MAR's
kl16: the encoder's lowest-resolution level only), downsampling by a stride-2 3x3 conv after a
(0, 1, 0, 1) zero pad, nearest x2 upsampling + 3x3 conv; ``quant_conv`` (2E -> 2E, 1x1) turns the
encoder output into the moments (mean | logvar) of a diagonal Gaussian, ``post_quant_conv``
(E -> E, 1x1) precedes the decoder. Unlike the MaskGIT-VQGAN (``maskgit_vqgan.py``), every conv
has a bias and residual blocks add the (1x1-projected) input. ``state_dict()`` keys are the
official LDM/MAR names, so MAR's ``kl16.ckpt`` and ALIT's ``base_tokenizer.vae.*`` map 1:1.

Latents are *scaled*: ``encode_latents`` returns ``latent_scale * z`` (ALIT: 0.2325), and
``decode_latents`` divides by the scale first unless told not to (ALIT's official decoding does
not: see ``ALITConfig.vae_rescale_decode``).

Shapes (f = 2 ** (len(channel_mult) - 1), h = H / f, w = W / f, E = embed_dim):
    images  B x 3 x H x W float in [0, 1]   moments B x 2E x h x w   latents B x E x h x w
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from adatok.errors import ConfigError
from adatok.layers.norm import GroupNorm
from adatok.hub_mixin import HubMixin
from adatok.pixel.layout import GN_GROUPS as _GN_GROUPS
from adatok.pixel.layout import ConvLayout
from adatok.quantizers.kl import DiagonalGaussian
from adatok.checks import check_images
from adatok.errors import InputError
from adatok.interface import Tokenizer
from adatok.types import Tokens


@dataclass(frozen=True)
class KLVAEConfig(ConvLayout):
    """Architecture of the KL autoencoder; the defaults are MAR's kl16 at 256 px as ALIT uses it.

    num_res_blocks:      residual blocks per encoder level (the decoder has one more per level).
    encoder_attn_levels: encoder levels (0 = full resolution) with an attention block after each
                         residual block; kl16: the lowest-resolution level (16 x 16 at 256 px).
    decoder_attn_levels: the same for the decoder (kl16: none).
    embed_dim:           latent channels E (= the encoder's z channels, as in MAR).
    latent_scale:        multiplies the latents ``encode_latents`` returns (ALIT: 0.2325).
    signed_pixels:       the network works on [-1, 1] pixels (MAR's convention: images are mapped
                         2x-1 in and (y+1)/2 out). False = it reads and writes [0, 1] pixels as
                         they are, as ALIT feeds it (its wrapper applies no normalisation, and the
                         VAE is fine-tuned that way in ALIT's stage 2).
    """

    base_channels: int = 128
    channel_mult: tuple = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    encoder_attn_levels: tuple = (4,)
    decoder_attn_levels: tuple = ()
    embed_dim: int = 16
    latent_scale: float = 0.2325
    signed_pixels: bool = False
    image_size: int = 256

    def __post_init__(self):
        for name in ("encoder_attn_levels", "decoder_attn_levels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.check_layout(("base_channels", "num_res_blocks", "embed_dim", "image_size"))
        levels = range(len(self.channel_mult))
        for name in ("encoder_attn_levels", "decoder_attn_levels"):
            if not all(isinstance(i, int) and i in levels for i in getattr(self, name)):
                raise ConfigError(f"KLVAEConfig.{name}={getattr(self, name)!r}: must be level indices in "
                                  f"0..{len(self.channel_mult) - 1}")
        s = self.latent_scale
        if not (isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0):
            raise ConfigError(f"KLVAEConfig.latent_scale={s!r}: must be a positive number")
        self.check_image_size()

    def quantizer_summary(self) -> str:
        return f"KL {self.embed_dim} ch"


def _norm(channels: int) -> nn.GroupNorm:
    return GroupNorm(_GN_GROUPS, channels, eps=1e-6)  # precise in channels_last too (layers/norm.py)


def _silu(x: torch.Tensor) -> torch.Tensor:
    # In-place only without autograd (SiLU's backward needs its input).
    return F.silu(x, inplace=not torch.is_grad_enabled())


class ResnetBlock(nn.Module):
    """GN-SiLU-conv3x3, GN-SiLU-(dropout 0)-conv3x3, plus the input (through a 1x1 ``nin_shortcut``
    when the channel count changes). All convs have biases."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_silu(self.norm1(x)))
        h = self.conv2(_silu(self.norm2(h)))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions (1x1-conv q, k, v, proj_out; scale c^-1/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (conv(n).flatten(2).transpose(1, 2) for conv in (self.q, self.k, self.v))  # B x hw x c
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj_out(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after zero-padding right and bottom by one (LDM's asymmetric padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution: ``block`` (residual blocks), ``attn`` (one per block, or none), and the
    resampler (``downsample`` in the encoder, ``upsample`` in the decoder; absent at the end)."""

    def __init__(self, cin: int, cout: int, num_blocks: int, attn: bool):
        super().__init__()
        self.block = nn.ModuleList([ResnetBlock(cin if j == 0 else cout, cout) for j in range(num_blocks)])
        self.attn = nn.ModuleList([AttnBlock(cout) for _ in range(num_blocks)] if attn else [])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[j](h)
        return h


class _Mid(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class KLEncoder(nn.Module):
    """images -> 2E-channel encoder output (before ``quant_conv``). Shapes: B x 3 x H x W -> B x 2E x h x w."""

    def __init__(self, config: KLVAEConfig):
        super().__init__()
        c, mult = config.base_channels, config.channel_mult
        in_mult = (1,) + mult
        self.conv_in = nn.Conv2d(3, c, 3, padding=1)
        self.down = nn.ModuleList()
        for i, m in enumerate(mult):
            level = _Level(c * in_mult[i], c * m, config.num_res_blocks, i in config.encoder_attn_levels)
            if i < len(mult) - 1:
                level.downsample = Downsample(c * m)
            self.down.append(level)
        top = c * mult[-1]
        self.mid = _Mid(top)
        self.norm_out = _norm(top)
        self.conv_out = nn.Conv2d(top, 2 * config.embed_dim, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(images)
        for level in self.down:
            h = level(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(_silu(self.norm_out(h)))


class KLDecoder(nn.Module):
    """E-channel latents (after ``post_quant_conv``) -> pixels. ``up[i]`` is indexed by level and
    run from the top level down. Shapes: B x E x h x w -> B x 3 x H x W (unclamped)."""

    def __init__(self, config: KLVAEConfig):
        super().__init__()
        c, mult = config.base_channels, config.channel_mult
        top = c * mult[-1]
        self.conv_in = nn.Conv2d(config.embed_dim, top, 3, padding=1)
        self.mid = _Mid(top)
        cins = [c * m for m in mult[1:]] + [top]  # level i reads level i+1's output
        self.up = nn.ModuleList()
        for i, m in enumerate(mult):
            level = _Level(cins[i], c * m, config.num_res_blocks + 1, i in config.decoder_attn_levels)
            if i > 0:
                level.upsample = Upsample(c * m)
            self.up.append(level)
        self.norm_out = _norm(c * mult[0])
        self.conv_out = nn.Conv2d(c * mult[0], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            h = level(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(_silu(self.norm_out(h)))


class KLVAE(HubMixin, Tokenizer):
    """The KL autoencoder (encoder, diagonal-Gaussian posterior, decoder) with the official LDM layout.

    Also a tokenizer of its own (``encode`` -> continuous ``Tokens`` of h*w row-major latents,
    ``decode``, ``reconstruct``): deterministic (posterior mean) unless ``sample=True``.
    """

    def __init__(self, config: Optional[KLVAEConfig] = None):
        super().__init__()
        config = config if config is not None else KLVAEConfig()
        self.config = config
        self.encoder = KLEncoder(config)
        self.decoder = KLDecoder(config)
        self.quant_conv = nn.Conv2d(2 * config.embed_dim, 2 * config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.embed_dim, 1)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def max_tokens(self) -> int:
        return self.config.num_tokens

    @property
    def codebook_size(self) -> None:
        return None  # continuous latents

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [0, 1] -> (mean, logvar clamped to [-30, 20]), each B x E x h x w."""
        x = images * 2.0 - 1.0 if self.config.signed_pixels else images
        moments = self.quant_conv(self.encoder(x.to(self.quant_conv.weight.dtype)))
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode_latents(self, images: torch.Tensor, sample: bool = False,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Images -> ``latent_scale * z``, z the posterior mean or (``sample``) a draw
        ``mean + exp(logvar / 2) * eps`` with eps ~ N(0, I) from ``generator``. B x E x h x w."""
        mean, logvar = self.posterior(images)
        return DiagonalGaussian.draw(mean, logvar, sample, generator) * self.config.latent_scale

    def decode_latents(self, z: torch.Tensor, unscale: bool = True) -> torch.Tensor:
        """Scaled latents B x E x h x w -> images B x 3 x H x W (unclamped). ``unscale=False``
        feeds ``z`` to the decoder without dividing by ``latent_scale`` (ALIT's official quirk)."""
        if unscale:
            z = z / self.config.latent_scale
        y = self.decoder(self.post_quant_conv(z.to(self.post_quant_conv.weight.dtype)))
        return (y + 1.0) / 2.0 if self.config.signed_pixels else y

    def encode(self, images: torch.Tensor, sample: bool = False, generator: Optional[torch.Generator] = None) -> Tokens:
        """Images -> ``Tokens`` (no ids; codes = scaled latents B x (h*w) x E; latents = mean | logvar)."""
        images = check_images(images, self.image_size, self)
        mean, logvar = self.posterior(images)
        z = DiagonalGaussian.draw(mean, logvar, sample, generator) * self.config.latent_scale
        lengths = torch.full((images.shape[0],), self.num_tokens, dtype=torch.long, device=images.device)
        return Tokens(ids=None, lengths=lengths, codes=z.flatten(2).transpose(1, 2),
                      latents=torch.cat([mean, logvar], 1).flatten(2).transpose(1, 2))

    def decode(self, tokens: Tokens, clamp: bool = True) -> torch.Tensor:
        side = self.config.latent_size
        images = self.decode_latents(tokens.codes.transpose(1, 2).unflatten(2, (side, side)))
        return images.clamp(0, 1) if clamp else images

    def decode_ids(self, ids: torch.Tensor, lengths: Optional[torch.Tensor] = None, clamp: bool = True) -> torch.Tensor:
        raise InputError("the KL-VAE has continuous latents (no ids): decode its Tokens instead of ids")

    def last_layer(self) -> torch.Tensor:
        """Weight of the layer that makes the pixels (for the adaptive GAN weight)."""
        return self.decoder.conv_out.weight

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior mean (unclamped)."""
        return self.decode_latents(self.encode_latents(images))


__all__ = ["KLVAE", "KLVAEConfig", "KLEncoder", "KLDecoder"]
