"""Attention with dropout for the generators (the shared ``layers.Attention`` has none), and the
two generator backbones: BERT (post-norm; official ``ImageBert``) and UViT (pre-norm with long
skips; official ``UViTBert``). Official code: bytedance/1d-tokenizer, ``modeling/maskgit.py``.

Both map an id sequence ``B x N`` to hidden states ``B x N x W``; the heads live in
``MaskGIT`` (``maskgit.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import Attention, Mlp
from ..layers.attention import attention_reference
from .config import MaskGITConfig


class DropoutAttention(Attention):
    """``layers.Attention`` plus dropout on the attention probabilities while training (BERT's
    ``attention_probs_dropout_prob``). Honours the class-level ``Attention.use_sdpa`` switch that
    the benchmarks flip to measure the eager baseline."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, dropout: float = 0.0):
        super().__init__(dim, num_heads, qkv_bias=qkv_bias)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, w // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        p = self.dropout if self.training else 0.0
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        elif p:
            scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
            out = F.dropout(scores.softmax(dim=-1), p) @ v
        else:
            out = attention_reference(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, w))


# ---------------------------------------------------------------------------------------- BERT
class BertLayer(nn.Module):
    """Post-norm layer: ``x = LN1(x + drop(Attn(x))); x = LN2(x + drop(MLP(x)))``."""

    def __init__(self, c: MaskGITConfig):
        super().__init__()
        self.attn = DropoutAttention(c.width, c.heads, qkv_bias=True, dropout=c.attn_dropout)
        self.norm1 = nn.LayerNorm(c.width, eps=c.norm_eps)
        self.mlp = Mlp(c.width, int(c.width * c.mlp_ratio))
        self.norm2 = nn.LayerNorm(c.width, eps=c.norm_eps)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(x + self.drop(self.mlp(x)))


class BertBackbone(nn.Module):
    """``LN(embed(ids) + pos + type) -> dropout -> depth post-norm layers`` (no final norm).

    ``type_embed`` is BERT's token-type table (2 x W, as the official checkpoint has it); the
    official model passes no ``token_type_ids``, so row 0 is added to every position and row 1 is
    never used.
    Shapes: ids ``B x N`` -> ``B x N x W``.
    """

    def __init__(self, c: MaskGITConfig):
        super().__init__()
        self.embed = nn.Embedding(c.vocab_size, c.width)
        self.pos_embed = nn.Parameter(torch.zeros(c.seq_len, c.width))
        self.type_embed = nn.Parameter(torch.zeros(2, c.width))
        self.norm_embed = nn.LayerNorm(c.width, eps=c.norm_eps)
        self.drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(BertLayer(c) for _ in range(c.depth))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos_embed[: ids.shape[1]] + self.type_embed[0]
        x = self.drop(self.norm_embed(x))
        for layer in self.layers:
            x = layer(x)
        return x

    def init_weights(self) -> None:
        # BERT init (initializer_range 0.02): normal weights and embeddings, zero bias, LN (1, 0).
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.type_embed, std=0.02)


# ---------------------------------------------------------------------------------------- UViT
class UViTBlock(nn.Module):
    """Pre-norm block; out-blocks first merge the matching in-block's output:
    ``x = skip(cat[x, s])``, then ``x = x + Attn(LN1(x)); x = x + MLP(LN2(x))``."""

    def __init__(self, c: MaskGITConfig, skip: bool = False):
        super().__init__()
        self.skip = nn.Linear(2 * c.width, c.width) if skip else None
        self.norm1 = nn.LayerNorm(c.width, eps=c.norm_eps)
        self.attn = DropoutAttention(c.width, c.heads, qkv_bias=False)
        self.norm2 = nn.LayerNorm(c.width, eps=c.norm_eps)
        self.mlp = Mlp(c.width, int(c.width * c.mlp_ratio))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip is not None:
            x = self.skip(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UViTBackbone(nn.Module):
    """``embed(ids) + pos -> in-blocks -> mid-block -> out-blocks (LIFO skips) -> LN``.
    Shapes: ids ``B x N`` -> ``B x N x W``."""

    def __init__(self, c: MaskGITConfig):
        super().__init__()
        half = c.depth // 2
        self.embed = nn.Embedding(c.vocab_size, c.width)
        self.pos_embed = nn.Parameter(torch.zeros(c.seq_len, c.width))
        self.in_blocks = nn.ModuleList(UViTBlock(c) for _ in range(half))
        self.mid_block = UViTBlock(c)
        self.out_blocks = nn.ModuleList(UViTBlock(c, skip=True) for _ in range(half))
        self.norm = nn.LayerNorm(c.width, eps=c.norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.pos_embed[: ids.shape[1]]
        skips = []
        for block in self.in_blocks:
            x = block(x)
            skips.append(x)
        x = self.mid_block(x)
        for block in self.out_blocks:
            x = block(x, skips.pop())  # last in-block pairs with the first out-block
        return self.norm(x)

    def init_weights(self) -> None:
        # Official UViTBert init: trunc-normal(0.02) linears/embeddings/positions, zero bias, LN (1, 0).
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
