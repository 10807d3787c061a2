"""The only file that knows timm's internals: runs a timm ``VisionTransformer`` with a reducer.

Patching sets one instance attribute, ``model.forward_features`` (timm's ``forward`` calls it), to
our loop over the model's own blocks and submodules, and keeps the patch record in
``model._adatok_reduction``; with ``lcb`` it also swaps ``patch_embed.proj`` for the LCB stem.
:func:`remove` deletes both attributes and puts the original ``proj`` back, which restores the
model exactly. No timm class or function is modified.

What is relied on, checked at patch time (and refused with one line otherwise): timm >= 1.0;
``VisionTransformer`` with ``patch_embed`` (a plain ``PatchEmbed`` with a conv ``proj``),
``_pos_embed``, ``patch_drop``, ``norm_pre``, ``blocks``, ``norm``, ``forward_head``, one [CLS]
token and token pooling; blocks of exactly timm's ``Block`` (``norm1, attn, ls1, drop_path1,
norm2, mlp, ls2, drop_path2``, pre-norm residuals); attention of exactly timm's ``Attention``
(``qkv, q_norm, k_norm, attn_drop, proj, proj_drop, num_heads, scale``, and when present the
attention-output ``norm`` and sigmoid ``gate``). Tested with timm 1.0.31.

Attention runs on ``F.scaled_dot_product_attention`` with the proportional-attention bias as an
additive mask; blocks that need class attention form only the [CLS] row of the probabilities
beside the fused kernel. ``attention="eager"`` computes the explicit softmax instead (the
reference path the official ToMe/EViT code uses; for benchmarks and tests).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from . import ops
from .base import BlockNeeds, ReductionInfo, Reducer, TokenState

ATTR = "_adatok_reduction"
MIN_TIMM = (1, 0)
TESTED_TIMM = "1.0.31"
ATTENTION = ("sdpa", "eager")
MODEL_ATTRS = ("patch_embed", "_pos_embed", "patch_drop", "norm_pre", "blocks", "norm", "forward_head",
               "cls_token", "num_prefix_tokens", "global_pool")
BLOCK_ATTRS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")
ATTN_ATTRS = ("qkv", "q_norm", "k_norm", "attn_drop", "proj", "proj_drop", "num_heads", "scale")


@dataclass
class Patch:
    """What :func:`apply` did to a model (stored on it as ``model._adatok_reduction``)."""

    reducer: Reducer
    attention: str = "sdpa"
    trace: bool = False
    num_patches: int = 0
    original_proj: Optional[nn.Module] = None  # patch_embed.proj before the LCB stem replaced it
    last: Optional[ReductionInfo] = field(default=None, repr=False)


def timm_version() -> tuple[int, ...]:
    try:
        import timm
    except ImportError:
        raise ConfigError("token reduction patches timm models: pip install 'timm>=1.0'") from None
    parts = []
    for piece in timm.__version__.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _timm_classes():
    if timm_version() < MIN_TIMM:
        import timm

        raise ConfigError(f"adatok.reduction needs timm >= {'.'.join(map(str, MIN_TIMM))} "
                          f"(found {timm.__version__}; tested with {TESTED_TIMM}): pip install -U timm")
    from timm.layers import Attention, PatchEmbed
    from timm.models.vision_transformer import Block, VisionTransformer

    return VisionTransformer, Block, Attention, PatchEmbed


def check_model(model: nn.Module) -> None:
    """Refuse (one-line :class:`ConfigError`) anything but a plain [CLS]-token timm ViT."""
    VisionTransformer, Block, Attention, PatchEmbed = _timm_classes()
    name = type(model).__name__
    if is_patched(model):
        raise ConfigError(f"this model is already patched with {getattr(model, ATTR).reducer.method!r}: "
                          "call adatok.reduction.remove(model) first")
    if not isinstance(model, VisionTransformer):
        raise ConfigError(f"{name} is not a timm VisionTransformer: token reduction supports plain ViT/DeiT "
                          "classifiers with a [CLS] token (not Swin, ConvNeXt, hierarchical or hybrid models)")
    missing = [a for a in MODEL_ATTRS if not hasattr(model, a)]
    if missing:
        raise ConfigError(f"{name} lacks {missing}: this timm version's VisionTransformer is not the one "
                          f"adatok.reduction was written for (tested with timm {TESTED_TIMM})")
    if model.cls_token is None:
        raise ConfigError(f"{name} has no [CLS] token (class_token=False): the reductions score tokens by, and "
                          "never touch, [CLS]; use a model with a class token")
    if model.num_prefix_tokens != 1:
        raise ConfigError(f"{name} has {model.num_prefix_tokens} prefix tokens (register or distillation tokens): "
                          "only the single [CLS] token layout is supported")
    if model.global_pool != "token" or getattr(model, "attn_pool", None) is not None:
        raise ConfigError(f"{name} pools with global_pool={model.global_pool!r}: token reduction needs "
                          "global_pool='token' (the head reads [CLS])")
    pe = model.patch_embed
    if type(pe) is not PatchEmbed or not isinstance(getattr(pe, "proj", None), nn.Conv2d):
        raise ConfigError(f"{name} embeds patches with {type(pe).__name__} (a conv/hybrid stem): only the plain "
                          "patchify PatchEmbed is supported")
    for i, blk in enumerate(model.blocks):
        if type(blk) is not Block or any(not hasattr(blk, a) for a in BLOCK_ATTRS):
            raise ConfigError(f"{name}.blocks[{i}] is a {type(blk).__name__}: only timm's pre-norm "
                              "vision_transformer.Block is supported")
        if type(blk.attn) is not Attention or any(not hasattr(blk.attn, a) for a in ATTN_ATTRS):
            raise ConfigError(f"{name}.blocks[{i}].attn is a {type(blk.attn).__name__}: only timm's "
                              "layers.Attention is supported")


def is_patched(model: nn.Module) -> bool:
    return isinstance(getattr(model, ATTR, None), Patch)


def get_patch(model: nn.Module) -> Patch:
    if not is_patched(model):
        raise InputError("this model is not patched: call adatok.reduction.apply(model, method) first")
    return getattr(model, ATTR)


def apply(model: nn.Module, reducer: Reducer, attention: str = "sdpa", trace: bool = False) -> nn.Module:
    """Patch ``model`` in place to run ``reducer``; returns the model."""
    check_model(model)
    if attention not in ATTENTION:
        raise ConfigError(f"attention={attention!r}: use one of {ATTENTION}")
    num_patches = int(model.patch_embed.num_patches)
    reducer.plan(len(model.blocks), num_patches)
    patch = Patch(reducer=reducer, attention=attention, trace=bool(trace), num_patches=num_patches)
    if getattr(reducer.config, "lcb", False):
        patch.original_proj = _swap_in_lcb(model, reducer.config.lcb_widths)
    object.__setattr__(model, ATTR, patch)
    model.forward_features = types.MethodType(_forward_features, model)
    return model


def reconfigure(model: nn.Module, reducer: Reducer, trace: Optional[bool] = None) -> nn.Module:
    """Swap a patched model's reducer (new settings) while keeping its LCB stem and weights."""
    patch = get_patch(model)
    had_lcb = patch.original_proj is not None
    if bool(getattr(reducer.config, "lcb", False)) != had_lcb:
        raise ConfigError("the new reduction settings add or drop the LCB stem this model's weights belong to; "
                          "keep lcb as it is (or remove() and apply() to start from the plain model)")
    reducer.plan(len(model.blocks), patch.num_patches)
    patch.reducer = reducer
    if trace is not None:
        patch.trace = bool(trace)
    patch.last = None
    return model


