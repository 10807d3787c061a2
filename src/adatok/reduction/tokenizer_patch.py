"""Token reduction inside a TiTok encoder: ToMe or ImagePiece on the patch tokens, latent tokens never merged.

``adatok.reduction.apply(tokenizer.encoder, "tome", r=8)`` (or ``"imagepiece", ...``) is the switch. The only
file that knows the encoder's internals: it sets one instance attribute, ``encoder.transformer.forward``, to a
loop over the stack's own blocks that reduces between attention and MLP, and records the patch on the encoder
(``encoder._adatok_reduction``, the same :class:`~.timm_patch.Patch` record as for timm models); :func:`remove`
deletes both. The encoder's sequence is ``[cls, 256 patches, K latents]`` and its stack is called with
``keep=slice(-K, None)`` (it reads the K latents): the last K tokens are the latents, kept out of every merge
and prune with size 1; [CLS] and the patches are reduced. The decoder is untouched, so the codes keep their shape.

ImagePiece scores a patch by how much the K latent tokens attend to it (head- and latent-averaged
probabilities, :func:`~.ops.query_attention`): the latents are what the encoder outputs, its [CLS] is
not trained to score anything. The last block reduces nothing (its outputs other than the latents feed
nothing) and, as the stock stack does, computes only the latents' queries. A block that reduces nothing
while no token has been merged runs the encoder's own block, so a reduction that removes nothing gives
the unpatched latents bit for bit.
"""

from __future__ import annotations

import types
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from . import ops
from .base import BlockNeeds, ReductionInfo, Reducer, TokenState
from .timm_patch import ATTR, Patch

SUPPORTED = ("tome", "imagepiece")


def is_tokenizer_encoder(model: nn.Module) -> bool:
    from ..tokenizers.titok.model import TiTokEncoder

    return isinstance(model, TiTokEncoder)


def apply(encoder: nn.Module, reducer: Reducer) -> nn.Module:
    from ..layers.block import Transformer

    if getattr(encoder, ATTR, None) is not None:
        raise ConfigError("this encoder is already patched: call adatok.reduction.remove(encoder) first")
    if reducer.method not in SUPPORTED:
        raise ConfigError(f"{reducer.method!r} is not supported inside a tokenizer encoder; use one of {SUPPORTED}")
    if getattr(reducer.config, "lcb", False):
        raise ConfigError("lcb=True swaps a timm patch embedding: inside a tokenizer encoder use lcb=False")
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
        """[cls, patches, latents] -> the latents (``keep``), with the patch tokens reduced per block."""
        if keep is None or keep.stop is not None or keep.start is None or keep.start >= 0:
            raise InputError("the reduced encoder stack must be called with keep=slice(-K, None) (the latents)")
        k = -keep.start
        reducer = patch.reducer
        state = TokenState.start(x[:, :-k], reducer.trace_source, False)
        state.prop_attn = reducer.prop_attn
        info = ReductionInfo(method=reducer.method, tokens_in=x.shape[1] - k)
        patch.last = info
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            bias = _bias(state, reducer, k, x.dtype)
            info.tokens.append(x.shape[1] - k)
            if i == last:  # reduces nothing: only the latents are read
                _finish(info, state)
                return _last_block(blk, x, bias, k, self.trim_last_block)
            needs = reducer.needs[i]
            if bias is None and not (needs.metric or needs.cls_attn):
                x = blk(x)  # nothing merged yet, nothing to do here: the encoder's own block
            else:
                out, metric, importance = _attention(blk.attn, blk.norm1(x), bias, needs, k)
                x = x + out
                front = x[:, :-k]
                reduced = reducer.reduce(i, front, state, metric, importance)
                if reduced is not front:
                    x = torch.cat([reduced, x[:, -k:]], dim=1)
                x = x + blk.mlp(blk.norm2(x))
            info.tokens[-1] = x.shape[1] - k
            if state.lengths is not None:
                info.block_lengths.append(state.lengths)
        _finish(info, state)
        return x[:, -k:]  # an empty stack

    return forward


def _finish(info: ReductionInfo, state: TokenState) -> None:
    info.size, info.dropped, info.source, info.lengths = state.size[..., 0], state.dropped, state.source, state.lengths


def _bias(state: TokenState, reducer: Reducer, k: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """The front's attention mask (proportional attention, padding) extended by 0 for the K latents."""
    if not ((reducer.prop_attn and state.merged) or state.lengths is not None):
        return None
    bias = state.bias(dtype)
    return None if bias is None else F.pad(bias, (0, k))


def _last_block(blk: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor], k: int, trim: bool) -> torch.Tensor:
    """The last block for the latents: as the stock stack runs it (``trim``: only the latents' queries)."""
    if bias is None:
        return blk(x, slice(-k, None)) if trim else blk(x)[:, -k:]
    out, _, _ = _attention(blk.attn, blk.norm1(x), bias, BlockNeeds(), k, queries=k if trim else None)
    x = (x[:, -k:] if trim else x) + out
    x = x + blk.mlp(blk.norm2(x))
    return x if trim else x[:, -k:]


def _qkv(attn: nn.Module, x: torch.Tensor):
    """adatok ``Attention``'s q, k, v (B x H x N x D), exactly as its forward forms them."""
    b, n, w = x.shape
    qkv = attn.qkv(x).view(b, n, 3, attn.num_heads, w // attn.num_heads).permute(2, 0, 3, 1, 4)
    return qkv.unbind(0)


def _attention(attn: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor], needs: BlockNeeds, k: int,
               queries: Optional[int] = None):
    """adatok ``Attention`` (the same operations, so bit for bit without a mask) with an additive mask;
    also the head-averaged keys of [cls + patches] (``needs.metric``) and the latents' attention to the
    patches (``needs.cls_attn``, B x patches). ``queries``: only the last ones are computed."""
    b, n, w = x.shape
    q, kk, v = _qkv(attn, x)
    importance = None
    if needs.cls_attn:
        importance = ops.query_attention(q[:, :, -k:], kk, q.shape[-1] ** -0.5, bias)[:, 1:n - k]
    if queries is not None:
        q = q[:, :, -queries:]
    if attn.use_sdpa:
        out = F.scaled_dot_product_attention(q, kk, v, attn_mask=bias)
    else:
        logits = (q * q.shape[-1] ** -0.5) @ kk.transpose(-2, -1)
        out = (logits if bias is None else logits + bias).softmax(dim=-1) @ v
    metric = kk[:, :, :-k].mean(dim=1) if needs.metric else None
    return attn.proj(out.transpose(1, 2).reshape(b, q.shape[2], w)), metric, importance
