"""Reusable blocks shared by the tokenizers."""

from .attention import Attention, attention_reference
from .mlp import Mlp
from .block import TransformerBlock, Transformer
from .norm import GroupNorm

__all__ = ["Attention", "attention_reference", "Mlp", "TransformerBlock", "Transformer", "GroupNorm"]
