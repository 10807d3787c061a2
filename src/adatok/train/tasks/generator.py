"""MaskGIT generator training on a token file (MaskGIT, Chang et al. 2022, as TiTok trains it;
``adatok data pretokenize`` makes the file).

``task: maskgit``, ``data.train: tokens.safetensors``. The generator's token count and codebook
follow the token file (a preset's own values are replaced), so one preset serves any tokenizer;
for a length-aware model (a preset with ``lengths``, or ``options.length_aware: true``) the allowed
lengths are the ones the file holds. Sample grids generate from labels spread over the file
and decode them with ``options.tokenizer`` (default: the tokenizer named in the token file); when
none can be loaded the grid shows the ids as gray levels.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Iterator

import torch

from ...errors import AdatokError, ConfigError
from ...generators import MaskGIT, MaskGITConfig
from ...generators.length import check_lengths, length_aware_inputs
from ...generators.training import arccos_mask, drop_labels, length_loss, masked_token_loss
from .base import Phase, Task, register_task
from .common import build_model

log = logging.getLogger("adatok.train")


@dataclass(frozen=True)
class MaskGITOptions:
    label_smoothing: float = 0.1
    unmasked_weight: float = 0.1  # loss weight of visible positions (masked ones weigh 1)
    class_dropout: float = 0.1
    length_aware: bool = False  # make the model length-aware (lengths from the token file)
    length_hide_prob: float = 0.1  # share of samples that train the length head
    length_weight: float = 1.0
    tokenizer: str = ""  # decodes sample grids (preset/folder/file); default: the token file's
    tokenizer_weights: str = ""
    sample_seed: int = 0


@register_task
class MaskGITTask(Task):
    name = "maskgit"
    options_cls = MaskGITOptions

    def __init__(self, run, device):
        super().__init__(run, device)
        from ...data.token_files import read_token_file

        if not run.data.train.endswith((".safetensors", ".npz")):
            raise ConfigError(f"task maskgit trains on a token file (data.train=tokens.safetensors), got "
                              f"{run.data.train!r}: write one with `adatok data pretokenize`")
        self.tokens = read_token_file(run.data.train)
        self.model = self._build(run).to(device)
        self._tokenizer, self._tokenizer_failed = None, False
        self._rng_step, self._micro = -1, 0

    # ------------------------------------------------------------------ model
    def _build(self, run) -> MaskGIT:
        f = self.tokens
        lengths = tuple(sorted(set(f.lengths.tolist())))
        fit = {"num_tokens": f.num_tokens}
        if f.codebook_size:
            fit["codebook_size"] = int(f.codebook_size)
        if f.meta.get("tokenizer"):
            fit["tokenizer"] = str(f.meta["tokenizer"])  # the CLI's default --tokenizer for this generator
        from ...registry import get_config, list_models

        if run.model in list_models():
            preset = get_config(run.model)
            if not isinstance(preset, MaskGITConfig):
                raise ConfigError(f"task maskgit trains a MaskGIT generator, {run.model!r} is not one")
            if preset.lengths or self.opts.length_aware:
                fit["lengths"] = lengths
                fit["num_tokens"] = lengths[-1]
            run = replace(run, model_overrides={**fit, **run.model_overrides})
        model = build_model(run)
        if not isinstance(model, MaskGIT):
            raise ConfigError(f"task maskgit trains a MaskGIT generator, got {type(model).__name__}")
        self._check_data(model)
        return model

    def _check_data(self, model: MaskGIT) -> None:
        c, f, where = model.config, self.tokens, self.run.data.train
        width = f.num_tokens if not c.lengths else int(f.lengths.max())
        if (c.num_tokens != width) if not c.lengths else (c.num_tokens < width):
            raise ConfigError(f"{where}: rows have {width} tokens, the generator makes {c.num_tokens}")
        if not c.lengths and int(f.lengths.min()) != f.num_tokens:
            raise ConfigError(f"{where}: rows have different lengths ({int(f.lengths.min())}..{f.num_tokens}): "
                              "train a length-aware generator (options.length_aware=true)")
        if c.lengths:
            check_lengths(f.lengths, c, where)
        top = int(f.ids.max())
        if top >= c.codebook_size:
            raise ConfigError(f"{where}: token ids reach {top}, the generator's codebook has {c.codebook_size}")
        if c.num_classes and int(f.labels.max()) >= c.num_classes:  # unconditional models ignore labels
            raise ConfigError(f"{where}: labels reach {int(f.labels.max())}, the generator has {c.num_classes} "
                              "classes (set model_overrides.num_classes, or 0 for unconditional)")

    def trainable(self):
        return {"model": self.model}

    # ------------------------------------------------------------------ step
    def phases(self, batch, step, modules) -> Iterator[Phase]:
        # Masking, class dropout and dropout draw from an RNG seeded by (run seed, step, micro-batch,
        # rank): a step's randomness does not depend on what ran before it, so resume is exact.
        with _seeded_rng(self._step_seed(step), self.device):
            yield from self._phases(batch, modules)

    def _step_seed(self, step: int) -> int:
        self._micro = self._micro + 1 if step == self._rng_step else 0
        self._rng_step = step
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        key = f"{self.run.train.seed}/{step}/{self._micro}/{rank}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1

    def _phases(self, batch, modules) -> Iterator[Phase]:
        c, o = self.model.config, self.opts
        ids, lengths = batch["ids"][:, : c.num_tokens], batch["length"]  # files may pad wider than the longest row
        labels = batch["label"] if c.num_classes else torch.full_like(batch["label"], -1)
        labels = drop_labels(labels, o.class_dropout)
        masked = arccos_mask(lengths, ids.shape[1])
        if c.lengths:
            inputs, length_in, bins, hidden, valid = length_aware_inputs(ids, lengths, masked, c, o.length_hide_prob)
            out = modules["model"](inputs, labels, length_in)
            loss, logs = masked_token_loss(out.logits, ids, masked, valid & ~hidden.unsqueeze(1),
                                           o.label_smoothing, o.unmasked_weight)
            lloss, llogs = length_loss(out.length_logits, bins, hidden)
            logs.update(llogs, token_ce=loss.detach())
            loss = loss + o.length_weight * lloss
        else:
            inputs = torch.where(masked, torch.full_like(ids, c.mask_id), ids)
            out = modules["model"](inputs, labels)
            loss, logs = masked_token_loss(out.logits, ids, masked, torch.ones_like(masked),
                                           o.label_smoothing, o.unmasked_weight)
        yield Phase("model", loss, logs)

    # ------------------------------------------------------------------ sample grids
    @torch.no_grad()
    def samples(self, labels, model):
        c = model.config
        labels = labels if c.num_classes else torch.full_like(labels, -1)
        gen = torch.Generator(device=labels.device).manual_seed(self.opts.sample_seed)
        out = model.generate(labels, generator=gen)
        tokenizer = self._load_tokenizer(labels.device)
        if tokenizer is not None:
            from ...generators.pipeline import decode

            return [decode(tokenizer, out.ids, out.lengths).float().clamp(0, 1)]
        return [_ids_as_images(out.ids, out.lengths, c.codebook_size)]

    def _load_tokenizer(self, device):
        if self._tokenizer is not None or self._tokenizer_failed:
            return self._tokenizer
        from ...generators.pipeline import check_pair
        from ...hub import load

        name = self.opts.tokenizer or self.tokens.meta.get("tokenizer", "")
        weights = self.opts.tokenizer_weights or (self.tokens.meta.get("weights") if not self.opts.tokenizer else "")
        try:
            if not name:
                raise ConfigError("no tokenizer named (options.tokenizer)")
            tok = load(name, weights=weights or None).to(device).eval()
            check_pair(self.model, tok)
            self._tokenizer = tok
        except (AdatokError, OSError) as e:
            self._tokenizer_failed = True
            log.warning("sample grids show token ids, not images: cannot use tokenizer %r (%s)", name, e)
        return self._tokenizer


@contextlib.contextmanager
def _seeded_rng(seed: int, device: torch.device):
    """Run the block with the CPU (and this CUDA device's) RNG seeded by ``seed``; the global
    streams are restored afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _ids_as_images(ids: torch.Tensor, lengths: torch.Tensor, codebook: int, size: int = 64) -> torch.Tensor:
    """Ids as gray squares (one cell per token, black past the length): a sample grid without a
    tokenizer. Shapes: ``B x K`` -> ``B x 3 x size x size``."""
    b, k = ids.shape
    side = int(k**0.5 + 0.999)
    valid = torch.arange(k, device=ids.device) < lengths.unsqueeze(1)
    gray = torch.where(valid, (ids.float() + 1) / codebook, torch.zeros_like(ids, dtype=torch.float))
    gray = torch.nn.functional.pad(gray, (0, side * side - k)).view(b, 1, side, side)
    return torch.nn.functional.interpolate(gray, size=(size, size), mode="nearest").expand(b, 3, size, size)


__all__ = ["MaskGITOptions", "MaskGITTask"]
