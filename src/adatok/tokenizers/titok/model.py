"""TiTok: a ViT encoder reads image patches plus K learned latent tokens and keeps only the latent
outputs (the 1D tokens); a ViT decoder reads the quantized tokens plus a grid of mask tokens and
rebuilds the 2D image (directly, or as proxy codes of a MaskGIT-VQGAN). Spec: specs/titok.md.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ...layers import Transformer
from ...pixel.maskgit_vqgan import PixelDecoder, soft_codes
from ...quantizers import DiagonalGaussian, VectorQuantizer
from ...types import Tokens, TokenizerOutput
from ...checks import check_full_lengths, check_ids, check_images
from ...errors import InputError
from ...interface import Tokenizer
from ...hub_mixin import HubMixin
from ...layers.init import trunc_normal_init_
from .config import TiTokConfig


def _embedding(*shape: int) -> nn.Parameter:
    # Official init for class/positional/latent/mask tokens: width^-0.5 * N(0, 1).
    return nn.Parameter(shape[-1] ** -0.5 * torch.randn(*shape))


class TiTokEncoder(nn.Module):
    """Shapes: images ``B x 3 x H x W``, latent_tokens ``K x W`` -> latents ``B x K x C_out``."""

    def __init__(self, config: TiTokConfig):
        super().__init__()
        vit, w = config.encoder, config.encoder.width
        self.legacy_reshape = config.legacy_reshape
        out = config.token_dim * (2 if config.quantizer == "kl" else 1)
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
        x = self.transformer(self.norm_pre(torch.cat([cls, patches, latents], dim=1)))
        k = latents.shape[1]
        x = self.norm_post(x[:, -k:])
        if self.legacy_reshape:
            # Official s128/b64/l32 quirk: the contiguous B x K x W block is re-read as B x W x K,
            # so "token" k gathers fragments of several outputs. The released weights depend on it.
            x = x.reshape(b, x.shape[2], k).transpose(1, 2)
        return self.to_tokens(x)


class ProxyCodeHead(nn.Module):
    """Two-stage head: per 2D position, logits over the MaskGIT-VQGAN codebook.
    Linear(W -> 2W) -> Tanh -> Linear(2W -> V). Shapes: ``B x N x W`` -> ``B x N x V``."""

    def __init__(self, width: int, vocab: int):
        super().__init__()
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class PixelHead(nn.Module):
    """Single-stage head: Linear(W -> P*P*3) per 2D position, depth-to-space, then a 3x3 conv.
    Channel ``(p1*P + p2)*3 + c`` of cell (row, col) becomes pixel (row*P + p1, col*P + p2), colour c.
    Shapes: ``B x G^2 x W`` -> ``B x 3 x G*P x G*P``."""

    def __init__(self, width: int, patch: int):
        super().__init__()
        self.patch = patch
        self.to_patches = nn.Linear(width, patch * patch * 3)
        self.conv_out = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        g, p = int(round(n**0.5)), self.patch
        x = self.to_patches(x).view(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(b, 3, g * p, g * p)
        return self.conv_out(x)


class TiTokDecoder(nn.Module):
    """Shapes: codes ``B x K x C`` -> ``B x G^2 x V`` (proxy logits) or ``B x 3 x H x W`` (pixels)."""

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
        x = self.transformer(self.norm_pre(torch.cat([cls, masks, latents], dim=1)))
        return self.head(self.norm_post(x[:, 1 : 1 + self.num_cells]))


class TiTok(HubMixin, Tokenizer):
    """The TiTok tokenizer. Images are ``B x 3 x H x W`` float in [0, 1].

    >>> tok = TiTok(TiTokConfig(...)); t = tok.encode(images); recon = tok.decode(t)
    """

    def __init__(self, config: TiTokConfig):
        super().__init__()
        self.config = config
        self.latent_tokens = _embedding(config.num_tokens, config.encoder.width)
        self.encoder = TiTokEncoder(config)
        if config.quantizer == "vq":
            self.quantizer = VectorQuantizer(config.codebook_size, config.token_dim, config.commitment_cost,
                                             config.l2_norm, restart_dead_codes=config.restart_dead_codes)
        else:
            self.quantizer = DiagonalGaussian(config.token_dim, config.kl_weight)
        self.decoder = TiTokDecoder(config)
        if config.decoder_head == "proxy":
            self.pixel_codebook = nn.Embedding(config.pixel.codebook_size, config.pixel.z_channels)
            self.pixel_decoder = PixelDecoder(config.pixel)
        self.apply(lambda m: _init_weights(m, config.init))
        if config.decoder_head == "proxy":
            # channels_last convolutions are 12-21% faster for this decoder on CPU (measured, 2
            # threads) and are what cuDNN prefers for bf16; loading weights keeps this layout.
            self.pixel_decoder.to(memory_format=torch.channels_last)

    @property
    def max_tokens(self) -> int:
        return self.config.num_tokens

    @property
    def codebook_size(self) -> Optional[int]:
        return self.config.codebook_size if self.config.quantizer == "vq" else None

    @property
    def image_size(self) -> int:
        return self.config.image_size

    # ---------------------------------------------------------------- encode
    def _encode(self, images: torch.Tensor, sample: bool = False):
        latents = self.encoder(images, self.latent_tokens)
        if self.config.quantizer == "kl":
            q = self.quantizer(latents, sample=sample)
        else:
            q = self.quantizer(latents)
        lengths = torch.full((images.shape[0],), self.num_tokens, dtype=torch.long, device=images.device)
        return Tokens(ids=q.ids, lengths=lengths, codes=q.codes, latents=latents), q

    def encode(self, images: torch.Tensor, sample: bool = False) -> Tokens:
        """Images -> tokens. For KL models ``sample=True`` draws from the posterior instead of
        returning its mean."""
        check_images(images, self.image_size)
        return self._encode(images, sample)[0]

    # ---------------------------------------------------------------- decode
    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """Proxy-code logits ``B x V x G x G`` of a two-stage model (the stage-1 training target)."""
        if self.config.decoder_head != "proxy":
            raise InputError("decode_logits is only defined for two-stage (decoder_head='proxy') models")
        logits = self.decoder(codes)
        g = self.config.decoder_grid_size
        return logits.transpose(1, 2).unflatten(2, (g, g))

    def _decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        out = self.decoder(codes)
        if self.config.decoder_head == "pixels":
            return out
        # Soft codes: softmax over the proxy vocabulary, mix the MaskGIT-VQGAN codebook rows.
        g = self.config.decoder_grid_size
        probs = out.softmax(dim=-1).transpose(1, 2).unflatten(2, (g, g))
        return self.pixel_decoder(soft_codes(probs, self.pixel_codebook.weight))

    def decode(self, tokens: Tokens | torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Tokens (or their ``B x K x C`` code vectors) -> images ``B x 3 x H x W``."""
        codes = tokens.codes if isinstance(tokens, Tokens) else tokens
        images = self._decode_codes(codes)
        return images.clamp(0, 1) if clamp else images

    def decode_ids(self, ids: torch.Tensor, lengths: Optional[torch.Tensor] = None, clamp: bool = True) -> torch.Tensor:
        """Token ids ``B x K`` (or ``B x 1 x K``) -> images ``B x 3 x H x W``. A fixed-length
        tokenizer reads all K ids: ``lengths``, if given, must be K for every image."""
        if self.config.quantizer != "vq":
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
        if self.config.decoder_head == "proxy":
            logits = self.decode_logits(tokens.codes)
            images_out = None
            if decode_pixels:
                images_out = self.pixel_decoder(soft_codes(logits.softmax(dim=1), self.pixel_codebook.weight))
        else:
            logits, images_out = None, self.decoder(tokens.codes)
        return TokenizerOutput(images=images_out, logits=logits, tokens=tokens, quantizer_loss=q.loss, stats=q.stats)

    def last_layer(self) -> torch.Tensor:
        """Weight of the layer that makes the pixels (for the adaptive GAN weight)."""
        if self.config.decoder_head == "proxy":
            return self.pixel_decoder.conv_out.weight
        return self.decoder.head.conv_out.weight


def _init_weights(m: nn.Module, scheme: str) -> None:
    # Trunc-normal linear/conv weights (official: std 0.02; layers/init.py), zero bias, LayerNorm (1, 0).
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        trunc_normal_init_(m, scheme)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
