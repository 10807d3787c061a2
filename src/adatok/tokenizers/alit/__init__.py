"""ALIT: adaptive-length image tokens by recurrent allocation (spec alit.md)."""

from .config import ALIT_SIZES, ALITConfig
from .model import ALIT, PAD_ID
from ...types import Selection
from .rollout import Iteration, Rollout

__all__ = ["ALIT", "ALITConfig", "ALIT_SIZES", "PAD_ID", "Iteration", "Rollout", "Selection"]
