"""``make demo``: tokenize and reconstruct the bundled photos with the shipped default tokenizer.

It loads ``titok_default`` (weights inside the package, trained on the real-photo pool: see
``adatok/weights/titok_default/README.md``), encodes the four bundled photos to 32 token ids each,
decodes the ids back, prints the ids, PSNR and SSIM per photo, and writes a PNG strip
(original | reconstruction) — the calls a user makes with any adatok tokenizer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from . import load
from .data.images import load_image, make_strip, save_image
from .eval.metrics import psnr, ssim
from .hub import BUNDLED_DIR

SAMPLES = Path(__file__).parent / "data" / "samples"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/demo")
    p.add_argument("--model", default="titok_default")
    args = p.parse_args(argv)
    out = Path(args.out)
    paths = sorted(SAMPLES.glob("*.jpg"))

    t0 = time.perf_counter()
    model = load(args.model)
    size = model.image_size
    params = sum(p.numel() for p in model.parameters())
    print(f"adatok demo: {args.model} ({params / 1e6:.1f}M params, {model.num_tokens} tokens per "
          f"{size}x{size} image, {model.config.quantizer_summary()}), loaded in {time.perf_counter() - t0:.1f} s")
    card = BUNDLED_DIR / args.model / "README.md"
    if card.exists():
        print(f"model card: {card}")
    print(f"photos: the {len(paths)} bundled photos, resized (shorter side) and center-cropped to {size}x{size}\n")

    images = torch.stack([load_image(p, size) for p in paths])
    with torch.inference_mode():
        tokens = model.encode(images)
        recon = model.decode_ids(tokens.ids)  # from the ids alone
    scores, similarity = psnr(recon, images), ssim(recon, images)
    for path, ids, n, s, q in zip(paths, tokens.ids, tokens.lengths.tolist(), scores.tolist(), similarity.tolist()):
        print(f"  {path.name:14s} {n} tokens  PSNR {s:5.2f} dB  SSIM {q:.3f}  ids {ids.tolist()[:10]} ...")
    strip = make_strip([im for pair in zip(images, recon) for im in pair],
                       [lab for p in paths for lab in (p.stem, f"{tokens.lengths[0].item()} tokens")])
    save_image(strip, out / "reconstructions.png")
    print(f"\nmean PSNR {scores.mean():.2f} dB, SSIM {similarity.mean():.3f}; "
          f"wrote {out / 'reconstructions.png'} (original | reconstruction, each pair)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
