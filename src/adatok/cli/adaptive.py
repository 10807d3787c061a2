"""CLI options for adaptive-length tokenizers (ALIT): ``--adaptive --criterion --threshold``."""

from __future__ import annotations

import argparse

import torch

from ..errors import ConfigError
from ..interface import AdaptiveTokenizer
from ..tokenizers.selection import CRITERIA


def add_adaptive_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("adaptive length (ALIT)")
    g.add_argument("--adaptive", action="store_true",
                   help="pick each image's token count with --criterion (adaptive tokenizers only)")
    g.add_argument("--criterion", default="l1", choices=sorted(CRITERIA),
                   help="l1/mse/psnr: reconstruction error of the pixel decode (the paper's; one decode per "
                        "iteration); confidence: the decoder's mean probability of the base codes (token "
                        "space, no decode until the length is chosen); budget: a fixed token count (default: l1)")
    g.add_argument("--threshold", type=float,
                   help="the criterion's threshold (defaults: l1 0.07, mse 0.01, psnr 25 dB, confidence 0.5; "
                        "the token count for budget)")
    g.add_argument("--max-tokens", type=int, help="cap every image's length")
    g.add_argument("--seed", type=int, default=0, help="seed of the random halting rule, if the model uses it")


def is_adaptive(model) -> bool:
    """Whether ``model`` declares adaptive lengths (``adatok.interface.AdaptiveTokenizer``)."""
    return isinstance(model, AdaptiveTokenizer)


def check_adaptive_args(args, model) -> None:
    if (args.adaptive or getattr(args, "all_lengths", False)) and not is_adaptive(model):
        raise ConfigError(f"--adaptive/--all-lengths need an adaptive-length tokenizer (ALIT); {args.model} has a "
                          "fixed length")


def select(model, batch: torch.Tensor, args, return_images: bool):
    """(tokens, reconstructions or None) of one batch, adaptive or at the model's full length."""
    if not is_adaptive(model):
        tokens = model.encode(batch)
        return tokens, (model.decode(tokens) if return_images else None)
    generator = torch.Generator(batch.device).manual_seed(args.seed)
    if args.adaptive:
        threshold = args.threshold
        if args.criterion == "budget" and threshold is not None:
            threshold = int(threshold)
        sel = model.select(batch, args.criterion, threshold, args.max_tokens, return_images=return_images,
                           generator=generator)
    else:
        sel = model.select(batch, "budget", None, args.max_tokens, return_images=return_images, generator=generator)
    return sel.tokens, sel.images
