"""``adatok models``: the preset table."""

from __future__ import annotations

import torch

from ..interface import AdaptiveTokenizer
from ..registry import create_model, get_config, get_preset, list_models


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the model presets")
    p.add_argument("pattern", nargs="?", default="", help="only names containing this text")
    p.set_defaults(func=run)


def describe(name: str) -> dict:
    preset, cfg = get_preset(name), get_config(name)
    with torch.device("meta"):  # count parameters without allocating them
        model = create_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    return {
        "name": name,
        "tokens": _tokens(model, cfg),
        "image": cfg.image_size,
        "quantizer": cfg.quantizer_summary(),
        "params": f"{params / 1e6:.1f}M",
        "weights": _weights(preset),
        "reported": preset.reported or "-",
        "description": preset.description,
    }


def run(args) -> int:
    rows = [describe(n) for n in list_models(args.pattern)]
    cols = ["name", "tokens", "image", "quantizer", "params", "reported", "weights"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols} if rows else {}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    return 0


def _tokens(model, cfg) -> str:
    """Token count: an adaptive tokenizer's range of lengths, else the config's count."""
    if isinstance(model, AdaptiveTokenizer):
        lengths = model.allowed_lengths
        return f"{lengths[0]}..{lengths[-1]}"
    return str(cfg.num_tokens)


def _weights(preset) -> str:
    if preset.bundled:
        return "bundled"
    if preset.hub_repo:
        return preset.hub_repo + (f"/{preset.hub_file}" if preset.hub_file else "")
    return "-"
