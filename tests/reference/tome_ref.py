"""Independent re-statement of the official ToMe timm patch and the official EViT model forward.

Written from the facts in the spec (../shared/specs/imagepiece.md sections 2.1 and 3.1: ToMe's
``tome/patch/timm.py`` + ``tome/merge.py`` + ``tome/utils.py`` and EViT's ``evit.py`` +
``helpers.py``), as plain functions over a timm ``VisionTransformer``'s submodules (its weights).
It imports nothing from adatok: it is the oracle our implementation is checked against.

Official behaviour reproduced on purpose:
* explicit softmax attention, ``(q @ k^T) * scale`` (scale after the product), the log-size bias
  added to the logits when ``prop_attn`` (absent until the first merge: size starts as None);
* ToMe ignores LayerScale, q/k norm and the attention-output norm (identities for DeiT);
* ToMe matching: metric = keys averaged over heads, L2-normalised; A = even, B = odd positions;
  [CLS] row -inf; best B per A; A sorted by that score, descending (``argsort``); first r are
  sources; unmerged A re-sorted by position; output [unmerged A, B]; merge = size-weighted mean;
  source = element-wise max; r clipped to (N - 1) // 2; schedule as ``parse_r``;
* EViT: K = ceil(rate (N - 1)); top-K of the head-averaged [CLS] row, sorted descending; kept
  tokens in that order; fused token = sum of the others (ascending index) weighted by raw attention.
"""

from __future__ import annotations

import math

import torch


def _heads(attn_module, x):
    b, n, c = x.shape
    h = attn_module.num_heads
    qkv = attn_module.qkv(x).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def _explicit_attention(attn_module, x, size):
    """Returns (output, probabilities, keys). ``size``: B x N x 1 or None."""
    b, n, c = x.shape
    q, k, v = _heads(attn_module, x)
    logits = (q @ k.transpose(-2, -1)) * attn_module.scale
    if size is not None:
        logits = logits + size.log()[:, None, None, :, 0]
    probs = logits.softmax(dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(b, n, c)
    return attn_module.proj(out), probs, k


def schedule(r, depth):
    """ToMe's parse_r."""
    if isinstance(r, list):
        return r + [0] * (depth - len(r))
    inflect = 0
    if isinstance(r, tuple):
        r, inflect = r
    lo = int(r * (1.0 - inflect))
    hi = 2 * r - lo
    step = (hi - lo) / (depth - 1)
    return [int(lo + step * i) for i in range(depth)]


def tome_match(metric, r):
    """Index plan of one ToMe merge with a [CLS] token: (kept_a, src_a, dst_b), each B x * x 1."""
    r = min(r, (metric.shape[1] - 1) // 2)
    if r <= 0:
        return None
    with torch.no_grad():
        unit = metric / metric.norm(dim=-1, keepdim=True)
        sim = unit[:, 0::2] @ unit[:, 1::2].transpose(1, 2)
        sim[:, 0, :] = -math.inf
        best, best_b = sim.max(dim=-1)
        order = best.argsort(dim=-1, descending=True)[..., None]
        kept_a = order[:, r:].sort(dim=1)[0]
        src_a = order[:, :r]
        dst_b = best_b[..., None].gather(1, src_a)
    return kept_a, src_a, dst_b


def tome_apply(plan, t, reduce):
    kept_a, src_a, dst_b = plan
    a, b = t[:, 0::2], t[:, 1::2]
    c = t.shape[-1]
    out_b = b.scatter_reduce(1, dst_b.expand(-1, -1, c), a.gather(1, src_a.expand(-1, -1, c)), reduce=reduce)
    return torch.cat([a.gather(1, kept_a.expand(-1, -1, c)), out_b], dim=1)


@torch.no_grad()
def tome_forward(model, images, r, prop_attn=True):
    """Official ToMe on a timm DeiT. Returns (logits, tokens after each block, sizes B x N, source B x N x N0)."""
    x = model._pos_embed(model.patch_embed(images))
    n0 = x.shape[1]
    size = None
    source = torch.eye(n0)[None].expand(x.shape[0], n0, n0)
    tokens = []
    for blk, r_i in zip(model.blocks, schedule(r, len(model.blocks))):
        out, _, k = _explicit_attention(blk.attn, blk.norm1(x), size if prop_attn else None)
        x = x + out
        plan = tome_match(k.mean(1), r_i) if r_i > 0 else None
        if plan is not None:
            source = tome_apply(plan, source, "amax")
            weight = torch.ones_like(x[..., :1]) if size is None else size
            x = tome_apply(plan, x * weight, "sum")
            size = tome_apply(plan, weight, "sum")
            x = x / size
        x = x + blk.mlp(blk.norm2(x))
        tokens.append(x.shape[1])
    x = model.norm(x)
    if size is None:
        size = torch.ones_like(x[..., :1])
    return model.forward_head(x), tokens, size[..., 0], source


@torch.no_grad()
def evit_forward(model, images, keep_rate=0.7, blocks=(3, 6, 9), fuse=True):
    """Official EViT forward with a timm DeiT's weights. Returns (logits, tokens after each block)."""
    x = model._pos_embed(model.patch_embed(images))
    tokens = []
    for i, blk in enumerate(model.blocks):
        out, probs, _ = _explicit_attention(blk.attn, blk.norm1(x), None)
        n = x.shape[1]
        x = x + out
        if i in blocks:
            left = math.ceil(keep_rate * (n - 1))
            if left < n - 1:
                cls_attn = probs[:, :, 0, 1:].mean(dim=1)
                _, idx = torch.topk(cls_attn, left, dim=1, largest=True, sorted=True)
                rest = x[:, 1:]
                c = x.shape[-1]
                kept = rest.gather(1, idx[..., None].expand(-1, -1, c))
                parts = [x[:, :1], kept]
                if fuse:
                    chosen = torch.zeros(x.shape[0], n - 1, dtype=torch.bool)
                    chosen.scatter_(1, idx, True)
                    others = torch.stack([torch.nonzero(~row).flatten() for row in chosen])
                    weights = cls_attn.gather(1, others)
                    dropped = rest.gather(1, others[..., None].expand(-1, -1, c))
                    parts.append((dropped * weights[..., None]).sum(dim=1, keepdim=True))
                x = torch.cat(parts, dim=1)
        x = x + blk.mlp(blk.norm2(x))
        tokens.append(x.shape[1])
    return model.forward_head(model.norm(x)), tokens
