"""Prefix tokenizers: a TiTok trained so that any prefix of its 1D tokens decodes."""

from .config import PrefixConfig
from .model import LengthPredictor, PrefixTiTok

__all__ = ["PrefixConfig", "PrefixTiTok", "LengthPredictor"]
