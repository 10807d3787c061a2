"""Reusable blocks shared by the models: the only code two model packages share."""

from .attention import Attention, attention_reference
from .mlp import Mlp
from .block import TransformerBlock, Transformer
from .conv import Conv2dSame, same_padding
from .heads import ProxyCodeHead
from .norm import GroupNorm
from .vit import OPEN_CLIP_BLOCK_KEYS, ViTConfig, open_clip_block_rules

__all__ = ["Attention", "attention_reference", "Mlp", "TransformerBlock", "Transformer", "Conv2dSame",
           "same_padding", "ProxyCodeHead", "ViTConfig", "OPEN_CLIP_BLOCK_KEYS", "open_clip_block_rules", "GroupNorm"]