def remove(model: nn.Module) -> nn.Module:
    """Undo :func:`apply`: the original ``forward_features`` and patch-embedding conv come back."""
    patch = get_patch(model)
    if patch.original_proj is not None:
        model.patch_embed.proj = patch.original_proj
    model.__dict__.pop("forward_features", None)
    model.__dict__.pop(ATTR, None)
    return model


def _swap_in_lcb(model: nn.Module, widths: tuple) -> nn.Module:
    from .lcb_stem import LocalCoherenceStem

    proj = model.patch_embed.proj
    ph, pw = proj.kernel_size
    if ph != pw or proj.stride != proj.kernel_size:
        raise ConfigError(f"the local-coherence-bias stem needs square, non-overlapping patches (got kernel "
                          f"{proj.kernel_size}, stride {proj.stride}); use lcb=False")
    stem = LocalCoherenceStem(proj.in_channels, proj.out_channels, ph, widths)
    model.patch_embed.proj = stem.to(device=proj.weight.device, dtype=proj.weight.dtype).train(proj.training)
    return proj


# --------------------------------------------------------------------------- forward
def _forward_features(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
    """Bound to a patched model as ``forward_features``: timm's, with the reducer between the
    attention and the MLP of every block."""
    if attn_mask is not None or is_causal:
        raise InputError("attention masks / causal attention are not supported on a token-reduced model")
    patch: Patch = getattr(self, ATTR)
    reducer = patch.reducer
    x = self.patch_embed(x)
    x = self._pos_embed(x)
    x = self.patch_drop(x)
    x = self.norm_pre(x)
    state = TokenState.start(x, reducer.trace_source, patch.trace)
    state.prop_attn = reducer.prop_attn
    info = ReductionInfo(method=reducer.method, tokens_in=x.shape[1])
    eager = patch.attention == "eager"
    for i, blk in enumerate(self.blocks):
        n_in = x.shape[1]
        x = _block(blk, x, state, reducer, i, eager)
        info.tokens.append(x.shape[1])
        if state.lengths is not None:
            info.block_lengths.append(state.lengths)
        needs = reducer.needs[i]
        if needs.metric or needs.cls_attn:
            state.record(i, n_in, x.shape[1])
    x = self.norm(x)
    info.size, info.dropped, info.source, info.blocks = state.size[..., 0], state.dropped, state.source, state.trace
    info.lengths = state.lengths
    patch.last = info
    return x


def _block(blk: nn.Module, x: torch.Tensor, state: TokenState, reducer: Reducer, i: int, eager: bool) -> torch.Tensor:
    needs = reducer.needs[i]
    bias = state if (reducer.prop_attn and state.merged) or state.lengths is not None else None
    out, metric, cls_attn = _attention(blk.attn, blk.norm1(x), bias, needs, eager)
    x = x + blk.drop_path1(blk.ls1(out))
    x = reducer.reduce(i, x, state, metric, cls_attn)
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


def _attention(attn: nn.Module, x: torch.Tensor, state: Optional[TokenState], needs: BlockNeeds, eager: bool):
    """timm ``Attention`` forward with the size bias; also returns the head-averaged keys and the
    [CLS] attention row when ``needs`` asks. Shapes: x B x N x C -> (B x N x C, B x N x d, B x (N-1))."""
    b, n, _ = x.shape
    gate = getattr(attn, "gate", None)
    gate = gate(x).sigmoid() if gate is not None else None
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    bias = state.bias(q.dtype) if state is not None else None
    cls_attn = None
    if eager:
        logits = (q * attn.scale) @ k.transpose(-2, -1)
        if bias is not None:
            logits = logits + bias
        probs = logits.softmax(dim=-1)
        if needs.cls_attn:
            cls_attn = probs[:, :, 0, 1:].float().mean(dim=1)
        out = attn.attn_drop(probs) @ v
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                             dropout_p=attn.attn_drop.p if attn.training else 0.0)
        if needs.cls_attn:
            cls_attn = ops.class_attention(q[:, :, :1], k, attn.scale, bias)
    metric = k.mean(dim=1) if needs.metric else None
    out = out.transpose(1, 2).reshape(b, n, -1)
    norm = getattr(attn, "norm", None)
    if norm is not None:
        out = norm(out)
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out)), metric, cls_attn
