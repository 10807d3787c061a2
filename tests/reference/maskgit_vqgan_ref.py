"""Independent reference forward of the MaskGIT-VQGAN, written from titok.md §7 only.

Stand-in for the official implementation in golden tests. It reads a state dict with the official
key names (``encoder.*``, ``quantize.embedding.weight``, ``decoder.*``) and uses nothing but
``torch.nn.functional``; the architecture (number of levels, blocks per level) is read from the keys.
Deliberately does NOT import adatok, and deliberately does things the plain way (explicit F.pad for
SAME padding, broadcast distances for the quantizer) so it shares no shortcut with the library.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

GROUPS, EPS = 32, 1e-6


def _same_pad(x, kernel, stride=1, dilation=1):
    """TF SAME: total = max((ceil(i/s)-1)*s + (k-1)*d + 1 - i, 0), floor half before, rest after."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def _conv(sd, name, x):
    w = sd[name + ".weight"]
    return F.conv2d(_same_pad(x, w.shape[-1]), w, sd.get(name + ".bias"))


def _gn_silu(sd, name, x):
    return F.silu(F.group_norm(x, GROUPS, sd[name + ".weight"], sd[name + ".bias"], EPS))


def _resblock(sd, p, x):
    h = _conv(sd, p + ".conv1", _gn_silu(sd, p + ".norm1", x))
    h = _conv(sd, p + ".conv2", _gn_silu(sd, p + ".norm2", h))
    if p + ".nin_shortcut.weight" in sd:
        return h + _conv(sd, p + ".nin_shortcut", h)  # spec: the input x is discarded
    return x + h


def _count(sd, pattern):
    found = {int(m.group(1)) for k in sd for m in [re.match(pattern, k)] if m}
    return max(found) + 1


def encode_latents(sd, images):
    """images B x 3 x H x W in [0, 1] -> latents B x z x H/f x W/f."""
    levels = _count(sd, r"encoder\.down\.(\d+)\.")
    blocks = _count(sd, r"encoder\.down\.0\.block\.(\d+)\.")
    h = _conv(sd, "encoder.conv_in", images)
    for i in range(levels):
        for j in range(blocks):
            h = _resblock(sd, f"encoder.down.{i}.block.{j}", h)
        if i != levels - 1:
            h = F.avg_pool2d(h, 2, 2)
    for j in range(2):
        h = _resblock(sd, f"encoder.mid.{j}", h)
    return _conv(sd, "encoder.conv_out", _gn_silu(sd, "encoder.norm_out", h))


def quantize_ids(sd, latents):
    """latents B x z x h x w -> ids B x (h*w), nearest codebook row by squared L2 (row-major)."""
    e = sd["quantize.embedding.weight"]
    b, c = latents.shape[:2]
    flat = latents.flatten(2).transpose(1, 2).reshape(-1, c)
    dist = ((flat[:, None, :] - e[None, :, :]) ** 2).sum(-1)
    return dist.argmin(1).reshape(b, -1)


def encode_ids(sd, images):
    return quantize_ids(sd, encode_latents(sd, images))


def codes_from_ids(sd, ids):
    """ids B x N (N = side^2, row-major) -> B x z x side x side."""
    e = sd["quantize.embedding.weight"]
    b, n = ids.shape
    side = int(round(n ** 0.5))
    return e[ids].reshape(b, side, side, -1).permute(0, 3, 1, 2)


def decode_codes(sd, z, prefix="decoder."):
    """codes B x z x h x w -> images B x 3 x H x W (unclamped)."""
    levels = _count(sd, re.escape(prefix) + r"up\.(\d+)\.")
    blocks = _count(sd, re.escape(prefix) + r"up\.0\.block\.(\d+)\.")
    h = _conv(sd, prefix + "conv_in", z)
    for j in range(2):
        h = _resblock(sd, f"{prefix}mid.{j}", h)
    for i in reversed(range(levels)):
        for j in range(blocks):
            h = _resblock(sd, f"{prefix}up.{i}.block.{j}", h)
        if i != 0:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = _conv(sd, f"{prefix}up.{i}.upsample_conv", h)
    return _conv(sd, prefix + "conv_out", _gn_silu(sd, prefix + "norm_out", h))


def decode_ids(sd, ids):
    """ids B x N -> images clamped to [0, 1] (the official ``decode``)."""
    return decode_codes(sd, codes_from_ids(sd, ids)).clamp(0, 1)
