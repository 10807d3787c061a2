"""``adatok eval``: reconstruction quality of a tokenizer on a set of images."""

from __future__ import annotations

import torch

from ..eval.metrics import codebook_usage, psnr, ssim
from .common import add_model_args, autocast, image_batches, load_model, progress


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="PSNR / SSIM / codebook usage of reconstructions over a set of images")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    add_model_args(p)
    p.set_defaults(func=run)


def evaluate(model, batches, device, bar=None, amp=None) -> dict:
    """Mean PSNR/SSIM (reconstructions rounded to 8 bits, as saved images are), tokens per image,
    and codebook usage over all images."""
    psnrs, ssims, lengths, ids, failed = [], [], [], [], 0
    with torch.inference_mode(), (amp or torch.autocast(device.type, enabled=False)):
        for paths, batch, errors in batches:
            failed += len(errors)
            if bar is not None:
                bar.update(len(paths) + len(errors))
            if not paths:
                continue
            batch = batch.to(device)
            tokens = model.encode(batch)
            recon = (model.decode(tokens).float() * 255).round() / 255
            psnrs.append(psnr(recon, batch.float()))
            ssims.append(ssim(recon, batch.float()))
            lengths.append(tokens.lengths)
            if tokens.ids is not None:
                ids.append(tokens.ids.flatten())
    if not psnrs:
        return {"images": 0, "failed": failed}
    p, s = torch.cat(psnrs), torch.cat(ssims)
    out = {"images": p.numel(), "failed": failed, "psnr": p.mean().item(), "psnr_std": p.std().item() if p.numel() > 1 else 0.0,
           "ssim": s.mean().item(), "tokens": torch.cat(lengths).float().mean().item()}
    if ids and hasattr(model, "config") and getattr(model.config, "codebook_size", None):
        out.update(codebook_usage(torch.cat(ids), model.config.codebook_size))
    return out


def run(args) -> int:
    model = load_model(args)
    device = next(model.parameters()).device
    total, batches = image_batches(args, model.image_size)
    bar = progress(total, "eval")
    result = evaluate(model, batches, device, bar, autocast(args, device))
    bar.close()
    if not result["images"]:
        print(f"adatok: no image could be read ({result['failed']} failed)")
        return 1
    line = (f"{result['images']} image(s): PSNR {result['psnr']:.2f} dB (std {result['psnr_std']:.2f}), "
            f"SSIM {result['ssim']:.4f}, {result['tokens']:.1f} tokens/image")
    if "usage" in result:
        line += f", codebook usage {result['usage']:.1%} ({result['entropy_bits']:.2f} bits)"
    print(line + (f"; {result['failed']} file(s) skipped" if result["failed"] else ""))
    return 1 if result["failed"] else 0
