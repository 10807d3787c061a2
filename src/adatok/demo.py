"""``make demo``: the shipped default tokenizers on the bundled photos, offline.

``titok_default`` (64 tokens per image), ``alit_default`` (16..64 tokens, chosen per image) and
``titok_prefix_default`` (any prefix of 8, 16, ..., 64 tokens, chosen per image) are small 64 px
models trained on crops of the 54-59 photos of the real-photo pool (model cards in
``adatok/weights/``): blurry reconstructions that keep each photo's layout and colours, and the demo
says so. ``--titok`` / ``--alit`` / ``--prefix`` show other models (e.g. a run's ``OUT/model``). The
demo tokenizes and reconstructs the four bundled photos plus two simple synthetic images (a flat
colour and a smooth gradient), prints each image's token count and PSNR, checks that decoding the ids
gives back the same reconstruction, and writes two PNGs: ``reconstructions.png`` (original | TiTok |
ALIT | prefix TiTok, each at its length) and ``prefix_lengths.png`` (every image at every prefix
length, the chosen one framed in red).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from . import load
from .data.images import load_image, save_image
from .eval.metrics import psnr
from .viz.figure import labelled_strip, length_figure, stack_rows

SAMPLES = Path(__file__).parent / "data" / "samples"


def simple_images(size: int) -> tuple[torch.Tensor, list[str]]:
    """A flat colour and a smooth vertical gradient (sky-like): images that need few tokens."""
    flat = torch.tensor([0.85, 0.55, 0.30]).view(3, 1, 1).expand(3, size, size)
    ramp = torch.linspace(0, 1, size).view(1, size, 1)
    sky = (torch.tensor([0.25, 0.45, 0.85]).view(3, 1, 1) * (1 - ramp) + 0.9 * ramp).expand(3, size, size)
    return torch.stack([flat, sky]).contiguous(), ["flat (synthetic)", "gradient (synthetic)"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/demo")
    p.add_argument("--criterion", default="l1", help="ALIT token-selection criterion (default: l1, the paper's)")
    # 0.06 for alit_default: at 0.08 its 16-token L1 error already meets the threshold for 3 of the 4
    # bundled photos; at 0.06 the busy ones need 32-48 tokens (alit_default's model card)
    p.add_argument("--threshold", type=float, default=0.06, help="ALIT criterion threshold (default: L1 0.06)")
    p.add_argument("--titok", default="titok_default", help="TiTok to show: a model name or a saved model folder "
                   "(e.g. a run's OUT/model; default: titok_default)")
    p.add_argument("--alit", default="alit_default", help="ALIT to show: a model name or a saved model folder "
                   "(default: alit_default)")
    p.add_argument("--prefix", default="titok_prefix_default", help="prefix TiTok to show (any prefix of its tokens "
                   "decodes): a model name or a saved model folder (default: titok_prefix_default)")
    p.add_argument("--prefix-target", type=float, default=22.0,
                   help="the prefix TiTok's per-image length: the shortest prefix reaching this PSNR (default: 22 dB)")
    args = p.parse_args(argv)
    out = Path(args.out)

    titok, alit, prefix = load(args.titok), load(args.alit), load(args.prefix)
    size = titok.image_size
    shipped = (args.titok, args.alit, args.prefix) == ("titok_default", "alit_default", "titok_prefix_default")
    print("adatok demo — " + ("the shipped default tokenizers" if shipped else "the tokenizers given"))
    if shipped:
        print("note: these defaults are small 64 px models trained briefly on 54-59 photos (minutes on one GPU,")
        print("half an hour on a CPU for the prefix TiTok):")
        print("reconstructions are blurry, keeping each photo's layout and colours, far from the papers' quality.")
        print("The bundled photos are among TiTok's and ALIT's training photos (not the prefix TiTok's); held-out")
        print("numbers are in the model cards")
        print("(adatok/weights/*/MODEL_CARD.md). Retrain: scripts/train_defaults.py.")
    for name, m in ((args.titok, titok), (args.alit, alit), (args.prefix, prefix)):
        params = sum(x.numel() for x in m.parameters()) / 1e6
        print(f"  {name}: {params:.1f}M params, {m.config.quantizer_summary()}, {size}x{size} images")
    photos = sorted(SAMPLES.glob("*.jpg"))
    synthetic, synthetic_names = simple_images(size)
    images = torch.cat([torch.stack([load_image(p, size) for p in photos]), synthetic])
    names = [p.stem for p in photos] + synthetic_names
    print(f"input: the {len(photos)} bundled photos + 2 simple synthetic images, {size}x{size}\n")

    t0 = time.perf_counter()
    with torch.inference_mode():
        t_tokens = titok.encode(images)
        t_recon = titok.decode(t_tokens)
        t_same = torch.allclose(titok.decode_ids(t_tokens.ids), t_recon, atol=1e-5)
        sel = alit.select(images, args.criterion, args.threshold)
        a_same = torch.allclose(alit.decode_ids(sel.tokens.ids, sel.tokens.lengths), sel.images, atol=1e-4)
        p_sel = prefix.select(images, "psnr", args.prefix_target)
        p_same = torch.allclose(prefix.decode_ids(p_sel.tokens.ids, p_sel.tokens.lengths), p_sel.images, atol=1e-4)
        p_sweep = prefix.sweep(images)  # every image at every prefix length, one batched decode
    elapsed = time.perf_counter() - t0
    t_psnr, a_psnr = psnr(t_recon, images).tolist(), psnr(sel.images, images).tolist()
    lengths = sel.tokens.lengths.tolist()
    p_psnr, p_lengths = psnr(p_sel.images, images).tolist(), p_sel.tokens.lengths.tolist()
    print(f"  {'image':22s} {'TiTok':>17s}   {'ALIT (' + args.criterion + ' < ' + format(args.threshold, 'g') + ')':>24s}"
          f"   {'prefix (PSNR >= ' + format(args.prefix_target, 'g') + ')':>22s}")
    for name, tp, n, ap, pn, pp in zip(names, t_psnr, lengths, a_psnr, p_lengths, p_psnr):
        print(f"  {name:22s} {titok.num_tokens} tokens {tp:5.2f} dB   {n:11d} tokens {ap:5.2f} dB"
              f"   {pn:9d} tokens {pp:5.2f} dB")
    print(f"\nTiTok mean PSNR {sum(t_psnr) / len(t_psnr):.2f} dB at {titok.num_tokens} tokens; ALIT mean PSNR "
          f"{sum(a_psnr) / len(a_psnr):.2f} dB at {sum(lengths) / len(lengths):.1f} tokens on average")
    for who, ls in (("ALIT", lengths), ("prefix", p_lengths)):
        busy, simple = ls[: len(photos)], ls[len(photos):]
        print(f"{who} tokens: simple images {simple}, photos {busy} -> simple images get fewer: "
              f"{max(simple) <= min(busy) and sum(simple) < sum(busy)}")
    sweep_psnr = [psnr(x, images).tolist() for x in p_sweep.images]  # T x B
    print("prefix TiTok, mean PSNR at every length: "
          + ", ".join(f"{n} {sum(v) / len(v):.1f} dB" for n, v in zip(p_sweep.lengths, sweep_psnr)))
    print(f"decode_ids(ids) == the reconstruction: TiTok {t_same}, ALIT {a_same}, prefix {p_same}  "
          f"({elapsed:.1f} s for everything on {torch.get_num_threads()} CPU thread(s))")

    rows = [labelled_strip([images[i], t_recon[i], sel.images[i], p_sel.images[i]],
                           [name, f"TiTok {titok.num_tokens} tokens, {t_psnr[i]:.1f} dB",
                            f"ALIT {lengths[i]} tokens, {a_psnr[i]:.1f} dB",
                            f"prefix {p_lengths[i]} tokens, {p_psnr[i]:.1f} dB"]) for i, name in enumerate(names)]
    save_image(stack_rows(rows), out / "reconstructions.png")
    print(f"wrote {out / 'reconstructions.png'} (original | TiTok | ALIT | prefix TiTok, each adaptive one at its "
          "chosen length, per image)")
    strips = [length_figure(images[b], list(p_sweep.images[:, b]), list(p_sweep.lengths), p_lengths[b],
                            [v[b] for v in sweep_psnr]) for b in range(len(names))]
    save_image(stack_rows(strips), out / "prefix_lengths.png")
    print(f"wrote {out / 'prefix_lengths.png'} (each image at every prefix length, the chosen one framed in red)")
    return 0 if t_same and a_same and p_same else 1


if __name__ == "__main__":
    raise SystemExit(main())
