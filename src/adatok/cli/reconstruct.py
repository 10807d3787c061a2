"""``adatok reconstruct``: encode + decode images, write PNGs, print PSNR."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.images import save_image
from ..eval.metrics import psnr
from ..viz.figure import compare_figure, length_figure
from .adaptive import add_adaptive_args, check_adaptive_args, select
from .common import ReadableBatches, add_model_args, autocast, check_output_dir, load_tokenizer


def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help="encode and decode images; write PNGs and print PSNR")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    add_model_args(p)
    p.add_argument("--out", required=True, help="output folder for <name>_recon.png files (inputs with the same "
                   "name, e.g. a/cat.jpg and b/cat.png, get <name>_2, <name>_3, ...)")
    add_adaptive_args(p)
    p.add_argument("--all-lengths", action="store_true",
                   help="also write <name>_lengths.png: the image at every token count (ALIT: 32, 64, ..., 256), "
                        "the length the run chose framed in red")
    p.add_argument("--no-compare", action="store_true",
                   help="do not write <name>_compare.png (original | reconstruction, with tokens and PSNR)")
    p.set_defaults(func=run)


def run(args) -> int:
    out = check_output_dir(args.out)
    model = load_tokenizer(args)
    check_adaptive_args(args, model)
    device = next(model.parameters()).device
    scores = []
    batches = ReadableBatches(args, model.image_size, "reconstruct")
    names = _NameQueue(batches.paths)
    with torch.inference_mode(), autocast(args, device):
        for paths, batch in batches:
            stems = [names.take(p) for p in paths]
            batch = batch.to(device)
            tokens, recon = select(model, batch, args, return_images=True)
            recon = recon.float()
            chosen = tokens.lengths.tolist()
            if args.all_lengths:
                _write_length_strips(model, batch, stems, out, args.seed, chosen)
            values = psnr(recon, batch.float()).tolist()
            for path, stem, original, image, value, length in zip(paths, stems, batch, recon, values, chosen):
                target = out / f"{stem}_recon.png"
                save_image(image, target)
                if not args.no_compare:
                    save_image(compare_figure(original, image, length, value), out / f"{stem}_compare.png")
                scores.append(value)
                print(f"{path}\t{length} tokens\tPSNR {value:.2f} dB\t-> {target}")
    failed = batches.failed
    if scores:
        print(f"mean PSNR {sum(scores) / len(scores):.2f} dB over {len(scores)} image(s)"
              + (f"; {failed} file(s) skipped" if failed else ""))
    else:
        print(f"adatok: no image could be read ({failed} failed)")
    return 1 if failed or not scores else 0


def output_names(paths) -> list[str]:
    """One output stem per input, unique within the run: the file's stem, and for inputs whose
    stems collide (``a/cat.jpg b/cat.jpg``, ``cat.jpg cat.png``) ``cat``, ``cat_2``, ``cat_3``, ...
    in input order — so no reconstruction overwrites another."""
    taken = {Path(p).stem for p in paths}
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        stem = Path(p).stem
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        name = stem if n == 1 else f"{stem}_{n}"
        while n > 1 and name in taken:  # a real "cat_2.jpg" keeps its own name
            n += 1
            seen[stem] = n
            name = f"{stem}_{n}"
        taken.add(name)
        names.append(name)
    return names


class _NameQueue:
    """The output stems of the run's files, handed out as the files come (in order; a file given
    twice gets both of its names, one each time)."""

    def __init__(self, paths):
        self._names: dict[str, list[str]] = {}
        for path, name in zip(paths, output_names(paths)):
            self._names.setdefault(str(path), []).append(name)

    def take(self, path) -> str:
        return self._names[str(path)].pop(0)


def _write_length_strips(model, batch, names, out: Path, seed: int, chosen) -> None:
    """original | reconstruction at each token count, the chosen one marked, one PNG per image."""
    generator = torch.Generator(batch.device).manual_seed(seed)
    sweep = model.sweep(batch, generator=generator)  # an AdaptiveTokenizer (check_adaptive_args)
    for b, name in enumerate(names):
        images = [sweep.images[t, b].float() for t in range(len(sweep.lengths))]
        psnrs = [float(v) for v in psnr(torch.stack(images).clamp(0, 1), batch[b].float().expand(len(images), -1, -1, -1))]
        save_image(length_figure(batch[b], images, list(sweep.lengths), chosen[b], psnrs), out / f"{name}_lengths.png")
