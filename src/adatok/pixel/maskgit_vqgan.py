"""MaskGIT-VQGAN: the 2D conv VQ autoencoder TiTok uses as proxy-code teacher and pixel decoder.

Layout and quirks follow the official checkpoint ``maskgit-vqgan-imagenet-f16-256.bin`` (its keys:
``tests/reference/keys/``): ``MaskGITVQGAN().state_dict()`` has exactly the official keys, and ``PixelDecoder``
alone has the official ``decoder.*`` keys without the prefix (TiTok's ``pixel_decoder.*``).

Shapes (f = 2 ** (len(channel_mult) - 1), h = H / f, w = W / f, z = z_channels, V = codebook_size):
    images  B x 3 x H x W float in [0, 1] (no normalisation inside)
    latents B x z x h x w          ids B x (h*w) int64, row-major
    probs   B x V x h x w (softmax over V) for the soft-code path
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from adatok.errors import ConfigError, InputError
from adatok.layers.norm import GroupNorm
from adatok.layers.conv import Conv2dSame, same_padding  # noqa: F401 (re-exported)
from adatok.hub_mixin import HubMixin
from adatok.pixel.layout import ConvLayout
from adatok.checks import check_full_lengths, check_images
from adatok.interface import Tokenizer
from adatok.quantizers.vq import VectorQuantizer
from adatok.types import Tokens


@dataclass(frozen=True)
class MaskGITVQGANConfig(ConvLayout):
    """Architecture of the MaskGIT-VQGAN; the defaults are the official (fixed) f16 model."""

    base_channels: int = 128
    channel_mult: tuple = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    codebook_size: int = 1024
    commitment_cost: float = 0.25
    image_size: int = 256
    norm_groups: int = 32  # GroupNorm groups (official 32); see layout.py before shrinking base_channels

    def __post_init__(self):
        self.check_layout(("base_channels", "num_res_blocks", "z_channels", "codebook_size", "image_size",
                           "norm_groups"))
        beta = self.commitment_cost
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ConfigError(f"MaskGITVQGANConfig.commitment_cost={beta!r}: must be a finite number >= 0")
        self.check_image_size()

    def quantizer_summary(self) -> str:
        return f"VQ {self.codebook_size}x{self.z_channels}"


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    # precise for channels_last activations on the CPU (layers/norm.py); official eps 1e-6, not 1e-5
    return GroupNorm(groups, channels, eps=1e-6)


def _silu(x: torch.Tensor) -> torch.Tensor:
    # In-place is only safe without autograd (SiLU's backward needs its input, the GN output).
    return F.silu(x, inplace=not torch.is_grad_enabled())


def _like_weight(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The memory format the convolutions run in: channels_last on GPUs, under autocast and for
    half-precision inputs (faster, and cuDNN's choice for bf16), and whenever the module itself was
    converted with ``.to(memory_format=torch.channels_last)``; NCHW for float32 on the CPU, where
    oneDNN's channels_last convolutions are ~5x and PyTorch's channels_last GroupNorm ~10x less
    precise against float64 (128 channels, inputs of mean/std 4), for the 12-21 % they gain; the
    error grows with the activations' mean and near-tie codes flip (``benchmarks/float32_precision.py``
    measures the whole model per memory format)."""
    fast = (weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()) or \
        x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_autocast_enabled(x.device.type)
    return x.contiguous(memory_format=torch.channels_last) if fast else x.contiguous()


class ResnetBlock(nn.Module):
    """GN-SiLU-conv3x3 twice (no conv biases, dropout 0), then the residual.

    Quirk kept from the original MaskGIT (JAX): when cin != cout the input is DISCARDED and
    "out = h + nin_shortcut(h)" with a 1x1 cout -> cout conv applied to h; the checkpoint's
    nin_shortcut shape (cout, cout, 1, 1) forces it. When cin == cout: out = x + h.
    """

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = Conv2dSame(cin, cout, 3, bias=False)
        self.norm2 = _norm(cout, groups)
        self.conv2 = Conv2dSame(cout, cout, 3, bias=False)
        self.nin_shortcut = Conv2dSame(cout, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_silu(self.norm1(x)))
        h = self.conv2(_silu(self.norm2(h)))
        if self.nin_shortcut is None:
            return h.add_(x)  # h is a fresh conv output nobody saved for backward: in-place is safe
        return self.nin_shortcut(h).add_(h)  # the quirk: shortcut of h, not of x


class _Level(nn.Module):
    """One resolution: ``block`` (num_res_blocks ResnetBlocks, the first maps cin -> cout)."""

    def __init__(self, cin: int, cout: int, num_blocks: int, groups: int, upsample: bool = False):
        super().__init__()
        self.block = nn.ModuleList([ResnetBlock(cin if j == 0 else cout, cout, groups) for j in range(num_blocks)])
        self.upsample_conv = Conv2dSame(cout, cout, 3) if upsample else None


