"""``adatok eval``: reconstruction quality of a tokenizer on a set of images (PSNR / SSIM / codebook
usage; with ``--rfid`` / ``--lpips`` also rFID, IS and LPIPS, see ``eval_metrics``)."""

from __future__ import annotations

import torch

from ..eval.metrics import codebook_usage, psnr, ssim
from ..interface import Tokenizer
from .common import ReadableBatches, add_model_args, autocast, checked_device, load_tokenizer
from .eval_metrics import Ranks, add_metric_args, build_recon_metrics, distributed, format_metrics
from .sweep import add_sweep_args, check_sweep_args, run_sweep


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="PSNR / SSIM / codebook usage (and rFID, IS, LPIPS) of reconstructions",
                       description="Reconstruct each image (center-cropped to the model's size) and report "
                       "PSNR / SSIM / codebook usage; --rfid and --lpips add rFID, IS and LPIPS from local "
                       "weight files. Under torchrun each rank evaluates its share of the files.")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    add_model_args(p)
    add_metric_args(p)
    add_sweep_args(p)
    p.set_defaults(func=run)


def evaluate(model: Tokenizer, batches, device, amp=None, metrics=None, ranks: Ranks = Ranks()) -> dict:
    """Mean PSNR/SSIM (reconstructions rounded to 8 bits, as saved images are), tokens per image,
    and codebook usage over ``(paths, batch)`` pairs; ``metrics.update(batch, recon)`` per batch
    when given. Under ``torchrun`` (``ranks``) the per-image values of every rank are gathered."""
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
            if metrics is not None:
                metrics.update(batch.float(), recon)
    p, s, n, i = (ranks.cat(torch.cat(x).cpu() if x else torch.empty(0)) for x in (psnrs, ssims, lengths, ids))
    if not p.numel():
        return {"images": 0}
    out = {"images": p.numel(), "psnr": p.mean().item(), "psnr_std": p.std().item() if p.numel() > 1 else 0.0,
           "ssim": s.mean().item(), "tokens": n.float().mean().item()}
    if i.numel() and model.discrete:
        out.update(codebook_usage(i.long(), model.codebook_size))
    return out


def run(args) -> int:
    if args.sweep:
        return run_sweep(args)
    check_sweep_args(args)
    with distributed(args) as ranks:
        device = checked_device(args)
        metrics = build_recon_metrics(args, device)  # missing weight files: one line, before any work
        model = load_tokenizer(args)
        device = next(model.parameters()).device
        batches = ReadableBatches(args, model.image_size, "eval", share=ranks)
        result = evaluate(model, batches, device, autocast(args, device), metrics, ranks)
        failed = int(ranks.sum(batches.failed))
        if metrics is not None and result["images"]:
            result.update(metrics.result(ranks))
        if not ranks.main:
            return 1 if failed or not result["images"] else 0
        return report(result, failed)


def report(result: dict, failed: int) -> int:
    """Print the result lines (rank 0); exit code 1 when files were skipped or none was read."""
    if not result["images"]:
        print(f"adatok: no image could be read ({failed} failed)")
        return 1
    line = (f"{result['images']} image(s): PSNR {result['psnr']:.2f} dB (std {result['psnr_std']:.2f}), "
            f"SSIM {result['ssim']:.4f}, {result['tokens']:.1f} tokens/image")
    if "usage" in result:
        line += f", codebook usage {result['usage']:.1%} ({result['entropy_bits']:.2f} bits)"
    print(line + (f"; {failed} file(s) skipped" if failed else ""))
    if "rfid" in result or "lpips" in result:
        print(format_metrics(result, result["images"]))
    return 1 if failed else 0
