"""``adatok eval``: reconstruction quality of a tokenizer on a set of images."""

from __future__ import annotations

import torch

from ..eval.metrics import codebook_usage, psnr, ssim
from ..interface import Tokenizer
from .common import ReadableBatches, add_model_args, autocast, load_tokenizer
from .sweep import add_sweep_args, check_sweep_args, run_sweep


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="PSNR / SSIM / codebook usage of reconstructions over a set of images")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    add_model_args(p)
    add_sweep_args(p)
    p.set_defaults(func=run)


def evaluate(model: Tokenizer, batches, device, amp=None) -> dict:
    """Mean PSNR/SSIM (reconstructions rounded to 8 bits, as saved images are), tokens per image,
    and codebook usage over ``(paths, batch)`` pairs."""
    psnrs, ssims, lengths, ids = [], [], [], []
    with torch.inference_mode(), (amp or torch.autocast(device.type, enabled=False)):
        for _, batch in batches:
            batch = batch.to(device)
            tokens = model.encode(batch)
            recon = (model.decode(tokens).float() * 255).round() / 255
            psnrs.append(psnr(recon, batch.float()))
            ssims.append(ssim(recon, batch.float()))
            lengths.append(tokens.lengths)
            if tokens.ids is not None:
                ids.append(tokens.ids.flatten())
    if not psnrs:
        return {"images": 0}
    p, s = torch.cat(psnrs), torch.cat(ssims)
    out = {"images": p.numel(), "psnr": p.mean().item(), "psnr_std": p.std().item() if p.numel() > 1 else 0.0,
           "ssim": s.mean().item(), "tokens": torch.cat(lengths).float().mean().item()}
    if ids and model.discrete:
        out.update(codebook_usage(torch.cat(ids), model.codebook_size))
    return out


def run(args) -> int:
    if args.sweep:
        return run_sweep(args)
    check_sweep_args(args)
    model = load_tokenizer(args)
    device = next(model.parameters()).device
    batches = ReadableBatches(args, model.image_size, "eval")
    result = evaluate(model, batches, device, autocast(args, device))
    failed = batches.failed
    if not result["images"]:
        print(f"adatok: no image could be read ({failed} failed)")
        return 1
    line = (f"{result['images']} image(s): PSNR {result['psnr']:.2f} dB (std {result['psnr_std']:.2f}), "
            f"SSIM {result['ssim']:.4f}, {result['tokens']:.1f} tokens/image")
    if "usage" in result:
        line += f", codebook usage {result['usage']:.1%} ({result['entropy_bits']:.2f} bits)"
    print(line + (f"; {failed} file(s) skipped" if failed else ""))
    return 1 if failed else 0
