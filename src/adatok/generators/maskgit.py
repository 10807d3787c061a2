"""MaskGIT over 1D tokens: a bidirectional transformer predicts masked image tokens from the
visible ones and a class token; sampling unmasks them in a few parallel steps (Chang et al.,
CVPR 2022; used over TiTok tokens in Yu et al., NeurIPS 2024). Official code: bytedance/1d-tokenizer.

    gen = adatok.create_model("maskgit_tiny")
    out = gen.generate(labels=torch.tensor([0, 3]), seed=0)     # Generated(ids, lengths, labels)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..errors import InputError
from ..hub_mixin import HubMixin
from ..interface import PAD_ID
from .blocks import BertBackbone, UViTBackbone
from .config import MaskGITConfig, check_sampling
from .sampling import gumbel_noise, maskgit_sample


@dataclass
class GeneratorOutput:
    """Shapes: logits ``B x K x V`` over the image codes; length_logits ``B x N`` over the length
    bins (length-aware models, else ``None``)."""

    logits: torch.Tensor
    length_logits: Optional[torch.Tensor] = None


@dataclass
class Generated:
    """Sampled tokens. Shapes: ids ``B x K`` int64 (positions past ``lengths`` hold ``PAD_ID``, -1), lengths
    ``B`` int64, labels ``B`` int64 (-1 = unconditional), images ``B x 3 x H x W`` in [0, 1] when
    a tokenizer decoded them."""

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    images: Optional[torch.Tensor] = None


class MaskGIT(HubMixin, nn.Module):
    """A MaskGIT generator (``arch`` "bert" or "uvit"; optionally length-aware)."""

    def __init__(self, config: MaskGITConfig):
        super().__init__()
        self.config = config
        self.backbone = BertBackbone(config) if config.arch == "bert" else UViTBackbone(config)
        self.head = nn.Linear(config.width, config.codebook_size)
        self.length_head = nn.Linear(config.width, len(config.lengths)) if config.lengths else None
        self.backbone.init_weights()
        init = nn.init.normal_ if config.arch == "bert" else nn.init.trunc_normal_
        for head in (self.head, self.length_head):
            if head is not None:
                init(head.weight, std=0.02)
                nn.init.zeros_(head.bias)

    @property
    def num_tokens(self) -> int:
        return self.config.num_tokens

    # ------------------------------------------------------------------ token space
    def class_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels ``B`` (class index, or -1 = no class) -> class-token ids ``B``."""
        c = self.config
        return torch.where(labels < 0, torch.full_like(labels, c.null_class_id), labels + c.codebook_size + 1)

    def length_ids(self, bins: torch.Tensor) -> torch.Tensor:
        """Length bins ``B`` (index into ``config.lengths``, or -1 = unknown) -> length-token ids."""
        c = self.config
        return torch.where(bins < 0, torch.full_like(bins, c.length_mask_id), bins + c.length_offset)

    # ------------------------------------------------------------------ forward
    def forward(self, ids: torch.Tensor, labels: Optional[torch.Tensor] = None,
                length_bins: Optional[torch.Tensor] = None,
                class_ids: Optional[torch.Tensor] = None) -> GeneratorOutput:
        """Logits for ids ``B x K`` (image codes, [MASK], or [PAD]) and labels ``B`` (-1 = none).

        ``length_bins`` (``B``, -1 = unknown) is required by length-aware models. ``class_ids``
        passes class-token ids directly instead of ``labels`` (the sampler does)."""
        c = self.config
        if class_ids is None:
            if labels is None:
                raise InputError("pass labels (B, -1 = no class) or class_ids")
            class_ids = self.class_ids(labels)
        parts = [class_ids.unsqueeze(1)]
        if c.lengths:
            if length_bins is None:
                raise InputError("this generator is length-aware: pass length_bins (B, -1 = unknown)")
            parts.append(self.length_ids(length_bins).unsqueeze(1))
        hidden = self.backbone(torch.cat(parts + [ids], dim=1))
        logits = self.head(hidden[:, c.prefix:])
        length_logits = self.length_head(hidden[:, 1]) if self.length_head is not None else None
        return GeneratorOutput(logits, length_logits)

    # ------------------------------------------------------------------ sampling
    def check_labels(self, labels) -> torch.Tensor:
        """Validate class labels (a list or ``B`` int tensor; -1 = unconditional); one host sync."""
        c = self.config
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
            raise InputError(f"labels must be a 1-D list/tensor of class ids, got shape {tuple(labels.shape)} "
                             f"{labels.dtype}")
        if labels.numel():
            lo, hi = int(labels.min()), int(labels.max())
            if c.num_classes == 0 and hi >= 0:
                raise InputError("this generator is unconditional (num_classes=0): give no classes")
            if lo < -1 or hi >= c.num_classes:
                raise InputError(f"class ids must lie in [0, {c.num_classes - 1}] (or -1 for none), "
                                 f"got {lo if lo < -1 else hi}")
        return labels.long()

    @torch.no_grad()
    def generate(self, labels=None, num_samples: Optional[int] = None, steps: Optional[int] = None,
                 guidance: Optional[float] = None, schedule: Optional[str] = None,
                 temperature: Optional[float] = None, guidance_pow: Optional[float] = None,
                 softmax_annealing: Optional[bool] = None, lengths=None, seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, progress: bool = False) -> Generated:
        """Sample token ids. ``labels``: class per sample (list/tensor, -1 = unconditional) or
        ``None`` with ``num_samples`` for unconditional samples. Settings default to
        ``config.sampling``. ``lengths`` forces the token counts of a length-aware model (else they
        are sampled). ``seed`` (or a ``torch.Generator`` on the model's device) makes it repeatable.
        """
        s, c = self.config.sampling, self.config
        steps = s.steps if steps is None else steps
        guidance = s.guidance if guidance is None else guidance
        schedule = s.schedule if schedule is None else schedule
        temperature = s.temperature if temperature is None else temperature
        check_sampling(steps, schedule, guidance, temperature)
        device = self.head.weight.device
        if labels is None:
            if num_samples is None or num_samples < 1:
                raise InputError("give labels, or num_samples >= 1 for unconditional samples")
            labels = torch.full((num_samples,), -1, dtype=torch.long)
        labels = self.check_labels(labels).to(device)
        if lengths is not None and not c.lengths:
            raise InputError("lengths applies to length-aware generators only (config.lengths is empty)")
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(0 if seed is None else seed)
        b, k = labels.shape[0], c.num_tokens
        cond = self.class_ids(labels)
        null = torch.full_like(cond, c.null_class_id)
        if c.num_classes == 0:
            guidance = 0.0  # no classes: the conditional and unconditional passes are the same
        was_training = self.training
        self.eval()
        try:
            bins = self._length_bins(cond, lengths, b, generator) if c.lengths else None
            counts = torch.full((b,), k, dtype=torch.long, device=device)
            init = torch.full((b, k), c.mask_id, dtype=torch.long, device=device)
            if bins is not None:
                counts = torch.tensor(c.lengths, device=device)[bins]
                init = torch.where(torch.arange(k, device=device) < counts.unsqueeze(1), init, c.pad_id)

            def logits_fn(ids, class_ids):
                lb = None if bins is None else bins.repeat(ids.shape[0] // b)
                return self(ids, length_bins=lb, class_ids=class_ids).logits

            ids = maskgit_sample(
                logits_fn, cond, null, init, counts, c.mask_id, steps, guidance, schedule, temperature,
                s.guidance_pow if guidance_pow is None else guidance_pow,
                s.softmax_annealing if softmax_annealing is None else softmax_annealing, generator, progress)
        finally:
            self.train(was_training)
        ids = torch.where(ids >= c.codebook_size, torch.full_like(ids, PAD_ID), ids)  # [PAD] -> the tokenizers' pad
        return Generated(ids=ids, lengths=counts, labels=labels)

    def _length_bins(self, cond: torch.Tensor, lengths, b: int, generator) -> torch.Tensor:
        """Length bin per sample: forced by ``lengths``, else drawn from the model's length head
        given the class alone (every image position [MASK], length unknown)."""
        c, device = self.config, cond.device
        table = torch.tensor(c.lengths, device=device)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=device).long().reshape(-1)
            if lengths.numel() not in (1, b):
                raise InputError(f"give one length, or one per sample ({b}), got {lengths.numel()}")
            lengths = lengths.expand(b)
            bins = (lengths.unsqueeze(1) == table).long().argmax(1)
            if not bool((table[bins] == lengths).all()):
                raise InputError(f"lengths must be among this generator's lengths {c.lengths}")
            return bins
        ids = torch.full((b, c.num_tokens), c.mask_id, dtype=torch.long, device=device)
        unknown = torch.full((b,), -1, dtype=torch.long, device=device)
        logits = self(ids, length_bins=unknown, class_ids=cond).length_logits.float()
        tau = c.sampling.length_temperature
        if tau > 0:
            logits = logits / tau + gumbel_noise(logits.shape, generator, device)
        return logits.argmax(dim=-1)
