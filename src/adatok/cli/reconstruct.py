"""``adatok reconstruct``: encode + decode images, write PNGs, print PSNR."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.images import make_strip, save_image
from ..eval.metrics import psnr
from .adaptive import add_adaptive_args, check_adaptive_args, select
from .common import ReadableBatches, add_model_args, autocast, load_tokenizer


def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help="encode and decode images; write PNGs and print PSNR")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    add_model_args(p)
    p.add_argument("--out", required=True, help="output folder for <name>_recon.png files")
    add_adaptive_args(p)
    p.add_argument("--all-lengths", action="store_true",
                   help="also write <name>_lengths.png: the image at every token count (ALIT: 32, 64, ..., 256)")
    p.set_defaults(func=run)


def run(args) -> int:
    model = load_tokenizer(args)
    check_adaptive_args(args, model)
    device = next(model.parameters()).device
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores = []
    batches = ReadableBatches(args, model.image_size, "reconstruct")
    with torch.inference_mode(), autocast(args, device):
        for paths, batch in batches:
            batch = batch.to(device)
            tokens, recon = select(model, batch, args, return_images=True)
            recon = recon.float()
            if args.all_lengths:
                _write_length_strips(model, batch, paths, out, args.seed)
            values = psnr(recon, batch.float()).tolist()
            for path, image, value, length in zip(paths, recon, values, tokens.lengths.tolist()):
                target = out / f"{Path(path).stem}_recon.png"
                save_image(image, target)
                scores.append(value)
                print(f"{path}\t{length} tokens\tPSNR {value:.2f} dB\t-> {target}")
    failed = batches.failed
    if scores:
        print(f"mean PSNR {sum(scores) / len(scores):.2f} dB over {len(scores)} image(s)"
              + (f"; {failed} file(s) skipped" if failed else ""))
    else:
        print(f"adatok: no image could be read ({failed} failed)")
    return 1 if failed or not scores else 0


def _write_length_strips(model, batch, paths, out: Path, seed: int) -> None:
    """original | reconstruction at each token count, one PNG per image."""
    generator = torch.Generator(batch.device).manual_seed(seed)
    sweep = model.sweep(batch, generator=generator)  # an AdaptiveTokenizer (check_adaptive_args)
    for b, path in enumerate(paths):
        images = [batch[b].float()] + [sweep.images[t, b] for t in range(len(sweep.lengths))]
        labels = ["original"] + [f"{n} tokens" for n in sweep.lengths]
        save_image(make_strip(images, labels), out / f"{Path(path).stem}_lengths.png")
