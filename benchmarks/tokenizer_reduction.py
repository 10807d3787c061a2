#!/usr/bin/env python
"""Tokenizer x token reduction: TiTok encode speed-up vs reconstruction quality with ToMe merging of the
patch tokens inside the encoder (``adatok.reduction.apply(tok.encoder, "tome", r=...)``; latents never
merged, the decoder untouched).

For each ``r`` the encoder is patched, images are encoded and decoded, and encode is timed against the
unpatched encoder with the shared protocol (``common.interleave``: interleaved alternating rounds,
median, CPU time). Quality (PSNR / SSIM against the input) on the shipped ``titok_default`` with real
photos (``--photos``: a folder, e.g. the held-out split of the photo pool the default was evaluated on,
which its model card describes); speed also at the official sizes with random weights (``--sizes``).

    python benchmarks/tokenizer_reduction.py --photos POOL/heldout --threads 1
    python benchmarks/tokenizer_reduction.py --photos POOL/heldout --sizes titok_s128,titok_l32 --batch 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
try:
    import adatok  # noqa: F401,E402
except ImportError:
    sys.path.insert(0, str(_HERE.parent / "src"))

import torch  # noqa: E402

import adatok  # noqa: E402
import adatok.reduction as R  # noqa: E402
from common import PROTOCOL, device_name, format_table, interleave, write_json  # noqa: E402


def max_r(tok) -> int:
    """The largest constant r the encoder's depth and patch count allow."""
    from adatok.reduction.tome import ToMeReducer

    return ToMeReducer._max_constant_r(tok.config.encoder.depth, tok.encoder.pos_embed.shape[0] - 1)


def measure(tok, images, rs, rounds: int, quality: bool) -> list:
    from adatok.eval.metrics import psnr, ssim

    rows = []
    with torch.inference_mode():
        ref_recon = tok.decode(tok.encode(images)) if quality else None
        for r in rs:
            R.apply(tok.encoder, "tome", r=r)
            stack = tok.encoder.transformer
            reduced = stack.__dict__["forward"]

            def path(patched: bool):
                def run():  # the patch is one instance attribute: switching it costs nothing
                    if patched:
                        stack.forward = reduced
                    else:
                        stack.__dict__.pop("forward", None)
                    return tok.encode(images)
                return run
            try:
                encoded = path(True)()
                recon = tok.decode(encoded) if quality else None
                tokens = R.info(tok.encoder).tokens
                timed = interleave({"plain": path(False), "tome": path(True)}, images.device, rounds=rounds, warmup=1)
            finally:
                stack.forward = reduced
                R.remove(tok.encoder)
            row = {"r": r, "tokens_per_block": tokens, "plain_s": timed["plain"].median, "tome_s": timed["tome"].median,
                   "speedup": timed["plain"].median / timed["tome"].median,
                   "cpu_speedup": timed["plain"].cpu_median / timed["tome"].cpu_median,
                   "timings": {k: t.summary() for k, t in timed.items()}}
            if quality:
                row.update(psnr=float(psnr(recon.clamp(0, 1), images).mean()),
                           ssim=float(ssim(recon.clamp(0, 1), images).mean()),
                           psnr_plain=float(psnr(ref_recon.clamp(0, 1), images).mean()),
                           ssim_plain=float(ssim(ref_recon.clamp(0, 1), images).mean()))
            rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="titok_default", help="tokenizer with trained weights (default titok_default)")
    p.add_argument("--photos", type=Path, help="folder of photos for the quality rows (none: speed only)")
    p.add_argument("--rs", default=None, help="comma list of r (default: 4 values up to the largest allowed)")
    p.add_argument("--sizes", default="", help="comma list of presets timed with random weights (e.g. titok_s128,titok_l32)")
    p.add_argument("--batch", type=int, default=2, help="batch of the random-weight rows (default 2)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", help="write the rows as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"timing: {PROTOCOL}\ndevice: {device_name(torch.device('cpu'))}, threads {torch.get_num_threads()}")
    out = {}
    tok = adatok.load(args.model).eval()
    size = tok.config.image_size
    if args.photos:
        from adatok.data import list_image_files, load_images

        images, paths, _ = load_images(list_image_files([args.photos]), size)
        print(f"{args.model}: {len(paths)} photos from {args.photos} ({', '.join(p.name for p in paths)}), "
              f"{size} px center crops")
    else:
        images = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    top = max_r(tok)
    rs = [int(x) for x in args.rs.split(",")] if args.rs else sorted({max(1, top // 4), max(1, top // 2),
                                                                       max(1, 3 * top // 4), top})
    out[args.model] = measure(tok, images, rs, args.rounds, quality=args.photos is not None)
    for name in [s for s in args.sizes.split(",") if s]:
        torch.manual_seed(0)
        big = adatok.create_model(name).eval()
        x = torch.rand(args.batch, 3, big.config.image_size, big.config.image_size,
                       generator=torch.Generator().manual_seed(0))
        top = max_r(big)
        out[f"{name} (random weights)"] = measure(big, x, sorted({top // 4, top // 2, top}), args.rounds, False)
        del big
    for name, rows in out.items():
        print(f"\n{name}:")
        print(format_table(["r", "patch tokens after each block", "encode speed-up", "CPU-time speed-up", "PSNR dB",
                            "SSIM"],
                           [[r["r"], " ".join(map(str, r["tokens_per_block"])), f"{r['speedup']:.2f}x",
                             f"{r['cpu_speedup']:.2f}x",
                             f"{r['psnr']:.2f} (plain {r['psnr_plain']:.2f})" if "psnr" in r else "-",
                             f"{r['ssim']:.3f} (plain {r['ssim_plain']:.3f})" if "ssim" in r else "-"] for r in rows]))
    if args.json:
        print(f"wrote {write_json(args.json, {'rows': out})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
