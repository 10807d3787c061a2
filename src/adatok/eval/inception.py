"""The FID Inception-v3: the network rFID, gFID and the Inception Score are computed with.

It is the 2015 TensorFlow Inception graph (Szegedy et al., "Rethinking the Inception
Architecture", CVPR 2016) as FID defines it (Heusel et al., NeurIPS 2017), in the layout of the
ported weight file ``pt_inception-2015-12-05-6726825d.pth`` that pytorch-fid and torch-fidelity read
and that TiTok's evaluator uses (Yu et al., NeurIPS 2024, its ``evaluator/``). Compared with
torchvision's ImageNet Inception-v3 the graph differs in four places, all reproduced here:

* 1008 output classes (``fc``), and the Inception Score reads the logits *without* the bias
  ("logits_unbiased", as TiTok's evaluator);
* average pools in the A, C and first E blocks exclude the zero padding (TensorFlow's
  ``count_include_pad=False``); the last E block pools with a max instead of an average;
* inputs are uint8 images, resized to 299 x 299 with TensorFlow 1.x's bilinear rule
  (``align_corners=False``: source = destination x in/out, no half-pixel offset), then mapped
  to [-1, 1] by ``(x - 128) / 128``;
* the whole forward runs in float64 (``dtype``), as TiTok's evaluator does.

The weights are never downloaded: ``load_inception(path)`` reads ``--inception FILE``, else
``$ADATOK_WEIGHTS_DIR/pt_inception-2015-12-05-6726825d.pth``, else torch hub's checkpoint cache,
and fails in one line naming the file and where it looked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tv

from ..errors import CheckpointError, InputError
from ..losses.perceptual import _find, _load_state_dict

__all__ = ["INCEPTION_FILE", "FIDInception", "load_inception", "resize_tf1_bilinear", "to_uint8"]

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_LOGITS = 1008


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8, as TiTok's evaluator quantizes them: ``(x * 255)`` cast
    to uint8 (truncation; exact for images read from 8-bit files). Values are clamped first."""
    if images.dtype == torch.uint8:
        return images
    return (images.float().clamp(0, 1) * 255).to(torch.uint8)


def resize_tf1_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize as TensorFlow 1.x ``resize_bilinear(align_corners=False)``.

    Shapes: ``x`` B x C x H x W float -> B x C x size x size. Destination pixel ``i`` reads source
    position ``i * in / out`` (no half-pixel offset), interpolating between ``floor`` and
    ``floor + 1`` clamped to the edge."""
    def axis(n_in: int):
        pos = torch.arange(size, dtype=x.dtype, device=x.device) * (n_in / size)
        lo = pos.floor().long().clamp_max(n_in - 1)
        hi = (lo + 1).clamp_max(n_in - 1)
        return lo, hi, pos - lo.to(x.dtype)

    ylo, yhi, dy = axis(x.shape[2])
    xlo, xhi, dx = axis(x.shape[3])
    top, bottom = x[:, :, ylo], x[:, :, yhi]
    rows = top + (bottom - top) * dy.view(1, 1, -1, 1)
    left, right = rows[..., xlo], rows[..., xhi]
    return left + (right - left) * dx.view(1, 1, 1, -1)


def _avg_pool_no_pad(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(tv.InceptionA):
    def _forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_no_pad(x))]


class _BlockC(tv.InceptionC):
    def _forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return [self.branch1x1(x), b7, d, self.branch_pool(_avg_pool_no_pad(x))]


class _BlockE(tv.InceptionE):
    """``max_pool=False``: the first E block (padding-free average); True: the last (max pool)."""

    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def _forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pool = (F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool
                else _avg_pool_no_pad(x))
        return [self.branch1x1(x), b3, d, self.branch_pool(pool)]


class FIDInception(nn.Module):
    """Inception-v3 as FID uses it. ``forward(uint8 B x 3 x H x W)`` -> ``(pool, logits)``:
    the 2048-d pool features and the 1008 bias-free logits, both in ``dtype`` (float64 default).

    Construct with ``load_inception``; a bare ``FIDInception()`` has random weights."""

    def __init__(self, dtype: torch.dtype = torch.float64):
        super().__init__()
        net = tv.Inception3(num_classes=NUM_LOGITS, aux_logits=False, init_weights=False)
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = _BlockA(192, 32), _BlockA(256, 64), _BlockA(288, 64)
        net.Mixed_6b, net.Mixed_6c = _BlockC(768, 128), _BlockC(768, 160)
        net.Mixed_6d, net.Mixed_6e = _BlockC(768, 160), _BlockC(768, 192)
        net.Mixed_7b, net.Mixed_7c = _BlockE(1280, max_pool=False), _BlockE(2048, max_pool=True)
        self._stem = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                      "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                      "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
        for name in self._stem:
            self.add_module(name, getattr(net, name))
        self.fc = net.fc
        self.to(dtype)
        self.dtype = dtype
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)  # BatchNorm always uses the running statistics

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not (torch.is_tensor(images) and images.dtype == torch.uint8 and images.dim() == 4
                and images.shape[1] == 3):
            raise InputError("the FID Inception reads uint8 B x 3 x H x W images (adatok.eval.inception."
                             f"to_uint8 converts [0, 1] floats), got {getattr(images, 'dtype', type(images))} "
                             f"{tuple(getattr(images, 'shape', ()))}")
        with torch.autocast(images.device.type, enabled=False):
            x = resize_tf1_bilinear(images.to(self.dtype), INPUT_SIZE)
            x = (x - 128) / 128
            for name in self._stem:
                x = getattr(self, name)(x)
            pool = F.adaptive_avg_pool2d(x, 1).flatten(1)
            logits = pool @ self.fc.weight.T  # TiTok's "logits_unbiased": no bias
        return pool, logits


def load_inception(path: Optional[str | Path] = None, device=None,
                   dtype: torch.dtype = torch.float64) -> FIDInception:
    """The FID Inception with the weights of ``path`` (or ``$ADATOK_WEIGHTS_DIR`` / torch hub's
    cache, file ``pt_inception-2015-12-05-6726825d.pth``); strict key and shape check."""
    file = _find("FID Inception weights (--inception FILE)", (INCEPTION_FILE,), path, None)
    model = FIDInception(dtype=torch.float32)
    sd = {k: v for k, v in _load_state_dict(file).items() if not k.endswith("num_batches_tracked")}
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    bad = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
           if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or bad:
        raise CheckpointError(f"{file}: not the FID Inception layout ({INCEPTION_FILE}): missing "
                              f"{missing[:4]}, unexpected {unexpected[:4]}, shape mismatches {bad[:4]}")
    model.load_state_dict(sd, strict=False)
    model.to(device=device, dtype=dtype)
    model.dtype = dtype
    model.source = str(file)
    return model
