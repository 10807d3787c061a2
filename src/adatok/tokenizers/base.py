"""The tokenizer interface and the input checks, as the tokenizer packages see them.

Both live one layer down (``adatok.interface``, ``adatok.checks``) so that the conv autoencoders
of ``adatok.pixel`` implement the same interface without importing this package.
"""

from ..checks import check_full_lengths, check_ids, check_images
from ..interface import PAD_ID, AdaptiveTokenizer, Tokenizer

__all__ = ["PAD_ID", "Tokenizer", "AdaptiveTokenizer", "check_images", "check_ids", "check_full_lengths"]
