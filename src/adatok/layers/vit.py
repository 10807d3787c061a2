"""What TiTok and ALIT share about their ViTs: the size of one (``ViTConfig``) and the names of its
block parameters in the official open_clip-style checkpoints (``OPEN_CLIP_BLOCK_KEYS``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..convert_utils import KeyRule
from ..errors import ConfigError


@dataclass(frozen=True)
class ViTConfig:
    """Width / depth / heads of one ViT (the official TiTok sizes: small 512/8/8, base 768/12/12,
    large 1024/24/16; head dim 64)."""

    width: int = 512
    depth: int = 8
    heads: int = 8
    mlp_ratio: float = 4.0

    def __post_init__(self):
        if min(self.width, self.depth, self.heads) < 1:
            raise ConfigError(f"ViT width/depth/heads must be positive, got {self}")
        if self.width % self.heads:
            raise ConfigError(f"ViT width {self.width} is not divisible by heads {self.heads}")


# One transformer block's parameters: official open_clip ``ResidualAttentionBlock`` names (regex,
# after ``<side>.transformer.<i>.``) -> ours (``layers/block.py``; group 2 is weight|bias).
OPEN_CLIP_BLOCK_KEYS = {
    r"ln_1\.(weight|bias)": r"norm1.\2",
    r"attn\.in_proj_(weight|bias)": r"attn.qkv.\2",
    r"attn\.out_proj\.(weight|bias)": r"attn.proj.\2",
    r"ln_2\.(weight|bias)": r"norm2.\2",
    r"mlp\.c_fc\.(weight|bias)": r"mlp.fc1.\2",
    r"mlp\.c_proj\.(weight|bias)": r"mlp.fc2.\2",
}


def open_clip_block_rules(side: str) -> list[KeyRule]:
    """Key rules ``<side>.transformer.<i>.<official>`` -> ``<side>.transformer.blocks.<i>.<ours>``."""
    return [KeyRule(rf"{side}\.transformer\.(\d+)\.{src}", rf"{side}.transformer.blocks.\1.{dst}")
            for src, dst in OPEN_CLIP_BLOCK_KEYS.items()]


__all__ = ["ViTConfig", "OPEN_CLIP_BLOCK_KEYS", "open_clip_block_rules"]