class PixelEncoder(nn.Module):
    """Images -> latents. conv_in (no bias), levels with avg-pool 2x2 after all but the last, mid, GN-SiLU-conv_out 1x1.

    Shapes: images B x 3 x H x W in [0, 1] -> latents B x z x H/f x W/f.
    """

    def __init__(self, config: MaskGITVQGANConfig):
        super().__init__()
        c, mult, g = config.base_channels, config.channel_mult, config.norm_groups
        in_mult = (1,) + mult
        self.conv_in = Conv2dSame(3, c, 3, bias=False)  # the official encoder conv_in has no bias
        self.down = nn.ModuleList([_Level(c * in_mult[i], c * m, config.num_res_blocks, g) for i, m in enumerate(mult)])
        top = c * mult[-1]
        self.mid = nn.ModuleList([ResnetBlock(top, top, g) for _ in range(2)])
        self.norm_out = _norm(top, g)
        self.conv_out = Conv2dSame(top, config.z_channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(_like_weight(images, self.conv_in.weight))
        last = len(self.down) - 1
        for i, level in enumerate(self.down):
            for block in level.block:
                h = block(h)
            if i < last:
                h = F.avg_pool2d(h, kernel_size=2, stride=2)
        for block in self.mid:
            h = block(h)
        return self.conv_out(_silu(self.norm_out(h))).contiguous()


class PixelDecoder(nn.Module):
    """Codes -> images: conv_in (bias), mid, levels L-1..0 (nearest x2 + upsample_conv after all but level 0), out.

    ``up[i]`` is indexed by level (as in the checkpoint) but run from the top level down.
    Shapes: codes B x z x h x w -> images B x 3 x h*f x w*f (unclamped).
    """

    def __init__(self, config: MaskGITVQGANConfig):
        super().__init__()
        c, mult, g = config.base_channels, config.channel_mult, config.norm_groups
        top = c * mult[-1]
        self.conv_in = Conv2dSame(config.z_channels, top, 3)
        self.mid = nn.ModuleList([ResnetBlock(top, top, g) for _ in range(2)])
        cins = [c * m for m in mult[1:]] + [top]  # level i reads level i+1's output (top for the last)
        self.up = nn.ModuleList([_Level(cins[i], c * m, config.num_res_blocks, g, i > 0) for i, m in enumerate(mult)])
        self.norm_out = _norm(c * mult[0], g)
        self.conv_out = Conv2dSame(c * mult[0], 3, 3)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(_like_weight(codes, self.conv_in.weight))
        for block in self.mid:
            h = block(h)
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for block in level.block:
                h = block(h)
            if level.upsample_conv is not None:
                h = level.upsample_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(_silu(self.norm_out(h))).contiguous()


def soft_codes(probs: torch.Tensor, codebook_weight: torch.Tensor) -> torch.Tensor:
    """Expected code vectors under a distribution over the codebook (TiTok's legacy pixel path).

    Shapes: probs B x V x h x w (softmax over V), codebook_weight V x z -> B x z x h x w.
    """
    return torch.einsum("bvhw,vc->bchw", probs, codebook_weight.to(probs.dtype)).contiguous()


def ids_to_grid(ids: torch.Tensor) -> torch.Tensor:
    """B x N (N a perfect square, row-major) or B x h x w -> B x h x w; InputError otherwise."""
    if ids.dim() == 3:
        return ids
    n = ids.shape[-1] if ids.dim() == 2 else -1
    side = math.isqrt(n) if n > 0 else 0
    if side * side != n or n <= 0:
        raise InputError(f"ids of shape {tuple(ids.shape)}: expected B x N with N a perfect square, or B x h x w")
    return ids.reshape(ids.shape[0], side, side)


@dataclass
class MaskGITVQGANOutput:
    """Training forward of MaskGITVQGAN.

    Shapes: images B x 3 x H x W (unclamped); ids B x (h*w) int64; codes B x z x h x w (straight-through);
    latents B x z x h x w (encoder output); quantizer_loss scalar (commitment * beta + codebook term).
    """

    images: torch.Tensor
    ids: torch.Tensor
    codes: torch.Tensor
    latents: torch.Tensor
    quantizer_loss: torch.Tensor


class MaskGITVQGAN(HubMixin, Tokenizer):
    """The MaskGIT-VQGAN (encoder, nearest-neighbour VQ, decoder) with the official state-dict layout.

    Shapes: see the module docstring; ids are row-major over the h x w latent grid.
    """

    def __init__(self, config: MaskGITVQGANConfig | None = None):
        super().__init__()
        config = config if config is not None else MaskGITVQGANConfig()
        self.config = config
        self.encoder = PixelEncoder(config)
        self.decoder = PixelDecoder(config)
        # the shared VQ (key "quantize.embedding.weight"): plain squared-L2 codes, N(0, 1) init
        self.quantize = VectorQuantizer(config.codebook_size, config.z_channels, beta=config.commitment_cost,
                                        l2_norm=False, init="normal")
        # Weights stay NCHW: float32 on the CPU runs in NCHW for precision, other cases switch
        # the activations to channels_last per call (``_like_weight``).

    @property
    def codebook(self) -> torch.Tensor:
        return self.quantize.embedding.weight

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Images B x 3 x H x W in [0, 1] -> continuous latents B x z x h x w."""
        return self.encoder(images)

    def quantize_latents(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codebook row by squared L2 (first index on ties), always in float32
        (``VectorQuantizer.nearest``).

        Shapes: z B x z x h x w -> (ids B x (h*w) int64, codes B x z x h x w float32 codebook rows).
        """
        ids, codes = self.quantize.nearest(z.flatten(2).transpose(1, 2))
        return ids, _grid(codes, z.shape[-1])

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def max_tokens(self) -> int:
        return self.config.latent_size**2

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def encode_ids(self, images: torch.Tensor) -> torch.Tensor:
        """Images B x 3 x H x W in [0, 1] -> ids B x (h*w) int64 (TiTok's stage-1 proxy codes)."""
        return self.quantize_latents(self.encode_latents(images))[0]

    def encode(self, images: torch.Tensor) -> Tokens:
        """The tokenizer API shared with TiTok: images -> ``Tokens`` (ids B x (h*w), row-major;
        codes and latents B x (h*w) x z)."""
        images = check_images(images, self.image_size, self)
        latents = self.encode_latents(images)
        ids, codes = self.quantize_latents(latents)
        lengths = torch.full((images.shape[0],), ids.shape[1], dtype=torch.long, device=ids.device)
        return Tokens(ids=ids, lengths=lengths, codes=codes.flatten(2).transpose(1, 2),
                      latents=latents.flatten(2).transpose(1, 2))

    def decode(self, tokens: Tokens, clamp: bool = True) -> torch.Tensor:
        """``Tokens`` -> images B x 3 x H x W (clamped to [0, 1] unless ``clamp=False``)."""
        side = self.config.latent_size
        images = self.decode_codes(tokens.codes.transpose(1, 2).unflatten(2, (side, side)))
        return images.clamp(0, 1) if clamp else images

    def codes_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids B x N (N square) or B x h x w -> codebook rows B x z x h x w."""
        return F.embedding(ids_to_grid(ids), self.codebook).permute(0, 3, 1, 2).contiguous()

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes B x z x h x w -> images B x 3 x H x W, unclamped."""
        return self.decoder(codes)

    def decode_ids(self, ids: torch.Tensor, lengths: Optional[torch.Tensor] = None, clamp: bool = True) -> torch.Tensor:
        """ids B x N (N square) or B x h x w -> images, clamped to [0, 1] as the official ``decode``
        (unless ``clamp=False``). Fixed length: ``lengths``, if given, must be N for every image."""
        if not isinstance(ids, torch.Tensor):
            raise InputError(f"token ids must be a torch.Tensor, got {type(ids).__name__}")
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
            raise InputError(f"ids have dtype {ids.dtype}: pass integer token ids (int64)")
        grid = ids_to_grid(ids)
        check_full_lengths(lengths, grid.flatten(1))
        v = self.config.codebook_size
        if grid.numel() and bool(((grid < 0) | (grid >= v)).any()):
            raise InputError(f"ids out of range: values must lie in [0, {v}) (codebook_size)")
        images = self.decode_codes(self.codes_from_ids(grid.long()))
        return images.clamp_(0.0, 1.0) if clamp else images

    def decode_soft(self, probs: torch.Tensor) -> torch.Tensor:
        """probs B x V x h x w (softmax over V) -> images B x 3 x H x W (unclamped) via soft codes."""
        return self.decode_codes(soft_codes(probs, self.codebook))

    def last_layer(self) -> torch.Tensor:
        """Weight of the layer that makes the pixels (for the adaptive GAN weight)."""
        return self.decoder.conv_out.weight

    def forward(self, images: torch.Tensor) -> MaskGITVQGANOutput:
        """Training path: encode, quantize with straight-through, decode; VQ loss (commitment *
        beta + codebook term) in float32, by the shared ``VectorQuantizer``."""
        latents = self.encode_latents(images)
        q = self.quantize(latents.flatten(2).transpose(1, 2))
        codes = _grid(q.codes, latents.shape[-1])
        return MaskGITVQGANOutput(self.decode_codes(codes), q.ids, codes, latents, q.loss)


def _grid(tokens: torch.Tensor, width: int) -> torch.Tensor:
    """Row-major B x (h*w) x z -> B x z x h x w (contiguous)."""
    return tokens.transpose(1, 2).unflatten(2, (-1, width)).contiguous()
