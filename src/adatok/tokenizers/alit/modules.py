"""ALIT's latent-distillation encoder and decoder (Duggal et al. 2025; the official module layout).

The encoder reads the base tokenizer's 2D tokens (its pre-quantisation latents concatenated with
a patch embedding, l2-normalised) plus a growing set of 1D latent tokens; the decoder rebuilds the
2D tokens, as logits over the base tokenizer's codebook (VQGAN base) or as the base's latents
(VAE base: Linear -> Tanh -> Linear(2W -> C) regression), from the (quantized) 1D tokens.

Shapes (N2 = G*G 2D tokens, n = 1D tokens so far, W = width, C = base z_channels, d = token_dim,
K = base codebook size):
    2D tokens        B x N2 x W          sequence x     B x (1 + N2 + n) x W   ([cls, 2D, 1D])
    factorised 1D    B x n x d           logits         B x N2 x K   (VAE base: latents B x N2 x C)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import Transformer
from ...layers.heads import ProxyCodeHead
from .config import ALITConfig
from .halting import mask_slots


def _embedding(*shape: int) -> nn.Parameter:
    # Official init for class/positional/mask/latent/iteration embeddings: width^-0.5 * N(0, 1).
    return nn.Parameter(shape[-1] ** -0.5 * torch.randn(*shape))


class ALITEncoder(nn.Module):
    """The recurrent latent-distillation encoder; the rollout (``rollout.py``) drives it."""

    def __init__(self, config: ALITConfig):
        super().__init__()
        w, n2, n0 = config.width, config.num_image_tokens, config.tokens_per_iter
        self.num_image_tokens = n2
        self.patch_embed = nn.Conv2d(3, w - config.token_channels, config.patch_size, stride=config.patch_size)
        self.cls_token = _embedding(1, w)
        self.pos_embed = _embedding(n2 + 1, w)
        self.mask_token = _embedding(1, 1, w)
        self.latent_tokens = _embedding(n0, w)
        self.latent_pos_embed = _embedding(n0, w)
        self.iter_embed = _embedding(config.max_iters, n0, w)  # the official "timestep_embedding"
        self.norm_pre = nn.LayerNorm(w)
        self.norm_post = nn.LayerNorm(w)
        self.norm_recur = nn.LayerNorm(w)
        self.transformer = Transformer(w, config.depth, config.heads, config.mlp_ratio)
        self.to_tokens = nn.Linear(w, config.token_dim)  # the official "pre_quantizer_mlp"

    def start(self, base_latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The first sequence ``norm_pre([cls, 2D tokens, first latent block])`` (B x (1+N2+n0) x W).

        ``base_latents`` B x C x G x G (the VQGAN encoder's pre-quantisation output, or the VAE's
        scaled latents), images B x 3 x H x W.
        """
        patches = self.patch_embed(images.to(self.patch_embed.weight.dtype))
        tokens = torch.cat([base_latents.to(patches.dtype), patches], dim=1).flatten(2).transpose(1, 2)
        tokens = F.normalize(tokens, dim=-1)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        image_seq = torch.cat([cls, tokens], dim=1) + self.pos_embed
        return self.norm_pre(torch.cat([image_seq, self.new_latents(0, tokens.shape[0])], dim=1))

    def new_latents(self, k: int, batch: int) -> torch.Tensor:
        """The block of latent tokens appended at iteration k: B x n0 x W."""
        return (self.latent_tokens + self.latent_pos_embed + self.iter_embed[k]).expand(batch, -1, -1)

    def extend(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Append iteration k's latent block and re-normalise the whole sequence."""
        return self.norm_recur(torch.cat([x, self.new_latents(k, x.shape[0])], dim=1))

    def latent_part(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 1 + self.num_image_tokens :]

    def factorise(self, latent_tokens: torch.Tensor) -> torch.Tensor:
        """Encoder outputs of the 1D slots B x n x W -> factorised latents B x n x d."""
        return self.to_tokens(self.norm_post(latent_tokens))

    def halt(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Replace the 2D slots where ``mask`` (B x N2 bool) is set by ``mask_token + position``."""
        n2 = self.num_image_tokens
        image = mask_slots(x[:, 1 : 1 + n2], mask, self.mask_token[0] + self.pos_embed[1:])
        return torch.cat([x[:, :1], image, x[:, 1 + n2 :]], dim=1)


class ALITDecoder(nn.Module):
    """1D tokens -> logits over the base codebook at every 2D position (VAE base: the predicted
    scaled latents).

    Shapes: codes B x n x d -> logits B x N2 x K (VAE: latents B x N2 x C).
    """

    def __init__(self, config: ALITConfig):
        super().__init__()
        w, n2 = config.width, config.num_image_tokens
        self.num_image_tokens = n2
        self.cls_token = _embedding(1, w)
        self.pos_embed = _embedding(n2 + 1, w)
        self.mask_token = _embedding(1, 1, w)
        self.embed = nn.Linear(config.token_dim, w)
        self.latent_pos_embed = _embedding(config.decoder_positions, w)
        self.norm_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, config.depth, config.heads, config.mlp_ratio)
        self.norm_post = nn.LayerNorm(w)
        self.head = ProxyCodeHead(w, config.head_outputs)  # logits over K codes, or C VAE latents

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        b, n, _ = codes.shape
        latents = self.embed(codes.to(self.embed.weight.dtype)) + self.latent_pos_embed[:n]
        queries = torch.cat([self.cls_token[None], self.mask_token.expand(1, self.num_image_tokens, -1)], dim=1)
        queries = (queries + self.pos_embed).expand(b, -1, -1)
        x = self.transformer(self.norm_pre(torch.cat([queries, latents], dim=1)))
        return self.head(self.norm_post(x[:, 1 : 1 + self.num_image_tokens]))
