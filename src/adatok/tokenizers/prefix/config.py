"""Prefix-TiTok configuration (frozen dataclass; YAML is only for training runs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import ConfigError
from ..titok.config import TiTokConfig

TRAIN_LENGTHS = ("uniform", "inverse", "full")


@dataclass(frozen=True)
class PrefixConfig:
    """A TiTok whose every allowed prefix decodes (tail-token drop, One-D-Piece; nested dropout, FlexTok).

    titok:          the TiTok inside (encoder, quantizer, decoder; any TiTok layout).
    length_step:    allowed lengths are ``length_step, 2 * length_step, ..., titok.num_tokens``
                    (``num_tokens`` must be a multiple), unless ``lengths`` lists them.
    lengths:        explicit allowed lengths (ascending, the last ``titok.num_tokens``); () = by step.
    train_lengths:  how training draws each *sample's* kept length k among the allowed ones:
                    "uniform" (One-D-Piece's tail drop on a grid), "inverse" (p(k) ~ 1/k: a bias to
                    short prefixes, which see the least signal) or "full" (no drop: plain TiTok).
    full_prob:      extra probability that a sample keeps every token (the full length stays sharp).
    predictor:      a length-predictor head on the encoder output (``predict_lengths``), trained after
                    the tokenizer (``prefix.model.fit_length_predictor``); ``predictor_width`` its width,
                    ``predictor_criterion`` the criterion name whose choice it predicts (its threshold is
                    an input).
    """

    titok: TiTokConfig = field(default_factory=TiTokConfig)
    length_step: int = 8
    lengths: tuple = ()
    train_lengths: str = "uniform"
    full_prob: float = 0.0
    predictor: bool = True
    predictor_width: int = 64
    predictor_criterion: str = "psnr"

    def __post_init__(self):
        k = self.titok.num_tokens
        if self.train_lengths not in TRAIN_LENGTHS:
            raise ConfigError(f"train_lengths must be one of {TRAIN_LENGTHS}, got {self.train_lengths!r}")
        if not 0 <= self.full_prob <= 1:
            raise ConfigError(f"full_prob must lie in [0, 1], got {self.full_prob!r}")
        if self.predictor_width < 1:
            raise ConfigError(f"predictor_width must be >= 1, got {self.predictor_width}")
        if self.lengths:
            ls = tuple(self.lengths)
            if any(not isinstance(n, int) or n < 1 for n in ls) or list(ls) != sorted(set(ls)) or ls[-1] != k:
                raise ConfigError(f"lengths {list(ls)} must be distinct positive ints, ascending, ending at "
                                  f"num_tokens {k}")
        elif self.length_step < 1 or k % self.length_step:
            raise ConfigError(f"num_tokens {k} is not a multiple of length_step {self.length_step}")

    @property
    def allowed_lengths(self) -> tuple[int, ...]:
        if self.lengths:
            return tuple(int(n) for n in self.lengths)
        return tuple(range(self.length_step, self.titok.num_tokens + 1, self.length_step))

    @property
    def num_tokens(self) -> int:
        return self.titok.num_tokens

    @property
    def image_size(self) -> int:
        return self.titok.image_size

    def quantizer_summary(self) -> str:
        return self.titok.quantizer_summary() + f", prefixes {self.allowed_lengths[0]}..{self.num_tokens}"
