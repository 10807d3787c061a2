"""Generator + tokenizer: sample ids, decode them to images.

    import adatok
    from adatok.generators import generate_images
    tok = adatok.load("titok_l32")                     # official weights (hub) or a path
    gen = adatok.load("maskgit_titok_l32")
    out = generate_images(gen, tok, classes=[1, 207], n=4, seed=0)   # Generated: ids, lengths, labels, images
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..errors import ConfigError, InputError
from ..interface import AdaptiveTokenizer, Tokenizer
from .config import check_sampling
from .maskgit import Generated, MaskGIT


def check_pair(generator: MaskGIT, tokenizer: Tokenizer) -> None:
    """One-line error unless ``generator`` models ``tokenizer``'s tokens (codebook, token count,
    lengths), read from the tokenizer interface (``adatok.interface``)."""
    g = generator.config
    if not isinstance(tokenizer, Tokenizer):
        raise ConfigError(f"expected an adatok tokenizer, got {type(tokenizer).__name__}")
    if not tokenizer.discrete:
        raise ConfigError("this tokenizer has continuous tokens: MaskGIT generates discrete ids; "
                          "use a VQ tokenizer")
    if tokenizer.codebook_size != g.codebook_size:
        raise ConfigError(f"the generator predicts {g.codebook_size} codes but the tokenizer has a codebook of "
                          f"{tokenizer.codebook_size}: pair the generator with the tokenizer it was trained on")
    tokens = tokenizer.max_tokens
    if tokens < g.num_tokens if g.lengths else tokens != g.num_tokens:
        raise ConfigError(f"the generator makes {g.num_tokens} tokens per image but the tokenizer reads {tokens}: "
                          f"pair the generator with the tokenizer it was trained on")
    if g.lengths:
        if not isinstance(tokenizer, AdaptiveTokenizer):
            raise ConfigError("the generator is length-aware but this tokenizer is fixed-length (its decode_ids "
                              "takes no lengths): pair it with an adaptive tokenizer (ALIT, a prefix tokenizer)")
        bad = sorted(set(g.lengths) - set(tokenizer.allowed_lengths))
        if bad:
            raise ConfigError(f"the generator makes lengths {bad} that the tokenizer cannot decode "
                              f"(its lengths: {list(tokenizer.allowed_lengths)})")


def decode(tokenizer: Tokenizer, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Ids ``B x K`` (+ ``lengths``) -> images in [0, 1] through the tokenizer."""
    if isinstance(tokenizer, AdaptiveTokenizer):
        return tokenizer.decode_ids(ids, lengths=lengths)
    return tokenizer.decode_ids(ids)


def class_list(classes, n: int) -> torch.Tensor:
    """``n`` samples of each class in ``classes`` (``None`` -> ``n`` unconditional samples), in
    class order: [c0]*n + [c1]*n + ..."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"n (samples per class) must be an integer >= 1, got {n!r}")
    if classes is None or (isinstance(classes, Sequence) and len(classes) == 0):
        return torch.full((n,), -1, dtype=torch.long)
    return torch.as_tensor(list(classes), dtype=torch.long).repeat_interleave(n)


def generate_images(generator: MaskGIT, tokenizer, classes=None, n: int = 1, batch_size: Optional[int] = None,
                    seed: int = 0, progress: bool = False, autocast_dtype: Optional[torch.dtype] = None,
                    **sampling) -> Generated:
    """``n`` samples per class (or unconditional), decoded to images.

    Every check (classes in range, sampling settings, generator/tokenizer pairing) runs before any
    sampling. Batches of ``batch_size`` (default: all at once) share one seeded generator, so the
    same arguments give the same images. ``sampling`` overrides ``generator.config.sampling``
    (steps, guidance, schedule, temperature, guidance_pow, softmax_annealing, lengths).
    """
    parts = list(iter_generate_images(generator, tokenizer, classes, n, batch_size, seed, progress,
                                      autocast_dtype, **sampling))
    return Generated(ids=torch.cat([p.ids for p in parts]), lengths=torch.cat([p.lengths for p in parts]),
                     labels=torch.cat([p.labels for p in parts]), images=torch.cat([p.images for p in parts]))


def iter_generate_images(generator: MaskGIT, tokenizer, classes=None, n: int = 1, batch_size: Optional[int] = None,
                         seed: int = 0, progress: bool = False, autocast_dtype: Optional[torch.dtype] = None,
                         **sampling):
    """:func:`generate_images` one batch at a time (``Generated`` of at most ``batch_size``
    samples each, same samples in the same order), for sample sets too large to hold (50k
    images for gFID). The checks run at the call, before the first batch is asked for."""
    if not isinstance(generator, MaskGIT):
        raise ConfigError(f"expected a MaskGIT generator, got {type(generator).__name__}")
    check_pair(generator, tokenizer)
    labels = generator.check_labels(class_list(classes, n))
    s = generator.config.sampling
    check_sampling(sampling.get("steps", s.steps), sampling.get("schedule", s.schedule),
                   sampling.get("guidance", s.guidance), sampling.get("temperature", s.temperature))
    batch_size = batch_size or labels.shape[0]
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    return _batches(generator, tokenizer, labels, batch_size, seed, progress, autocast_dtype, sampling)


@torch.no_grad()
def _batches(generator, tokenizer, labels, batch_size, seed, progress, autocast_dtype, sampling):
    device = generator.head.weight.device
    rng = torch.Generator(device=device).manual_seed(seed)
    ctx = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    for start in range(0, labels.shape[0], batch_size):  # batches, never single samples
        chunk = labels[start:start + batch_size]
        with ctx:
            out = generator.generate(chunk, generator=rng, progress=progress, **sampling)
            images = decode(tokenizer, out.ids, out.lengths).float().clamp(0, 1)
        out.images = images
        yield out
