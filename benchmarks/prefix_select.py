"""Prefix TiTok per-image length selection: images/s of ``select`` against fixed-length encode+decode.

Same model, same images, same run, interleaved (benchmarks/common.py's protocol). Rows:
  fixed-64        encode + decode every image at the longest length (what a fixed tokenizer costs)
  fixed-mean      encode + decode at the selection's mean length rounded up to an allowed length
  select-psnr     ``select(x, "psnr", t)``: encode once, bisection over the allowed lengths, one batched
                  decode per round for the images still searching (at most ceil(log2(T + 1)) decodes)
  exhaustive      encode once + ``sweep`` (every length decoded) + the first length meeting the target:
                  the naive way to get the same answer
  lagrangian      ``select_lagrangian(model, x, lam)``: one sweep, argmax of PSNR - lam * L
The selection's answer is checked against ``exhaustive``: equal wherever "PSNR >= target" is monotone in
the length (the bisection's assumption, tested in tests/prefix); the count of other images is printed.
The prefix decoder keeps its sequence length (dropped tokens become the mask token), so a decode costs
the same at every length: fixed-mean is no faster than fixed-64, and select's cost is its decode rounds.

    python benchmarks/prefix_select.py --images src/adatok/data/samples      # titok_prefix_default, CPU
    python benchmarks/prefix_select.py --heldout POOL768/heldout --target 22 --batch 64 --json out.json
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import PROTOCOL, device_name, format_table, interleave, ratio_text, write_json  # noqa: E402

import adatok  # noqa: E402
from adatok.data import load_images  # noqa: E402
from adatok.eval.crops import heldout_crops  # noqa: E402
from adatok.tokenizers.prefix.lagrangian import select_lagrangian  # noqa: E402
from adatok.tokenizers.prefix.model import criterion_errors, exhaustive_choice, met_matrix  # noqa: E402


def images_for(args, size: int) -> torch.Tensor:
    if args.heldout:
        images, _ = heldout_crops(args.heldout, size)
    else:
        paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        images, _, _ = load_images(paths, size)
    reps = math.ceil(args.batch / len(images))
    return images.repeat(reps, 1, 1, 1)[: args.batch].contiguous()


def exhaustive(model, x: torch.Tensor, target: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(each image's first allowed length meeting the PSNR target, else its lowest-error one; N x T met matrix):
    the criterion evaluated at every length from one full sweep (tokenizers/prefix/model.py's exhaustive rule)."""
    errors = criterion_errors(model, x, "psnr", batch=len(x))
    met = met_matrix(errors, model.allowed_lengths, "psnr", target)
    return torch.tensor(model.allowed_lengths)[exhaustive_choice(errors, met)], met, errors


@torch.no_grad()  # restores the caller's grad mode (the tests call main in-process)
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="titok_prefix_default")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", default=str(Path(adatok.__file__).parent / "data" / "samples"))
    src.add_argument("--heldout", type=Path, help="a held-out photo folder: its multi-scale crops (adatok.eval.crops)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--target", type=float, default=22.0, help="PSNR target of the selection (dB)")
    p.add_argument("--lam", type=float, default=0.1, help="Lagrangian price (dB per token)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = adatok.load(args.model).eval()
    x = images_for(args, model.image_size)
    sel = model.select(x, "psnr", args.target, return_images=False)
    want, met, errors = exhaustive(model, x, args.target)
    differ = sel.tokens.lengths.cpu() != want
    # bisection assumes "met" is monotone in the length and, when nothing is met, that the longest length has the
    # lowest error; where either fails (e.g. a flat crop better at 8 tokens than at 16) it may answer otherwise
    monotone = (met.int().diff(dim=1) >= 0).all(dim=1) & (met.any(dim=1) | (errors.argmin(dim=1) == met.shape[1] - 1))
    same = bool((~differ | ~monotone).all())
    mean = float(sel.tokens.lengths.float().mean())
    at_mean = min(n for n in model.allowed_lengths if n >= mean)

    def fixed(n):
        lengths = torch.full((len(x),), n)
        return lambda: model.decode(model.encode(x, lengths=lengths))

    fns = {"fixed-64": fixed(model.max_tokens), f"fixed-{at_mean}": fixed(at_mean),
           "select-psnr": lambda: model.select(x, "psnr", args.target),
           "exhaustive": lambda: exhaustive(model, x, args.target),
           "lagrangian": lambda: select_lagrangian(model, x, args.lam)}
    timings = interleave(fns, "cpu", rounds=args.rounds)
    ref = timings["fixed-64"]
    rows = [[name, f"{len(x) / t.median:.1f}", ratio_text(ref, t)] for name, t in timings.items()]
    print(f"{args.model} on {device_name(torch.device('cpu'))}, {args.threads} thread(s), batch {len(x)} "
          f"({'held-out crops' if args.heldout else args.images}); PSNR target {args.target:g} dB: mean "
          f"{mean:.1f} tokens; select's lengths equal the exhaustive rule's for {int((~differ).sum())} of {len(x)} "
          f"images, every difference where the curve is not monotone: {same} ({int((~monotone).sum())} such images)")
    print(format_table(["path", "images/s", "speed vs fixed-64 (median, per-round range)"], rows))
    print(PROTOCOL)
    if args.json:
        write_json(args.json, {"model": args.model, "batch": len(x), "target": args.target, "mean_tokens": mean,
                               "same_as_exhaustive_where_monotone": same,
                               "differ": int(differ.sum()), "non_monotone": int((~monotone).sum()), "timings": {k: t.summary() for k, t in timings.items()}})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
