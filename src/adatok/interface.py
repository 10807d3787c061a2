"""The tokenizer interface every image tokenizer implements.

Two levels, declared rather than discovered (callers never ``hasattr``/``inspect`` a model):

* ``Tokenizer`` — images -> ``Tokens`` -> images, with the facts a caller needs to store and
  read tokens: ``image_size``, ``max_tokens``, ``discrete``, ``codebook_size`` (None when the tokens
  are continuous) and ``pad_id``. TiTok, the MaskGIT-VQGAN and the KL-VAE are fixed-length
  tokenizers: every image gets ``max_tokens`` tokens.
* ``AdaptiveTokenizer`` — a ``Tokenizer`` whose images may take fewer tokens: one of
  ``allowed_lengths``. It adds ``select`` (per-image length by a criterion of
  ``tokenizers/selection.py``) and ``sweep`` (the reconstruction at every allowed length). ALIT
  (recurrent allocation, Duggal et al. 2025) and prefix tokenizers (any prefix of the 1D tokens
  decodes: One-D-Piece's tail-token drop, FlexTok's nested dropout) are adaptive.

Conventions: images are float ``B x 3 x H x W`` in [0, 1]; ids are ``B x L`` int64 padded with
``PAD_ID`` beyond each image's ``lengths``; ``decode(tokens)`` honours ``tokens.lengths``.
This module sits at the bottom of the layer picture (README, "Architecture"): models of every
package import it, it imports no model.
"""

from __future__ import annotations

import abc
from typing import Optional

import torch
from torch import nn

from .errors import InputError
from .types import RateSweep, Selection, Tokens

PAD_ID = -1  # the one padding value of token ids, in memory and in every token file


class Tokenizer(nn.Module, metaclass=abc.ABCMeta):
    """An image tokenizer: ``encode`` images to ``Tokens``, ``decode`` them back.

    Subclasses implement the abstract members; ``reconstruct`` and ``num_tokens`` follow.
    """

    pad_id: int = PAD_ID
    adaptive: bool = False  # True exactly for ``AdaptiveTokenizer`` subclasses

    # -- facts ------------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def image_size(self) -> int:
        """Side of the square images the model reads and writes."""

    @property
    @abc.abstractmethod
    def max_tokens(self) -> int:
        """Most tokens one image can take (every image's count for a fixed-length tokenizer)."""

    @property
    @abc.abstractmethod
    def codebook_size(self) -> Optional[int]:
        """Number of codes of a discrete tokenizer; ``None`` when tokens are continuous vectors."""

    @property
    def discrete(self) -> bool:
        """Whether tokens are codebook ids (``Tokens.ids`` set, ``decode_ids`` works)."""
        return self.codebook_size is not None

    @property
    def num_tokens(self) -> int:
        """Alias of ``max_tokens`` (the name the official code uses)."""
        return self.max_tokens

    # -- the round trip -----------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, images: torch.Tensor) -> Tokens:
        """Images ``B x 3 x H x W`` in [0, 1] -> ``Tokens`` (``lengths`` always set)."""

    @abc.abstractmethod
    def decode(self, tokens: Tokens, clamp: bool = True) -> torch.Tensor:
        """``Tokens`` -> images ``B x 3 x H x W`` (clamped to [0, 1] unless ``clamp=False``)."""

    @abc.abstractmethod
    def decode_ids(self, ids: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                   clamp: bool = True) -> torch.Tensor:
        """Padded ids ``B x L`` (+ ``lengths`` ``B``; default: every id) -> images.

        A continuous tokenizer raises ``InputError`` (it has no ids)."""

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """``decode(encode(images))``, clamped."""
        return self.decode(self.encode(images))


class AdaptiveTokenizer(Tokenizer):
    """A tokenizer whose images take one of ``allowed_lengths`` tokens, chosen per image."""

    adaptive = True

    @property
    @abc.abstractmethod
    def allowed_lengths(self) -> tuple[int, ...]:
        """The token counts an image may take, ascending; the last is ``max_tokens``."""

    @abc.abstractmethod
    def select(self, images: torch.Tensor, criterion="l1", threshold: Optional[float] = None,
               max_tokens: Optional[int] = None, *, return_images: bool = True,
               generator: Optional[torch.Generator] = None) -> Selection:
        """Per-image length: the shortest allowed length whose reconstruction meets ``criterion``
        (a name or a ``selection.Criterion``; see ``tokenizers/selection.py``), else the one with the
        lowest error. ``max_tokens`` caps every image. ``generator`` seeds a tokenizer with random
        choices (ALIT's Bernoulli halting); deterministic ones ignore it."""

    def sweep_lengths(self, lengths: Optional[tuple[int, ...]] = None) -> tuple[int, ...]:
        """``lengths`` for ``sweep`` checked against ``allowed_lengths`` (default: all of them)."""
        allowed = self.allowed_lengths
        lengths = allowed if lengths is None else tuple(int(n) for n in lengths)
        bad = [n for n in lengths if n not in allowed]
        if bad or not lengths:
            raise InputError(f"lengths {bad or list(lengths)} are not among this model's {list(allowed)}")
        return lengths

    @abc.abstractmethod
    def sweep(self, images: torch.Tensor, lengths: Optional[tuple[int, ...]] = None, *,
              generator: Optional[torch.Generator] = None) -> RateSweep:
        """Reconstructions of every image at each of ``lengths`` (default ``allowed_lengths``);
        ``generator`` as in ``select``."""


__all__ = ["PAD_ID", "Tokenizer", "AdaptiveTokenizer"]
