"""``make demo``: the tokenizer pipeline end to end on the bundled photos, saying what it ran.

No trained adatok weights ship yet: pretrained weights cannot be downloaded here, and training a
tokenizer that reconstructs well needs far more compute than a demo has (the training issue will
ship defaults). So the demo runs the real pipeline with a randomly initialised ``titok_tiny``
(two-stage layout: ViT encoder -> 8 VQ tokens -> ViT decoder -> proxy codes -> MaskGIT-VQGAN
decoder): it tokenizes the four bundled photos, prints their ids, decodes the ids, saves the
model and loads it back, checks that everything round-trips exactly, and writes a PNG strip.
Reconstructions of an untrained model are not images; the numbers printed say so.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from . import create_model, list_models, load, save
from .data.images import load_image, make_strip, save_image
from .eval.metrics import psnr

SAMPLES = Path(__file__).parent / "data" / "samples"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/demo")
    p.add_argument("--model", default="titok_tiny")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    torch.manual_seed(args.seed)
    paths = sorted(SAMPLES.glob("*.jpg"))

    print(f"adatok demo — {len(list_models())} presets (`adatok models`); no trained weights ship yet,")
    print(f"so this runs the pipeline with a RANDOMLY INITIALISED {args.model} (seed {args.seed}).")
    model = create_model(args.model).eval()
    size, params = model.image_size, sum(p.numel() for p in model.parameters())
    print(f"model: {args.model}, {params / 1e6:.2f}M params, {model.num_tokens} tokens per {size}x{size} image, "
          f"{model.config.quantizer_summary()}")
    images = torch.stack([load_image(p, size) for p in paths])
    print(f"input: the {len(paths)} bundled photos, resized + center-cropped to {size}x{size}\n")

    t0 = time.perf_counter()
    with torch.inference_mode():
        tokens = model.encode(images)
        recon = model.decode(tokens)
        from_ids = model.decode_ids(tokens.ids)
    elapsed = time.perf_counter() - t0
    scores = psnr(recon, images)
    for path, ids, s in zip(paths, tokens.ids, scores.tolist()):
        print(f"  {path.name:14s} ids {ids.tolist()}  PSNR {s:5.2f} dB")
    print(f"\nencode + decode of {len(paths)} images: {elapsed:.2f} s on {torch.get_num_threads()} CPU thread(s)")
    print(f"decode(tokens) == decode_ids(ids): {torch.equal(recon, from_ids)}")

    folder = save(model, out / "model")
    again = load(folder)
    with torch.inference_mode():
        same = torch.equal(again.encode(images).ids, tokens.ids)
    print(f"saved to {folder} (config.json + model.safetensors) and loaded back: same ids: {same}")

    strip = make_strip([im for pair in zip(images, recon) for im in pair],
                       [lab for p in paths for lab in (p.stem, "untrained")])
    save_image(strip, out / "reconstructions.png")
    print(f"wrote {out / 'reconstructions.png'} (original | reconstruction by the untrained model)")
    print(f"mean PSNR {scores.mean():.2f} dB: an untrained model's output, as expected. "
          "Load real weights with adatok.load(NAME, weights=FILE) — see README.")
    return 0 if same and torch.equal(recon, from_ids) else 1


if __name__ == "__main__":
    raise SystemExit(main())
