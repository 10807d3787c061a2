"""``make demo``: the main job on the built-in default, saying exactly what it ran.

No trained adatok model ships yet (the training issue will add ``titok_default``), and no
pretrained weights can be downloaded here. So the demo does the honest thing: it trains a small
TiTok from scratch for a short while on random crops of the bundled photos, then tokenizes and
reconstructs those photos with it, printing tokens per image and PSNR, and writes a PNG strip
(original | reconstruction) — the same calls a user makes with a real checkpoint.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import create_model, load, save
from .data.images import load_image, make_strip, save_image
from .eval.metrics import psnr

SAMPLES = Path(__file__).parent / "data" / "samples"
# A small single-stage TiTok (RGB head): 32 tokens from a 256-code book for a 64x64 image.
DEMO_MODEL = dict(name="titok_pixels_tiny", num_tokens=32, codebook_size=256,
                  **{"encoder.width": 128, "decoder.width": 128})


def random_crops(photos: torch.Tensor, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random-scale crops of ``photos`` (``P x 3 x H x W``) resized to ``size``, random h-flip."""
    h = photos.shape[-1]
    out = []
    for _ in range(n):
        i = int(torch.randint(0, photos.shape[0], (1,), generator=generator))
        s = int(torch.randint(h * 3 // 8, h + 1, (1,), generator=generator))
        y, x = torch.randint(0, h - s + 1, (2,), generator=generator).tolist()
        crop = photos[i : i + 1, :, y : y + s, x : x + s]
        if torch.rand((), generator=generator) < 0.5:
            crop = crop.flip(-1)
        out.append(F.interpolate(crop, size=size, mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(out).clamp(0, 1)


def train(model, photos, steps: int, batch: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    model.train()
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        x = random_crops(photos, batch, model.image_size, gen)
        out = model(x)
        loss = F.mse_loss(out.images, x) + out.quantizer_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, steps // 5) == 0 or step == steps:
            print(f"  step {step:4d}/{steps}  loss {loss.item():.4f}  ({time.perf_counter() - t0:.0f} s)")
    model.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/demo")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    paths = sorted(SAMPLES.glob("*.jpg"))

    cfg = dict(DEMO_MODEL)
    name = cfg.pop("name")
    model = create_model(name, **cfg)
    size = model.image_size
    print(f"adatok demo — no trained default model ships yet, so this trains one now.\n"
          f"model: {name} with {cfg} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
          f"{model.num_tokens} tokens, {size}x{size} images), random init, seed {args.seed}\n"
          f"data: random crops of the {len(paths)} bundled photos ({', '.join(p.stem for p in paths)})\n"
          f"training {args.steps} steps, batch {args.batch_size}, MSE + VQ loss:")
    photos = torch.stack([load_image(p, 256) for p in paths])
    images = torch.stack([load_image(p, size) for p in paths])
    with torch.no_grad():
        before = psnr(model.reconstruct(images), images)
    train(model, photos, args.steps, args.batch_size, args.seed)

    saved = save(model, out / "model")  # and back, as a user would
    model = load(saved)
    with torch.no_grad():
        tokens = model.encode(images)
        recon = model.decode_ids(tokens.ids)
    after = psnr(recon, images)
    print(f"\nsaved to {saved}; reloaded; tokenized and reconstructed the bundled photos:")
    for path, ids, b, a in zip(paths, tokens.ids, before.tolist(), after.tolist()):
        print(f"  {path.name:14s} {ids.numel()} tokens  ids[:8]={ids[:8].tolist()}  "
              f"PSNR {a:5.2f} dB (untrained: {b:5.2f} dB)")
    strip = make_strip([im for pair in zip(images, recon) for im in pair],
                       [lab for p in paths for lab in (p.stem, f"{model.num_tokens} tok")])
    save_image(strip, out / "reconstructions.png")
    print(f"mean PSNR {after.mean():.2f} dB (untrained {before.mean():.2f} dB); "
          f"strip written to {out / 'reconstructions.png'} (original | reconstruction)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
