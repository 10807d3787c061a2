"""TiTok: "An Image is Worth 32 Tokens for Reconstruction and Generation" (Yu et al., NeurIPS 2024)."""

from .config import TiTokConfig, ViTConfig, VIT_SIZES
from .model import TiTok

__all__ = ["TiTok", "TiTokConfig", "ViTConfig", "VIT_SIZES"]
