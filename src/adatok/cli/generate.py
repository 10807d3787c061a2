"""``adatok generate``: class-conditional (or unconditional) images from a MaskGIT generator and
the tokenizer whose tokens it models: PNGs, a contact sheet and the sampled ids."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..errors import ConfigError, OutputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "generate", help="generate images with a MaskGIT generator + tokenizer",
        description="Sample N images per class (MaskGIT over 1D tokens, classifier-free guidance) and decode "
        "them with the tokenizer. Settings default to the generator's (the official ImageNet ones for the "
        "paper presets). Same --seed, same images.")
    p.add_argument("--generator", required=True, help="generator preset, folder, weight file or hub repo id")
    p.add_argument("--generator-weights", help="weight file for a generator preset name (ours or official)")
    p.add_argument("--tokenizer", help="tokenizer preset/folder/file (default: the one the generator names)")
    p.add_argument("--tokenizer-weights", help="weight file for a tokenizer preset name")
    p.add_argument("--classes", default="", help="comma-separated class ids, e.g. 1,207,360, or 'all' (every class "
                   "of the generator; default: unconditional)")
    p.add_argument("--n", type=int, default=4, help="samples per class (default 4)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the generator's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (0 = off)")
    p.add_argument("--schedule", help="guidance schedule: constant, linear or power-cosine")
    p.add_argument("--guidance-pow", type=float, help="power of the power-cosine schedule (default 3)")
    p.add_argument("--temperature", type=float, help="Gumbel temperature, annealed to 0 (0 = deterministic)")
    p.add_argument("--softmax-annealing", choices=["on", "off"], help="divide logits by 0.5+0.8(1-ratio)")
    p.add_argument("--lengths", help="length-aware generators: force this token count (default: sampled)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sampler (default 0): same seed, same images")
    p.add_argument("--out", default="out/generate", help="output folder (default out/generate)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per batch (default 32)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    p.add_argument("--npz", metavar="FILE", help="write the samples only to FILE in the ADM evaluator's format "
                   "(arr_0: uint8 N x H x W x 3, arr_1: labels), batch by batch, instead of PNGs in --out; "
                   "for gFID: adatok eval-fid REF.npz FILE")
    p.add_argument("--overwrite", action="store_true", help="with --npz: replace an existing FILE")
    p.set_defaults(func=run)


def parse_classes(text: str, num_classes: int | None = None) -> list[int]:
    """``"1,7"`` -> [1, 7]; ``"all"`` -> every class id below ``num_classes`` (known once the
    generator is loaded: ``None`` -> [] for now)."""
    if text.strip().lower() == "all":
        return list(range(num_classes)) if num_classes is not None else []
    try:
        return [int(c) for c in text.replace(" ", "").split(",") if c]
    except ValueError:
        raise ConfigError(f"--classes {text!r}: expected comma-separated integers, e.g. 1,207,360") from None


def _sampling_args(args) -> dict:
    out = {}
    for name in ("steps", "guidance", "schedule", "guidance_pow", "temperature"):
        value = getattr(args, name)
        if value is not None:
            out[name] = value
    if args.softmax_annealing is not None:
        out["softmax_annealing"] = args.softmax_annealing == "on"
    if args.lengths:
        out["lengths"] = int(args.lengths)
    return out


def run(args) -> int:
    from ..data.images import save_image
    from ..data.token_files import write_token_file
    from ..generators import MaskGIT, SamplingConfig, check_pair, generate_images
    from ..generators.config import check_sampling
    from ..hub import load
    from .common import check_output_dir

    # -- every check before any work ----------------------------------------------------------
    classes = parse_classes(args.classes)
    sampling = _sampling_args(args)
    if args.n < 1 or args.batch_size < 1:
        raise ConfigError(f"--n and --batch-size must be >= 1, got {args.n} and {args.batch_size}")
    defaults = SamplingConfig()
    check_sampling(sampling.get("steps", defaults.steps), sampling.get("schedule", defaults.schedule),
                   sampling.get("guidance", 0.0), sampling.get("temperature", 0.0))
    device = _device(args.device)
    if args.npz:
        check_npz_target(args.npz, args.overwrite)
    else:
        check_output_dir(args.out, keep=False)  # before loading: a bad --out must not cost the run
    generator = load(args.generator, weights=args.generator_weights, device=device)
    if not isinstance(generator, MaskGIT):
        raise ConfigError(f"--generator {args.generator}: a {type(generator).__name__}, not a MaskGIT generator")
    if args.classes.strip().lower() == "all":
        if generator.config.num_classes == 0:
            raise ConfigError("--classes all: this generator is unconditional; give no --classes")
        classes = parse_classes(args.classes, generator.config.num_classes)
    generator.check_labels(torch.tensor(classes, dtype=torch.long))
    tok_name = args.tokenizer or generator.config.tokenizer
    if not tok_name:
        raise ConfigError("the generator names no tokenizer: pass --tokenizer NAME|PATH")
    tokenizer = load(tok_name, weights=args.tokenizer_weights, device=device)
    check_pair(generator, tokenizer)
    if args.npz:
        return write_npz(args, generator, tokenizer, classes, sampling)

    # -- sample ---------------------------------------------------------------------------------
    start = time.perf_counter()
    out = generate_images(generator, tokenizer, classes or None, n=args.n, batch_size=args.batch_size, seed=args.seed,
                          progress=True, autocast_dtype=torch.bfloat16 if args.bf16 else None, **sampling)
    seconds = time.perf_counter() - start
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(out.images, out.labels.tolist())):
        save_image(image, folder / (f"{i:04d}_class{label}.png" if label >= 0 else f"{i:04d}.png"))
    from torchvision.utils import make_grid

    save_image(make_grid(out.images.cpu(), nrow=args.n, padding=2, pad_value=1.0), folder / "contact_sheet.png")
    write_token_file(folder / "tokens.safetensors", out.ids.cpu(), out.lengths.cpu(), out.labels.cpu(),
                     torch.arange(len(out.ids)), {"tokenizer": tok_name, "generator": str(args.generator),
                                                  "codebook_size": generator.config.codebook_size,
                                                  "seed": args.seed, "sampling": sampling})
    lengths = sorted(set(out.lengths.tolist()))
    print(f"wrote {len(out.images)} image(s), contact_sheet.png and tokens.safetensors to {folder} "
          f"({seconds:.1f} s, {len(out.images) / seconds:.2f} samples/s; tokens per image: "
          f"{', '.join(map(str, lengths))})")
    return 0


def check_npz_target(path, overwrite: bool) -> None:
    """Before any work: ``--npz`` is a writable ``.npz`` file name, not an existing file unless
    ``--overwrite``."""
    from .common import check_output_file

    p = Path(path)
    if p.suffix.lower() != ".npz":
        raise ConfigError(f"--npz {p}: give a file name ending in .npz")
    if p.exists() and not p.is_dir() and not overwrite:
        raise OutputError(f"--npz {p}: exists; pass --overwrite to replace it, or pick another file name")
    check_output_file(p, "--npz")


def write_npz(args, generator, tokenizer, classes, sampling) -> int:
    """Sample batch by batch straight into ``--npz`` (ADM format); never all images in memory."""
    from ..eval.samples_npz import write_samples_npz
    from ..generators.pipeline import class_list, iter_generate_images
    from .common import progress

    labels = class_list(classes or None, args.n)
    start = time.perf_counter()
    parts = iter_generate_images(generator, tokenizer, classes or None, n=args.n, batch_size=args.batch_size,
                                 seed=args.seed, autocast_dtype=torch.bfloat16 if args.bf16 else None, **sampling)
    bar = progress(len(labels), "generate", getattr(args, "quiet", False))

    def images():
        for part in parts:
            bar.update(len(part.images))
            yield part.images

    try:
        write_samples_npz(args.npz, images(), len(labels), labels=labels if classes else None,
                          overwrite=args.overwrite)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    print(f"wrote {len(labels)} sample(s) to {args.npz} (arr_0 uint8 N x H x W x 3{', arr_1 labels' if classes else ''}; "
          f"{seconds:.1f} s, {len(labels) / seconds:.2f} samples/s)")
    return 0


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a device name (cpu, cuda, cuda:0, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available")
    return device
