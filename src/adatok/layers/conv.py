"""TensorFlow-"SAME" convolutions, as the MaskGIT-VQGAN (JAX) and TiTok's patch discriminator use them.

"SAME" keeps ``ceil(input / stride)`` outputs and, when the total padding is odd, puts the smaller
half first (before/top), unlike PyTorch's symmetric ``padding``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(kernel: int, stride: int, size: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) for one spatial dim: the smaller half goes first."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Conv2d with TF "SAME" padding (output size = ceil(input / stride)).

    With stride 1 the padding does not depend on the input size, and when it is even (3x3 -> 1, 1x1 -> 0)
    it is symmetric, so it is handed to the conv itself: no F.pad copy on the hot path. Only the
    asymmetric cases (even kernels, stride > 1) pad explicitly, computed per input size.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, bias=True):
        k, s, d = (nn.modules.utils._pair(v) for v in (kernel_size, stride, dilation))
        static = all(si == 1 and (ki - 1) * di % 2 == 0 for ki, si, di in zip(k, s, d))
        padding = tuple((ki - 1) * di // 2 for ki, di in zip(k, d)) if static else 0
        super().__init__(in_channels, out_channels, k, stride=s, padding=padding, dilation=d, bias=bias)
        self._static_padding = static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._static_padding:
            return super().forward(x)
        ph = same_padding(self.kernel_size[0], self.stride[0], x.shape[-2], self.dilation[0])
        pw = same_padding(self.kernel_size[1], self.stride[1], x.shape[-1], self.dilation[1])
        if ph[0] == ph[1] and pw[0] == pw[1]:  # symmetric for this size: still no copy
            padding = (ph[0], pw[0])
        else:
            x, padding = F.pad(x, (pw[0], pw[1], ph[0], ph[1])), (0, 0)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)

__all__ = ["Conv2dSame", "same_padding"]
