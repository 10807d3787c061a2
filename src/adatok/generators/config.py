"""MaskGIT generator configuration (frozen dataclasses; YAML is only for training runs).

Token space (the official TiTok generators, bytedance/1d-tokenizer), with V = ``codebook_size`` and C = ``num_classes``:

    0 .. V-1            image tokens (the tokenizer's codes)
    V                   [MASK]
    V+1 .. V+C          class c -> V + 1 + c
    V+C+1               "no class" (dropped label, unconditional pass)
    -- length-aware models only (``lengths`` not empty), appended after the official ids --
    V+C+2               [PAD]: image positions past the sample's length
    V+C+3               [LENGTH MASK]: the length is not known yet
    V+C+4 .. V+C+3+N    length bin j (``lengths[j]`` tokens)

The input sequence is ``[class id, (length id,) K image ids]``; logits are produced for the K
image positions over the V image tokens (and, for length-aware models, over the N length bins at
the length position).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ConfigError

ARCHS = ("bert", "uvit")
SCHEDULES = ("constant", "linear", "power-cosine")


@dataclass(frozen=True)
class SamplingConfig:
    """Default sampling settings of a generator (the official ImageNet ones for the paper presets).

    temperature: ``randomize_temperature`` of the official loop: Gumbel noise scale, annealed
                 linearly to 0 over the steps (0 = deterministic).
    guidance:    classifier-free guidance scale ``g``; ``schedule`` says how it varies over steps.
    softmax_annealing: divide logits by ``0.5 + 0.8 (1 - ratio)`` (official ImageNet sampling).
    length_temperature: temperature of the length draw of length-aware models (1 = the learned
                 distribution).
    """

    steps: int = 8
    temperature: float = 1.0
    guidance: float = 4.5
    schedule: str = "constant"
    guidance_pow: float = 3.0
    softmax_annealing: bool = False
    length_temperature: float = 1.0

    def __post_init__(self):
        check_sampling(self.steps, self.schedule, self.guidance, self.temperature)


def check_sampling(steps, schedule, guidance, temperature) -> None:
    """One-line errors for bad sampling settings (called before any work starts)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1, got {steps!r}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown guidance schedule {schedule!r}: use one of {', '.join(SCHEDULES)}")
    for name, value in (("guidance", guidance), ("temperature", temperature)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class MaskGITConfig:
    """A MaskGIT generator over 1D tokens.

    arch:   "bert" — the official ``ImageBert`` (a BERT encoder: post-norm, LayerNorm eps 1e-12,
            learned positions + token-type embedding, dropout; used with TiTok L-32 and B-64), or
            "uvit" — the official ``UViTBert`` (pre-norm blocks with long skips, qkv without bias,
            final LayerNorm; used with S-128). For "uvit", ``depth`` is the official
            ``num_hidden_layers``: depth/2 in-blocks, one mid-block, depth/2 out-blocks.
    lengths: empty for fixed-length tokens (the official models). Otherwise the token counts a
            sample may have (ascending, the largest = ``num_tokens``): the model also predicts the
            length (see ``adatok.generators.length``).
    tokenizer: the tokenizer preset whose tokens this generator models (a default for the CLI).
    """

    arch: str = "bert"
    num_tokens: int = 32
    codebook_size: int = 4096
    num_classes: int = 1000
    width: int = 768
    depth: int = 24
    heads: int = 16
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    attn_dropout: float = 0.1
    lengths: tuple = ()
    tokenizer: str = ""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self):
        object.__setattr__(self, "lengths", tuple(int(n) for n in self.lengths))
        if self.arch not in ARCHS:
            raise ConfigError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        for name in ("num_tokens", "codebook_size", "width", "depth", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"MaskGITConfig.{name} must be a positive integer, got {value!r}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ConfigError(f"MaskGITConfig.num_classes must be an integer >= 0, got {self.num_classes!r}")
        if self.width % self.heads:
            raise ConfigError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.arch == "uvit" and (self.depth < 2 or self.depth % 2):
            raise ConfigError(f"a uvit generator needs an even depth >= 2 (in/out block pairs), got {self.depth}")
        if self.arch == "uvit" and (self.dropout or self.attn_dropout):
            raise ConfigError("the uvit generator has no dropout (as the official UViTBert): "
                              "set dropout=0, attn_dropout=0")
        if not (0 <= self.dropout < 1 and 0 <= self.attn_dropout < 1):
            raise ConfigError("dropout and attn_dropout must lie in [0, 1)")
        if self.lengths:
            ok = all(0 < a < b for a, b in zip(self.lengths, self.lengths[1:])) and self.lengths[0] >= 1
            if not ok or self.lengths[-1] != self.num_tokens:
                raise ConfigError(f"lengths {self.lengths} must be ascending positive token counts ending at "
                                  f"num_tokens ({self.num_tokens})")

    # ------------------------------------------------------------------ token space
    @property
    def mask_id(self) -> int:
        return self.codebook_size

    @property
    def null_class_id(self) -> int:
        return self.codebook_size + 1 + self.num_classes

    @property
    def pad_id(self) -> int:
        return self.null_class_id + 1

    @property
    def length_mask_id(self) -> int:
        return self.null_class_id + 2

    @property
    def length_offset(self) -> int:
        return self.null_class_id + 3

    @property
    def vocab_size(self) -> int:
        extra = 2 + len(self.lengths) if self.lengths else 0
        return self.codebook_size + self.num_classes + 2 + extra

    @property
    def prefix(self) -> int:
        """Positions before the image tokens: the class (and the length)."""
        return 2 if self.lengths else 1

    @property
    def seq_len(self) -> int:
        return self.prefix + self.num_tokens

    @property
    def norm_eps(self) -> float:
        return 1e-12 if self.arch == "bert" else 1e-5

    @property
    def length_aware(self) -> bool:
        return bool(self.lengths)

    # ------------------------------------------------------------------ for `adatok models`
    @property
    def image_size(self) -> str:
        return "-"

    def quantizer_summary(self) -> str:
        kind = "length-aware " if self.lengths else ""
        return f"{kind}{self.arch} over {self.codebook_size} codes, {self.num_classes} cls"
