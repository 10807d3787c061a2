"""Prefix-TiTok training (tail-token drop: One-D-Piece, Miwa et al. 2025; nested dropout: FlexTok,
Bachmann et al. 2025): every part of a ``PrefixTiTok`` trains on pixels with TiTok's single-stage
objective (reconstruction + perceptual + GAN + the quantizer's term, ``PixelLossOptions``), each
sample decoded from its own first k tokens (the model's ``draw_lengths``).

``options.warm_start`` (ours): a TiTok (preset name with shipped weights, folder or file) whose
weights start ``model.titok`` — e.g. ``titok_default`` for ``titok_prefix_default``; its config must
equal the prefix model's ``titok``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from ...tokenizers.prefix import PrefixTiTok
from .base import register_task
from .common import PixelLossOptions, PixelTask


@dataclass(frozen=True)
class PrefixOptions(PixelLossOptions):
    warm_start: str = ""


@register_task
class PrefixTask(PixelTask):
    name = "prefix"
    model_cls = PrefixTiTok
    options_cls = PrefixOptions

    def prepare(self):
        if not self.opts.warm_start:
            return
        from ...hub import load

        titok = load(self.opts.warm_start)
        if getattr(titok, "config", None) != self.model.config.titok:
            raise ConfigError(f"warm_start {self.opts.warm_start!r} is not a TiTok with this model's titok config "
                              f"({self.model.config.titok})")
        self.model.titok.load_state_dict(titok.state_dict(), strict=True)

    def extra_logs(self, out):
        return {"mean_length": out.tokens.lengths.float().mean()}
