"""TiTok: a ViT encoder reads image patches plus K learned latent tokens and keeps only the latent
outputs (the 1D tokens); a ViT decoder reads the quantized tokens plus a grid of mask tokens and
rebuilds the 2D image (directly, or as proxy codes of a MaskGIT-VQGAN). Yu et al., "An Image is
Worth 32 Tokens for Reconstruction and Generation", NeurIPS 2024.

The quantizer (``VectorQuantizer`` or ``DiagonalGaussian``, one call signature) and the output path
(``heads.PixelOutput`` or ``heads.ProxyCodeOutput``) are chosen once, in ``__init__``, from the
config; nothing after that asks which kind it holds.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ...layers import Transformer
from ...pixel.maskgit_vqgan import PixelDecoder
from ...quantizers import DiagonalGaussian, VectorQuantizer
from ...types import Tokens, TokenizerOutput
from ...checks import check_full_lengths, check_ids, check_images
from ...errors import InputError
from ...interface import Tokenizer
from ...layers.heads import ProxyCodeHead
from ...hub_mixin import HubMixin
from ...layers.init import trunc_normal_init_
from .config import TiTokConfig
from .heads import PixelHead, PixelOutput, ProxyCodeOutput


def _embedding(*shape: int) -> nn.Parameter:
    # Official init for class/positional/latent/mask tokens: width^-0.5 * N(0, 1).
    return nn.Parameter(shape[-1] ** -0.5 * torch.randn(*shape))


class TiTokEncoder(nn.Module):
    """Shapes: images ``B x 3 x H x W``, latent_tokens ``K x W`` -> latents ``B x K x C_out``."""

    def __init__(self, config: TiTokConfig):
        super().__init__()
        vit, w = config.encoder, config.encoder.width
        self.legacy_reshape = config.legacy_reshape
        out = config.latent_channels
        self.patch_embed = nn.Conv2d(3, w, config.patch_size, stride=config.patch_size)
        self.cls_token = _embedding(1, w)
        self.pos_embed = _embedding(config.grid_size**2 + 1, w)
        self.latent_pos_embed = _embedding(config.num_tokens, w)
        self.norm_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, vit.depth, vit.heads, vit.mlp_ratio)
        self.norm_post = nn.LayerNorm(w)
        self.to_tokens = nn.Linear(w, out)

    def forward(self, images: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        patches = self.patch_embed(images).flatten(2).transpose(1, 2) + self.pos_embed[1:]
        cls = (self.cls_token + self.pos_embed[:1]).expand(b, -1, -1)
        latents = (latent_tokens + self.latent_pos_embed).expand(b, -1, -1)
        # [cls, patches, latents]; the order is irrelevant numerically (no mask, positions added
        # before concatenation) but kept as the official code for readability of comparisons.
        k = latents.shape[1]
        x = self.transformer(self.norm_pre(torch.cat([cls, patches, latents], dim=1)), keep=slice(-k, None))
        x = self.norm_post(x)
        if self.legacy_reshape:
            # Official s128/b64/l32 quirk: the contiguous B x K x W block is re-read as B x W x K,
            # so "token" k gathers fragments of several outputs. The released weights depend on it.
            x = x.reshape(b, x.shape[2], k).transpose(1, 2)
        return self.to_tokens(x)


class TiTokDecoder(nn.Module):
    """Shapes: codes ``B x K x C`` -> ``B x G^2 x V`` (proxy logits) or ``B x 3 x H x W`` (pixels);
    ``head`` is a ``ProxyCodeHead`` or a ``PixelHead``."""

    def __init__(self, config: TiTokConfig):
        super().__init__()
        vit, w = config.decoder, config.decoder.width
        self.num_cells = config.decoder_grid_size**2
        self.embed = nn.Linear(config.token_dim, w)
        self.cls_token = _embedding(1, w)
        self.pos_embed = _embedding(self.num_cells + 1, w)
        self.mask_token = _embedding(1, 1, w)
        self.latent_pos_embed = _embedding(config.num_tokens, w)
        self.norm_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, vit.depth, vit.heads, vit.mlp_ratio)
        self.norm_post = nn.LayerNorm(w)
        if config.decoder_head == "proxy":
            self.head = ProxyCodeHead(w, config.pixel.codebook_size)
        else:
            self.head = PixelHead(w, config.decoder_patch_size)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        b, k, _ = codes.shape
        latents = self.embed(codes) + self.latent_pos_embed[:k]
        masks = (self.mask_token[0] + self.pos_embed[1:]).expand(b, -1, -1)
        cls = (self.cls_token + self.pos_embed[:1]).expand(b, -1, -1)
        x = self.transformer(self.norm_pre(torch.cat([cls, masks, latents], dim=1)), keep=slice(1, 1 + self.num_cells))
        return self.head(self.norm_post(x))


class TiTok(HubMixin, Tokenizer):
    """The TiTok tokenizer. Images are ``B x 3 x H x W`` float in [0, 1].

    >>> tok = TiTok(TiTokConfig(...)); t = tok.encode(images); recon = tok.decode(t)
    """

    def __init__(self, config: TiTokConfig):
        super().__init__()
        self.config = config
        self.latent_tokens = _embedding(config.num_tokens, config.encoder.width)
        self.encoder = TiTokEncoder(config)
        self.quantizer = _quantizer(config)
        self.decoder = TiTokDecoder(config)
        if isinstance(self.decoder.head, PixelHead):
            self.output = PixelOutput(self.decoder.head)
        else:
            self.pixel_codebook = nn.Embedding(config.pixel.codebook_size, config.pixel.z_channels)
            self.pixel_decoder = PixelDecoder(config.pixel)
            self.output = ProxyCodeOutput(self.pixel_codebook, self.pixel_decoder, config.decoder_grid_size)
        self.apply(lambda m: _init_weights(m, config.init))
        # The pixel decoder's memory format is chosen per call (pixel/maskgit_vqgan.py): NCHW for
        # float32 on the CPU (precise), channels_last on GPUs and under autocast.

    @property
    def max_tokens(self) -> int:
        return self.config.num_tokens

    @property
    def codebook_size(self) -> Optional[int]:
        return self.quantizer.codebook_size

    @property
    def image_size(self) -> int:
        return self.config.image_size

    # ---------------------------------------------------------------- encode
    def _encode(self, images: torch.Tensor, sample: bool = False):
        latents = self.encoder(images, self.latent_tokens)
        q = self.quantizer(latents, sample=sample)
        lengths = torch.full((images.shape[0],), self.num_tokens, dtype=torch.long, device=images.device)
        return Tokens(ids=q.ids, lengths=lengths, codes=q.codes, latents=latents), q

    def encode(self, images: torch.Tensor, sample: bool = False) -> Tokens:
        """Images -> tokens. For KL models ``sample=True`` draws from the posterior instead of
        returning its mean."""
        images = check_images(images, self.image_size, self)
        return self._encode(images, sample)[0]

    # ---------------------------------------------------------------- decode
    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Proxy-code logits ``B x V x G x G`` of a two-stage model (the stage-1 training target)."""
        if not self.output.has_logits:
            raise InputError("decode_logits is only defined for two-stage (decoder_head='proxy') models")
        return self.output.logits(self.decoder(codes))

    def _decode(self, codes: torch.Tensor, decode_pixels: bool = True):
        """Codes -> (proxy logits or None, unclamped images or None when not ``decode_pixels``)."""
        out = self.decoder(codes)
        logits = self.output.logits(out)
        return logits, (self.output.pixels(out, logits) if decode_pixels else None)

    def decode(self, tokens: Tokens | torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Tokens (or their ``B x K x C`` code vectors) -> images ``B x 3 x H x W``."""
        codes = tokens.codes if isinstance(tokens, Tokens) else tokens
        images = self._decode(codes)[1]
        return images.clamp(0, 1) if clamp else images

    def decode_ids(self, ids: torch.Tensor, lengths: Optional[torch.Tensor] = None, clamp: bool = True) -> torch.Tensor:
        """Token ids ``B x K`` (or ``B x 1 x K``) -> images ``B x 3 x H x W``. A fixed-length
        tokenizer reads all K ids: ``lengths``, if given, must be K for every image."""
        if not self.discrete:
            raise InputError("this tokenizer has continuous tokens (no ids): decode its Tokens instead of ids")
        ids = check_ids(ids, self.num_tokens)
        check_full_lengths(lengths, ids)
        return self.decode(self.quantizer.lookup(ids), clamp=clamp)

    # ---------------------------------------------------------------- train
    def forward(self, images: torch.Tensor, sample: bool = True, decode_pixels: bool = True) -> TokenizerOutput:
        """Training forward: reconstruction (unclamped), proxy logits when the head has them,
        and the quantizer's loss. KL models sample from the posterior here.

        ``decode_pixels=False`` stops at the proxy logits (stage 1 trains on them alone). When the
        encoder is frozen (stage 2: ``latent_tokens`` does not require grad) it runs without
        autograd, so no activations are kept for it.
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.latent_tokens.requires_grad):
            tokens, q = self._encode(images, sample=sample)
        logits, images_out = self._decode(tokens.codes, decode_pixels or not self.output.has_logits)
        return TokenizerOutput(images=images_out, logits=logits, tokens=tokens, quantizer_loss=q.loss, stats=q.stats)

    def last_layer(self) -> torch.Tensor:
        """Weight of the layer that makes the pixels (for the adaptive GAN weight)."""
        return self.output.last_layer()


def _quantizer(config: TiTokConfig) -> nn.Module:
    """The config's quantizer (the one place that reads ``config.quantizer``)."""
    if config.quantizer == "kl":
        return DiagonalGaussian(config.token_dim, config.kl_weight)
    return VectorQuantizer(config.codebook_size, config.token_dim, config.commitment_cost, config.l2_norm,
                           restart_dead_codes=config.restart_dead_codes)


def _init_weights(m: nn.Module, scheme: str) -> None:
    # Trunc-normal linear/conv weights (official: std 0.02; layers/init.py), zero bias, LayerNorm (1, 0).
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        trunc_normal_init_(m, scheme)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
