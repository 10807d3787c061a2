"""float32 against float64, per memory format, for the convolutional models at their official sizes.

For the MaskGIT-VQGAN (``maskgit_vqgan_f16_256``: encoder latents, and the decoder on the float64
latents), MAR's KL-16 VAE (``kl16_vae``: posterior mean, and the decoder) and ImagePiece's
local-coherence-bias stem (DeiT-S: 384 wide, 16 px patches, 224 px, eval mode), the same random
weights run in float64 NCHW (the reference) and in float32 — as created, and converted to NCHW and
to channels_last — on the bundled photos. Printed: the largest absolute error of each float32 run and that error over the
reference's standard deviation; ``--check TOL`` exits 1 when any float32 error is above TOL.

    python benchmarks/float32_precision.py                  # official sizes (about a minute on 2 cores)
    python benchmarks/float32_precision.py --small          # 64 px, 128 channels: seconds

The README's claim "floats within 1e-4 in float32" is what ``--check 1e-4`` tests at the official sizes.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

import adatok
from adatok.data.images import load_image
from adatok.pixel.kl_vae import KLVAEConfig
from adatok.pixel.maskgit_vqgan import MaskGITVQGANConfig
from adatok.reduction.lcb_stem import LocalCoherenceStem

SAMPLES = Path(adatok.__file__).parent / "data" / "samples"
# "as created": the module as adatok builds it (its convolutions pick their memory format per call);
# the two others convert the module and its input explicitly.
FORMATS = {"as created": None, "nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def photos(size: int, n: int) -> torch.Tensor:
    return torch.stack([load_image(p, size) for p in sorted(SAMPLES.glob("*.jpg"))[:n]])


def models(small: bool):
    """(name, module, input images, {output name: fn(module, x) -> tensor})."""
    size = 64 if small else 256
    if small:
        vqgan = adatok.create_model(MaskGITVQGANConfig(base_channels=128, channel_mult=(1, 2), image_size=size))
        vae = adatok.create_model(KLVAEConfig(base_channels=128, channel_mult=(1, 2), image_size=size,
                                              encoder_attn_levels=(1,), signed_pixels=True))
    else:
        vqgan = adatok.create_model("maskgit_vqgan_f16_256")
        vae = adatok.create_model("kl16_vae")
    stem = LocalCoherenceStem(3, 384, 16)
    x = photos(size, 2)
    yield "maskgit_vqgan", vqgan, x, {
        "latents": lambda m, x: m.encode_latents(x),
        "decode": lambda m, x: m.decode_codes(_ref_latents[m.__class__.__name__].to(x.dtype)),
    }
    yield "kl_vae", vae, x, {
        "mean": lambda m, x: m.posterior(x)[0],
        "decode": lambda m, x: m.decode_latents(_ref_latents[m.__class__.__name__].to(x.dtype)),
    }
    stem_x = (photos(224, 2) - 0.45) / 0.225
    yield "lcb_stem", stem, stem_x, {"features": lambda m, x: m(x)}


_ref_latents: dict[str, torch.Tensor] = {}


def compare(name, model, x, outputs) -> list[tuple[str, str, float, float]]:
    """[(output, format, max abs error, error / reference std)] of float32 runs vs float64 NCHW."""
    model = model.eval()
    rows = []
    with torch.no_grad():
        ref_model = copy.deepcopy(model).double().to(memory_format=torch.contiguous_format)
        first = next(iter(outputs))
        refs = {}
        for out_name, fn in outputs.items():
            refs[out_name] = fn(ref_model, x.double())
            if out_name == first:
                _ref_latents[model.__class__.__name__] = refs[out_name]
        for fmt, memory_format in FORMATS.items():
            m, xf = copy.deepcopy(model).float(), x.float()
            if memory_format is not None:
                m, xf = m.to(memory_format=memory_format), xf.contiguous(memory_format=memory_format)
            for out_name, fn in outputs.items():
                err = (fn(m, xf).double() - refs[out_name]).abs().max().item()
                rows.append((f"{name}.{out_name}", fmt, err, err / refs[out_name].std().item()))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="64 px, 128 channels, 2 levels (seconds)")
    p.add_argument("--check", type=float, help="exit 1 if a float32 error is above this")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {'small' if args.small else 'official'} sizes, float32 vs float64 NCHW")
    print(f"{'output':<24} {'format':<14} {'max abs err':>12} {'/ ref std':>10}")
    worst = 0.0
    for name, model, x, outputs in models(args.small):
        for out_name, fmt, err, rel in compare(name, model, x, outputs):
            print(f"{out_name:<24} {fmt:<14} {err:12.3e} {rel:10.3e}")
            worst = max(worst, err)
    if args.check is not None and worst > args.check:
        print(f"FAIL: largest float32 error {worst:.3e} > {args.check:g}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
