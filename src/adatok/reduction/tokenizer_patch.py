"""Token reduction inside a TiTok encoder: ToMe merging of the patch tokens, latent tokens never merged.

``adatok.reduction.apply(tokenizer.encoder, "tome", r=8)`` is the switch. The only file that knows the
encoder's internals: it sets one instance attribute, ``encoder.transformer.forward``, to a loop over the
stack's own blocks that merges between attention and MLP, and records the patch on the encoder
(``encoder._adatok_reduction``, the same :class:`~.timm_patch.Patch` record as for timm models);
:func:`remove` deletes both. The encoder's sequence is ``[cls, 256 patches, K latents]`` and its stack is
called with ``keep=slice(-K, None)`` (it reads the K latents): the last K tokens are the latents, kept
out of every merge with size 1; [CLS] and the patches are merged with ToMe's bipartite matching
(proportional attention on, as in ToMe). The decoder is untouched, so the codes keep their shape.
"""

from __future__ import annotations

import types
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from . import ops
from .base import ReductionInfo, Reducer, TokenState
from .timm_patch import ATTR, Patch

SUPPORTED = ("tome",)


def is_tokenizer_encoder(model: nn.Module) -> bool:
    from ..tokenizers.titok.model import TiTokEncoder

    return isinstance(model, TiTokEncoder)


def apply(encoder: nn.Module, reducer: Reducer) -> nn.Module:
    from ..layers.block import Transformer

    if getattr(encoder, ATTR, None) is not None:
        raise ConfigError("this encoder is already patched: call adatok.reduction.remove(encoder) first")
    if reducer.method not in SUPPORTED:
        raise ConfigError(f"{reducer.method!r} is not supported inside a tokenizer encoder; use one of {SUPPORTED} "
                          "(the encoder has no trained [CLS] attention to score tokens by)")
    stack = getattr(encoder, "transformer", None)
    if type(stack) is not Transformer:
        raise ConfigError(f"{type(encoder).__name__}.transformer is not adatok's Transformer stack")
    num_patches = encoder.pos_embed.shape[0] - 1
    reducer.plan(len(stack.blocks), num_patches)
    patch = Patch(reducer=reducer, num_patches=num_patches)
    object.__setattr__(encoder, ATTR, patch)
    stack.forward = types.MethodType(_make_forward(patch), stack)
    return encoder


def remove(encoder: nn.Module) -> nn.Module:
    if not isinstance(getattr(encoder, ATTR, None), Patch):
        raise InputError("this encoder is not patched: call adatok.reduction.apply(encoder, method) first")
    encoder.transformer.__dict__.pop("forward", None)
    encoder.__dict__.pop(ATTR, None)
    return encoder


def _make_forward(patch: Patch):
    def forward(self, x: torch.Tensor, keep: Optional[slice] = None) -> torch.Tensor:
        """[cls, patches, latents] -> the latents (``keep``), with the patch tokens merged per block."""
        if keep is None or keep.stop is not None or keep.start is None or keep.start >= 0:
            raise InputError("the reduced encoder stack must be called with keep=slice(-K, None) (the latents)")
        k = -keep.start
        reducer = patch.reducer
        state = TokenState.start(x[:, :-k], reducer.trace_source, False)
        info = ReductionInfo(method=reducer.method, tokens_in=x.shape[1] - k)
        ones = torch.ones(x.shape[0], k, 1, device=x.device, dtype=torch.float32)
        for i, blk in enumerate(self.blocks):
            bias = ops.size_bias(torch.cat([state.size, ones], dim=1), x.dtype) if state.merged else None
            out, metric = _attention(blk.attn, blk.norm1(x), bias, reducer.needs[i].metric, k)
            x = x + out
            front = reducer.reduce(i, x[:, :-k], state, metric, None)
            if front.shape[1] != x.shape[1] - k:
                x = torch.cat([front, x[:, -k:]], dim=1)
            x = x + blk.mlp(blk.norm2(x))
            info.tokens.append(x.shape[1] - k)
        info.size, info.source = state.size[..., 0], state.source
        patch.last = info
        return x[:, -k:]

    return forward


def _attention(attn: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor], need_metric: bool, k: int):
    """adatok ``Attention`` with an additive mask; also the head-averaged keys of [cls + patches]."""
    b, n, w = x.shape
    qkv = attn.qkv(x).view(b, n, 3, attn.num_heads, w // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, kk, v = qkv.unbind(0)
    if attn.use_sdpa:
        out = F.scaled_dot_product_attention(q, kk, v, attn_mask=bias)
    else:
        logits = (q * q.shape[-1] ** -0.5) @ kk.transpose(-2, -1)
        out = (logits if bias is None else logits + bias).softmax(dim=-1) @ v
    metric = kk[:, :, :-k].mean(dim=1) if need_metric else None
    return attn.proj(out.transpose(1, 2).reshape(b, n, w)), metric
