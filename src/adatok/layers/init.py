"""Weight-init schemes for training the 1D tokenizers from scratch.

"official" — trunc-normal(0, 0.02) for every linear/conv weight, as the official TiTok and ALIT
code. At the papers' widths (768-1024) a block's attention path keeps a gain of about
(0.02 * sqrt(W))^2 = 0.3-0.4; at the widths a CPU can train (96-128) it is about 0.05 per block,
so at init the latent tokens carry almost nothing of the image (measured: encoder outputs of two
different images differ by 7e-4 of their scale at width 128) and training sits on a long plateau.
"fan_in" — trunc-normal(0, fan_in^-1/2): unit gain per layer at any width (ours, for small models).
Loading a checkpoint overwrites either, so the choice only matters when training from scratch.
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError

INIT_SCHEMES = ("official", "fan_in")


def check_init(name: str, owner: str) -> None:
    if name not in INIT_SCHEMES:
        raise ConfigError(f"{owner}.init={name!r}: choose one of {INIT_SCHEMES}")


def init_std(weight, scheme: str) -> float:
    """The std of a weight's trunc-normal init under ``scheme`` (fan-in = all but the first dim)."""
    return 0.02 if scheme == "official" else weight[0].numel() ** -0.5


def trunc_normal_init_(module: nn.Module, scheme: str) -> None:
    """Trunc-normal weight (std by ``scheme``) and zero bias for a Linear or Conv2d."""
    nn.init.trunc_normal_(module.weight, std=init_std(module.weight, scheme))
    if module.bias is not None:
        nn.init.zeros_(module.bias)
